#!/usr/bin/env bash
# Builds the Docker image variants and checks each one in containers, as a user would run it:
#   scripts/check-image.sh [--variants "cpu cuda"] [--pull always|missing|never] [--rebuild-probe] [--reset]
#   scripts/check-image.sh --disk-ok     only the disk check below (exit 0 when there is room)
# The engine is podman when installed, else docker when its daemon answers (ENGINE=docker|podman
# to choose).
# Per variant: the build (timed) and the image size; then, in containers:
#   1. mtt doctor: libtorch 2.4.0 loaded from the image, the model folder complete, a non-root user;
#   2. task1: the seed's output, line for line the same as this checkout's own task1;
#   3. mtt embed on the 20 golden sentences, held to the test suite's bound (the test
#      mtt_embed_json_lines_match_golden, with MTT_EMBED_CMD running the container);
#   4. task4 --max-steps 20 writing to a host folder mounted at /app/runs; this checkout's
#      `mtt eval` then reads that checkpoint and must find the accuracies task4 reported.
# --rebuild-probe builds the first variant again after a one-line source change (restored after),
# showing that the libtorch and model layers are reused, and prints that build's time.
# --reset wipes the engine's images, containers and layers at the end (podman system reset -f /
# docker system prune -af): for CI machines. Without it only what this script made is removed.
# Either way cleanup runs even when a step fails. podman keeps the Dockerfile's build-cache mounts
# (the torch wheels, keyed by version, and cargo's target folders: ~5 GB in /var/tmp/buildah-cache)
# across resets, like the host's own wheel cache; delete that folder to start cold.
# It needs MTT_IMAGE_NEED_GB (default below) free in the engine's storage; with less it prints
#   image check SKIPPED: N GB free, M needed
# and exits 0. The host side (cargo, a built checkout, scripts/setup.sh done) must be ready.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

variants="cpu cuda"
pull=missing
probe=0
reset=0
disk_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --variants) variants=$2; shift 2 ;;
    --pull) pull=$2; shift 2 ;;
    --rebuild-probe) probe=1; shift ;;
    --reset) reset=1; shift ;;
    --disk-ok) disk_only=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "check-image: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf 'check-image: %s\n' "$*"; }
fail() { printf 'check-image: FAILED: %s\n' "$*" >&2; exit 1; }

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  # A docker client without a daemon (as on the CI machine before podman is installed) is no engine.
  if command -v podman >/dev/null; then engine=podman; elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; fi
fi

# --- disk ------------------------------------------------------------------------------------------
case "$engine" in
  podman) store=$(podman info --format '{{.Store.GraphRoot}}') ;;
  docker) store=$(docker info --format '{{.DockerRootDir}}') ;;
  *) store=/var/lib/containers/storage ;;   # where podman will keep it once installed
