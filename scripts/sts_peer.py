"""STS-B-style evaluation with Python sentence-transformers, the reference for `mtt eval --sts`.

Usage: .venv/bin/python scripts/sts_peer.py MODEL_DIR PAIRS.tsv
Prints {"spearman", "pearson", "n"}: the correlations between the cosine similarity of the two
texts' normalised embeddings and the gold score (scipy's spearmanr / pearsonr).
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main(model_dir, pairs_path):
    with open(pairs_path, encoding="utf-8-sig") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    a, b, s = (header.index(k) for k in ("text_a", "text_b", "score"))
    model = SentenceTransformer(model_dir, device="cpu")
    ea = model.encode([r[a] for r in rows], batch_size=64, normalize_embeddings=True)
    eb = model.encode([r[b] for r in rows], batch_size=64, normalize_embeddings=True)
    cos = (ea * eb).sum(axis=1)
    gold = np.array([float(r[s]) for r in rows])
    print(json.dumps({"spearman": float(spearmanr(cos, gold)[0]), "pearson": float(pearsonr(cos, gold)[0]), "n": len(rows)}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
