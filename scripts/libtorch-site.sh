#!/usr/bin/env bash
# Lays out libtorch 2.4.0 from the PyPI wheels, without a venv, for the Docker image (or any
# machine that needs only the C++ library):
#   scripts/libtorch-site.sh cuda|cpu DIR
# DIR gets site-packages' layout, so torch/lib's own rpath ($ORIGIN/../../nvidia/...) finds the
# CUDA libraries: DIR/torch/{include,lib,build-version} (point LIBTORCH at DIR/torch) and
#   cuda: DIR/nvidia/* (the CUDA 12.1 runtime wheels torch==2.4.0 depends on);
#   cpu:  torch/lib without the CUDA libraries and only nvidia/cuda_runtime and nvidia/cuda_cupti,
#         which libtorch_cpu.so itself needs (a few MB); binaries built against it never load CUDA.
# Wheels are cached, keyed by version, in ${MTT_CACHE_DIR:-$HOME/.cache/multi-task-transformer}.
set -euo pipefail
TORCH_VERSION=2.4.0
variant=${1:-}
dest=${2:-}
case "$variant" in cuda|cpu) ;; *) echo "usage: $0 cuda|cpu DIR" >&2; exit 2 ;; esac
[ -n "$dest" ] || { echo "usage: $0 cuda|cpu DIR" >&2; exit 2; }
say() { printf 'libtorch-site: %s\n' "$*" >&2; }
die() { printf 'libtorch-site: ERROR: %s\n' "$*" >&2; exit 1; }

python=${PYTHON:-python3}
pytag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
wheels=${MTT_CACHE_DIR:-$HOME/.cache/multi-task-transformer}/wheels
full=$wheels/torch-$TORCH_VERSION-$pytag   # every wheel torch needs (scripts/setup.sh shares it)
if [ -f "$full/.complete" ]; then
  cache=$full
elif [ "$variant" = cpu ]; then
  # torch alone, plus the two CUDA runtime wheels libtorch_cpu.so links (torch 2.4.0's own pins).
  cache=$wheels/torch-$TORCH_VERSION-$pytag-cpu
  if [ ! -f "$cache/.complete" ]; then
    say "downloading torch==$TORCH_VERSION without its CUDA wheels (~0.8 GB) into $cache"
    mkdir -p "$cache"
    "$python" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: -d "$cache" \
      "torch==$TORCH_VERSION" nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105 \
      || die "could not download torch==$TORCH_VERSION from PyPI"
    touch "$cache/.complete"
  fi
else
  cache=$full
  say "downloading torch==$TORCH_VERSION and its CUDA runtime wheels (~2.5 GB) into $cache"
  mkdir -p "$cache"
  "$python" -m pip download --disable-pip-version-check -q --only-binary=:all: -d "$cache" "torch==$TORCH_VERSION" \
    || die "could not download torch==$TORCH_VERSION from PyPI"
  touch "$cache/.complete"
fi

mkdir -p "$dest"
"$python" - "$cache" "$dest" "$variant" "$TORCH_VERSION" <<'PY' || die "could not unpack the wheels"
import glob, os, sys, zipfile
cache, dest, variant, version = sys.argv[1:]
# What the C++ side needs from the torch wheel; the Python package itself is left out.
def keep_torch(name):
    return name.startswith(("torch/lib/", "torch/include/")) and not name.endswith("/")
cuda_lib = ("cuda", "nvrtc", "cusparse", "cudnn", "nccl", "_python.so", "libshm")
def keep_torch_cpu(name):
    return keep_torch(name) and not (name.startswith("torch/lib/") and any(k in name.rsplit("/", 1)[1] for k in cuda_lib))
wanted = []
for whl in sorted(glob.glob(os.path.join(cache, "*.whl"))):
    base = os.path.basename(whl)
    if base.startswith(f"torch-{version}-"):
        wanted.append((whl, keep_torch if variant == "cuda" else keep_torch_cpu))
    elif base.startswith("nvidia_") and (variant == "cuda" or base.startswith(("nvidia_cuda_runtime_", "nvidia_cuda_cupti_"))):
        wanted.append((whl, lambda n: n.startswith("nvidia/") and "/lib/" in n and not n.endswith("/")))
if not any(os.path.basename(w).startswith("torch-") for w, _ in wanted):
    sys.exit(f"no torch-{version} wheel in {cache}")
for whl, keep in wanted:
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            if keep(info.filename):
                path = z.extract(info, dest)
                os.chmod(path, 0o755 if ".so" in info.filename else 0o644)
with open(os.path.join(dest, "torch", "build-version"), "w") as f:
    f.write(f"{version}+{'cu121' if variant == 'cuda' else 'cpu'}\n")
PY
lib=$dest/torch/lib
[ -f "$lib/libtorch_cpu.so" ] || die "libtorch_cpu.so missing under $lib"
if [ "$variant" = cpu ] && ls "$lib" | grep -q cuda; then die "CUDA libraries left in $lib"; fi
say "libtorch $TORCH_VERSION ($variant) in $dest/torch: $(du -sh "$dest" | cut -f1)"