esac
probe_dir=$store
while [ ! -d "$probe_dir" ]; do probe_dir=$(dirname "$probe_dir"); done
free_gb=$(df -P -BG "$probe_dir" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
need_gb=${MTT_IMAGE_NEED_GB:-40}   # measured peak of both variants, cold caches: see the README
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "image check SKIPPED: $free_gb GB free, $need_gb needed"
  [ "$disk_only" = 1 ] && exit 1
  exit 0
fi
[ "$disk_only" = 1 ] && exit 0
[ -n "$engine" ] || fail "neither podman nor docker is installed"

# --- cleanup, whatever happens ------------------------------------------------------------------------
tag_base=mtt-image-check-$$
work=$(mktemp -d)
probe_file=src/lib.rs
cleanup() {
  status=$?
  if [ -f "$work/probe.orig" ]; then cp "$work/probe.orig" "$probe_file"; fi
  for v in $variants; do "$engine" rmi -f "$tag_base:$v" >/dev/null 2>&1 || true; done
  if [ "$reset" = 1 ]; then
    if [ "$engine" = podman ]; then podman system reset -f >/dev/null 2>&1 || true; else docker system prune -af >/dev/null 2>&1 || true; fi
  else
    "$engine" image prune -f >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The host side: this checkout's binaries (cargo test has built them in CI).
cargo build --quiet --bins
host_bin=$root/target/debug

summary=()
for v in $variants; do
  tag=$tag_base:$v
  say "building $v ($engine, --pull=$pull)"
  t=$SECONDS
  "$engine" build --pull="$pull" --build-arg VARIANT="$v" -t "$tag" . > "$work/build-$v.log" 2>&1 \
    || { tail -n 40 "$work/build-$v.log" >&2; fail "$v: image build"; }
  build_s=$((SECONDS - t))
  size=$("$engine" image inspect --format '{{.Size}}' "$tag")
  size_mb=$((size / 1000000))
  say "$v: built in ${build_s} s, image ${size_mb} MB"

  # 1. doctor, as a non-root user
  uid=$("$engine" run --rm --entrypoint id "$tag" -u)
  [ "$uid" != 0 ] || fail "$v: the image runs as root"
  "$engine" run --rm "$tag" doctor > "$work/doctor.txt" 2>&1 || { cat "$work/doctor.txt" >&2; fail "$v: mtt doctor"; }
  grep -q '^libtorch: 2\.4\.0' "$work/doctor.txt" || { cat "$work/doctor.txt" >&2; fail "$v: doctor does not report libtorch 2.4.0"; }
  grep -q '^status: OK' "$work/doctor.txt" || { cat "$work/doctor.txt" >&2; fail "$v: doctor does not report the model OK"; }
  if [ "$v" = cpu ] && ! grep -q 'CPU-only build' "$work/doctor.txt"; then cat "$work/doctor.txt" >&2; fail "cpu: CUDA libraries are loaded"; fi
  say "$v: doctor OK (uid $uid): $(grep '^libtorch:' "$work/doctor.txt")"

  # 2. task1, line for line as this checkout prints it
  "$engine" run --rm "$tag" task1 > "$work/task1-image.txt" 2>&1 || { cat "$work/task1-image.txt" >&2; fail "$v: task1"; }
  "$host_bin/task1" > "$work/task1-host.txt"
  [ "$(grep -c '^Embedding shape: \[1, 384\]$' "$work/task1-image.txt")" = 3 ] || fail "$v: task1 did not print three [1, 384] embeddings"
  diff "$work/task1-host.txt" "$work/task1-image.txt" >&2 || fail "$v: task1 output differs from this checkout's"
  say "$v: task1 OK (same output as the host)"

  # 3. golden parity through the container's mtt embed
  MTT_EMBED_CMD="$engine run --rm -i $tag embed" cargo test --quiet --test golden_minilm mtt_embed_json_lines_match_golden \
    -- --exact --nocapture > "$work/golden.txt" 2>&1 || { cat "$work/golden.txt" >&2; fail "$v: golden parity of mtt embed"; }
  say "$v: $(grep 'max |diff|' "$work/golden.txt")"

  # 4. a short task4 into a mounted host folder, read back by the host's mtt eval
  runs=$work/runs-$v
  mkdir -p "$runs" && chmod 0777 "$runs"
  "$engine" run --rm -v "$runs:/app/runs" "$tag" task4 --max-steps 20 --device cpu > "$work/task4.txt" 2>&1 \
    || { cat "$work/task4.txt" >&2; fail "$v: task4"; }
  [ -f "$runs/task4/model.safetensors" ] || fail "$v: no checkpoint in the mounted folder"
  "$host_bin/mtt" eval --model "$runs/task4" --task-a data/trec6/dev.tsv --task-b data/sst5_3class/dev.tsv --device cpu > "$work/eval.json" \
    || fail "$v: the host's mtt eval could not read the container's checkpoint"
  python3 - "$work/eval.json" "$runs/task4/metrics.json" <<'PY' || fail "$v: host eval disagrees with the container's dev accuracies"
import json, sys
ev = json.load(open(sys.argv[1]))
dev = json.load(open(sys.argv[2]))["epochs"][-1]["dev"]
for task in ("task_a", "task_b"):
    host, image = ev[task]["accuracy"], dev[task]["accuracy"]
    print(f"  {task}: image accuracy {image:.4f}, host eval {host:.4f}")
    assert abs(host - image) <= 0.005, task
PY
  say "$v: task4 --max-steps 20 -> mounted folder -> host mtt eval OK"
  summary+=("$v: build ${build_s} s, ${size_mb} MB")

  if [ "$probe" = 1 ]; then
    probe=0
    cp "$probe_file" "$work/probe.orig"
    echo "// image rebuild probe" >> "$probe_file"
    t=$SECONDS
    "$engine" build --pull="$pull" --build-arg VARIANT="$v" -t "$tag" . > "$work/rebuild.log" 2>&1 \
      || { tail -n 40 "$work/rebuild.log" >&2; fail "$v: rebuild after a source change"; }
    cp "$work/probe.orig" "$probe_file" && rm "$work/probe.orig"
    summary+=("$v: rebuild after a one-line source change $((SECONDS - t)) s")
    say "${summary[-1]}"
  fi
  "$engine" rmi -f "$tag" >/dev/null
done
for line in "${summary[@]}"; do say "$line"; done
say "all image checks passed ($variants)"
