"""Python side of tests/python_interop.rs: the seed's PyTorch model and sentence-transformers
against checkpoints written by `mtt`. Prints JSON on stdout.

  interop.py embed    EXPORTED TEXTS                  -> [[float]] (SentenceTransformer.encode)
  interop.py probs    EXPORTED STATE TEXTS            -> {"a": [[p]], "b": [[p]], "heads": {task: [[p]]},
                                                         "pairs": {task: [[p]]}, "missing": [...], "unexpected": [...]}
      (pairs: each pair-classification head on the texts' consecutive pairs (line i, line i+1))
  interop.py perturb  EXPORTED STATE TEXTS OUT SEED   -> like probs, for the state perturbed and saved to OUT
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoTokenizer, BertConfig  # noqa: E402

# The seed's model, as the DDP script defines it (one definition for both).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from torchrun_finetune import MultiTask, tasks_of  # noqa: E402


def texts(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def model_and_probs(folder, state, lines):
    labels = json.load(open(os.path.join(folder, "labels.json")))
    # Built from the configuration alone: every weight must come from `state`.
    model = MultiTask(BertConfig.from_pretrained(folder), tasks_of(labels))
    result = model.load_state_dict(load_file(state), strict=False)
    model.eval()
    return model, result, probs(model, folder, lines)


def probs(model, folder, lines):
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(lines, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        heads = {k: v.softmax(-1).tolist() for k, v in model(enc["input_ids"], enc["attention_mask"]).items()}
        pooled = model.pooled(enc["input_ids"], enc["attention_mask"])
        pairs = {t["name"]: model.pair_logits(t["name"], pooled[:-1], pooled[1:]).softmax(-1).tolist() for t in model.tasks if t["kind"] == "pair-classification"}
    return {"a": heads.get("task_a"), "b": heads.get("task_b"), "heads": heads, "pairs": pairs}


def main():
    cmd = sys.argv[1]
    if cmd == "embed":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(sys.argv[2], device="cpu")
        print(json.dumps(model.encode(texts(sys.argv[3]), convert_to_numpy=True).tolist()))
    elif cmd == "probs":
        _, result, p = model_and_probs(sys.argv[2], sys.argv[3], texts(sys.argv[4]))
        p.update(missing=list(result.missing_keys), unexpected=list(result.unexpected_keys))
        print(json.dumps(p))
    elif cmd == "perturb":
        folder, lines = sys.argv[2], texts(sys.argv[4])
        model, _, _ = model_and_probs(folder, sys.argv[3], lines)
        torch.manual_seed(int(sys.argv[6]))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, sys.argv[5])
        print(json.dumps(probs(model, folder, lines)))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
