"""Continue training an `mtt` checkpoint on several processes or machines with PyTorch's
DistributedDataParallel: tch has no distributed training, but a checkpoint's names are the seed's
PyTorch model's, so the PyTorch side can take over and hand the result back.

  torchrun --standalone --nproc_per_node 2 scripts/torchrun_finetune.py \
      --checkpoint runs/task4 --task-a data/trec6/train.tsv --task-b data/sst5_3class/train.tsv \
      --steps 100 --out runs/task4-ddp
  # multi-node: torchrun --nnodes N --node_rank R --rdzv_endpoint HOST:PORT ... (same arguments)

Each subset trains at the checkpoint's own rates (its `training.lr_plan`: layerwise = embeddings
1e-6, layers 1e-5, heads 1e-4; uniform = 1e-4; `--lr PREFIX=RATE` overrides, later wins), with
one Adam parameter group per subset, cross-entropy per task summed, batches of `--batch-size`
rows per process from a DistributedSampler. Backend: nccl on GPUs, gloo on CPUs. Rank 0 writes
`--out`: model.safetensors, config.json (without the old checksums) and vocab.txt, a checkpoint
`mtt predict --model OUT` reads (or `mtt import --weights OUT/model.safetensors --like ...`).
Each rank prints one JSON line with its final loss and a checksum of its parameters.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel
from transformers import BertConfig, BertModel, BertTokenizer


def tasks_of(cfg):
    """A checkpoint's (or an exported labels.json's) task list: `tasks` when it has one, else
    the seed's two from `labels_a`/`labels_b` (`task_a`/`task_b` in labels.json)."""
    if cfg.get("tasks"):
        return cfg["tasks"]
    a, b = cfg.get("labels_a", cfg.get("task_a")), cfg.get("labels_b", cfg.get("task_b"))
    return [{"name": "task_a", "kind": "classification", "labels": a}, {"name": "task_b", "kind": "classification", "labels": b}]


class MultiTask(torch.nn.Module):
    """The seed's model, for any task list: an encoder named `encoder` (no pooler, mean pooling)
    and one linear head per classification task: `classification_head` and `sentiment_head` for
    the seed's `task_a` and `task_b`, `heads.<name>` for the others. A pair-classification head
    reads (u, v, |u - v|) of the two texts' pooled vectors; a similarity task has no head."""

    def __init__(self, bert_config, tasks):
        super().__init__()
        self.encoder = BertModel(bert_config, add_pooling_layer=False)
        self.tasks = tasks
        self.heads = torch.nn.ModuleDict()
        for t in tasks:
            if t["kind"] == "similarity":
                continue
            width = bert_config.hidden_size * (3 if t["kind"] == "pair-classification" else 1)
            layer = torch.nn.Linear(width, len(t["labels"]))
            if t["name"] == "task_a":
                self.classification_head = layer
            elif t["name"] == "task_b":
                self.sentiment_head = layer
            else:
                self.heads[t["name"]] = layer

    def head(self, name):
        return {"task_a": getattr(self, "classification_head", None), "task_b": getattr(self, "sentiment_head", None)}.get(name) or self.heads[name]

    def pooled(self, ids, mask):
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def forward(self, ids, mask):
        """Every one-text classification head's logits, by task name."""
        pooled = self.pooled(ids, mask)
        return {t["name"]: self.head(t["name"])(pooled) for t in self.tasks if t["kind"] == "classification"}

    def pair_logits(self, name, u, v):
        """A pair-classification head's logits on pooled vectors u, v."""
        return self.head(name)(torch.cat([u, v, (u - v).abs()], dim=-1))


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            line = line.rstrip("\n")
            if line:
                text, label = line.rsplit("\t", 1)
                rows.append((text, label))
    return rows


def subset_of(name, n_layers):
    if name.startswith("encoder.embeddings."):
        return "encoder.embeddings"
    for i in range(n_layers):
        if name.startswith(f"encoder.encoder.layer.{i}."):
            return f"encoder.encoder.layer.{i}"
    # heads.<name>.weight belongs to the subset heads.<name>; the seed's heads are their own.
    return ".".join(name.split(".")[:2]) if name.startswith("heads.") else name.split(".")[0]


