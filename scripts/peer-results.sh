#!/usr/bin/env bash
# The Python peer's numbers for the results page: `python_peer.py fit` on the bundled data for
# the scenarios that match the grid's uniform (peer: full), layerwise and freeze:encoder
# (peer: frozen_encoder), seeds 0..N-1, one JSON line per run appended to OUT (runs already in
# OUT are skipped, so an interrupted run resumes).
#   bash scripts/peer-results.sh [OUT=docs/results/peer.jsonl] [SEEDS=3] [EPOCHS=1] [SCENARIOS="full layerwise frozen_encoder"]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results/peer.jsonl}
seeds=${2:-3}
epochs=${3:-1}
scenarios=${4:-full layerwise frozen_encoder}
py=${MTT_PEER_PYTHON:-.venv/bin/python}
peer=${MTT_PEER:-../shared/peer/python_peer.py}
[ -f "$peer" ] || { echo "peer-results: $peer not found (set MTT_PEER)" >&2; exit 1; }
"$py" -c 'import sentence_transformers' 2>/dev/null || { echo "peer-results: run 'bash scripts/setup.sh --peer' first" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
touch "$out"
for scenario in $scenarios; do
  for ((seed = 0; seed < seeds; seed++)); do
    key="\"scenario\": \"$scenario\", \"epochs\": $epochs, \"seed\": $seed"
    if grep -qF "$key" "$out"; then continue; fi
    echo "peer-results: $scenario seed $seed" >&2
    line=$("$py" "$peer" fit data/trec6/train.tsv data/sst5_3class/train.tsv data/trec6/dev.tsv data/sst5_3class/dev.tsv \
      --epochs "$epochs" --scenario "$scenario" --seed "$seed")
    # The peer's own line does not carry the seed: add it in front.
    echo "{$key, \"peer\": ${line}}" >> "$out"
  done
done