def rate_of(subset, plan, overrides):
    if plan == "layerwise":
        rate = 1e-6 if subset == "encoder.embeddings" else 1e-5 if subset.startswith("encoder.encoder.layer.") else 1e-4
    else:
        rate = 1e-4
    for prefix, r in overrides:
        if subset == prefix or subset.startswith(prefix + ".") or prefix == "":
            rate = r
    return rate


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task-a", required=True)
    p.add_argument("--task-b", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", action="append", default=[], help="PREFIX=RATE")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(a.seed)

    cfg = json.load(open(os.path.join(a.checkpoint, "config.json")))
    bert = BertConfig(**{k: v for k, v in cfg["encoder"]["bert"].items() if v is not None})
    tasks = tasks_of(cfg)
    labels_a, labels_b = cfg["labels_a"], cfg["labels_b"]
    model = MultiTask(bert, tasks)
    from safetensors.torch import load_file

    result = model.load_state_dict(load_file(os.path.join(a.checkpoint, "model.safetensors")), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.to(device).train()
    # This script trains the seed's two tasks: any other head keeps its weights.
    for name, param in model.named_parameters():
        if name.startswith("heads."):
            param.requires_grad_(False)

    training = cfg.get("training") or {}
    plan = {"Uniform": "uniform", "Layerwise": "layerwise"}.get(training.get("lr_plan"), "layerwise")
    overrides = [tuple(o) for o in training.get("lr_overrides", [])]
    overrides += [(s.split("=")[0].rstrip("."), float(s.split("=")[1])) for s in a.lr]
    groups = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(subset_of(name, bert.num_hidden_layers), []).append(param)
    rates = {s: rate_of(s, plan, overrides) for s in groups}
    opt = torch.optim.Adam([{"params": ps, "lr": rates[s]} for s, ps in groups.items()])
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    tok = BertTokenizer(os.path.join(a.checkpoint, "vocab.txt"), do_lower_case=cfg["encoder"]["tokenizer"]["do_lower_case"])
    rows = [(t, labels_a.index(l), -100) for t, l in read_tsv(a.task_a)] + [(t, -100, labels_b.index(l)) for t, l in read_tsv(a.task_b)]
    sampler = torch.utils.data.distributed.DistributedSampler(rows, num_replicas=world, rank=rank, seed=a.seed)
    loader = torch.utils.data.DataLoader(rows, batch_size=a.batch_size, sampler=sampler, collate_fn=lambda b: b)
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100)
    step, epoch, loss_value = 0, 0, float("nan")
    while step < a.steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            enc = tok([r[0] for r in batch], padding=True, truncation=True, max_length=cfg["encoder"]["max_seq_length"], return_tensors="pt")
            ya = torch.tensor([r[1] for r in batch], device=device)
            yb = torch.tensor([r[2] for r in batch], device=device)
            logits = ddp(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            la, lb = logits["task_a"], logits["task_b"]
            # A task without labels in this batch adds 0 (keeps the graph the same on every rank).
            loss = sum(ce(l, y) if (y != -100).any() else l.sum() * 0 for l, y in ((la, ya), (lb, yb)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_value = loss.item()
            step += 1
            if step >= a.steps:
                break
        epoch += 1

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    # One write per line: the ranks share stdout, and print() issues the text and its newline as
    # two writes when Python runs unbuffered (PYTHONUNBUFFERED), which lets lines interleave.
    line = json.dumps({"rank": rank, "world": world, "steps": step, "loss": loss_value, "params_sha256": digest, "rates": rates})
    os.write(sys.stdout.fileno(), (line + "\n").encode())
    if rank == 0:
        os.makedirs(a.out, exist_ok=True)
        save_file(state, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
        cfg.pop("integrity", None)
        cfg["training"] = {"continued_by": "scripts/torchrun_finetune.py", "steps": step, "world_size": world, "from": training}
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        shutil.copy(os.path.join(a.checkpoint, "vocab.txt"), os.path.join(a.out, "vocab.txt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
