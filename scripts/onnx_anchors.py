"""ONNX Runtime "anchors" for the in-process speed comparison of `mtt` embeddings.

What it measures
----------------
How fast ONNX Runtime (and, optionally, sentence-transformers and OpenVINO) turn texts into
all-MiniLM-L6-v2 sentence embeddings on this CPU, in process, after every model is loaded, with
the same pipeline as sentence-transformers: tokenize (truncating to max_seq_length), sort by
length (longest first), batch, pad each batch to its longest text, run the encoder, mean-pool
over the attention mask, L2-normalise. The clock covers tokenization + inference + pooling of
the whole set; the tokenization share is reported separately.

Three ONNX variants are built once and cached in --work DIR (keyed by the weights' sha256, the
onnxruntime and torch versions and the opset, so a second run reuses them):
  plain-fp32  model.onnx        torch.onnx.export of the transformers BertModel
  fused-fp32  model_fused.onnx  onnxruntime.transformers.optimizer (Attention, LayerNorm, Gelu...)
  int8        model_int8.onnx   onnxruntime.quantization.quantize_dynamic, per-channel QInt8
                                weights, of the fused graph (or of the plain one if that fails)

It also reports fidelity: the minimum and mean cosine between each variant's embeddings and a
fp32 reference (sentence-transformers with --with-st, the plain ONNX graph otherwise).

Output
------
One JSON object per line on stdout: first {"figure":"env",...} (date, CPU, SIMD flags, versions),
then "build", "encode", "fidelity" (and "skipped") lines. Progress goes to stderr.

Usage
-----
  .venv/bin/python scripts/onnx_anchors.py --model models/all-MiniLM-L6-v2 --work target/onnx \\
      --texts data/trec6/dev.tsv --texts data/sst5_3class/dev.tsv \\
      [--limit N] [--threads 2] [--batch-size 32] [--runs 1] [--with-st] [--with-openvino] \\
      [--embeddings-out DIR] [--ort-profile]

--ort-profile adds one "ort_profile" line per ONNX Runtime variant and set: kernel seconds per
operator type from ONNX Runtime's own profiler (where its time goes).

Texts files are TSV with a header line naming a `text` column (no quoting). Needs onnxruntime
and onnx in the venv (scripts/setup.sh installs them).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import time

PROG = "onnx_anchors"
VARIANTS = ("plain-fp32", "fused-fp32", "int8")
VARIANT_FILES = {"plain-fp32": "model.onnx", "fused-fp32": "model_fused.onnx", "int8": "model_int8.onnx"}
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


class Fail(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="sentence-transformers folder of all-MiniLM-L6-v2")
    p.add_argument("--work", required=True, help="folder for the built ONNX graphs (cached)")
    p.add_argument("--texts", required=True, action="append", help="TSV file with a `text` column (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="use the first N texts of each file")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runs", type=int, default=1, help="timed runs per engine and set")
    p.add_argument("--opset", type=int, default=14)
    p.add_argument("--sort", choices=("tokens", "chars"), default="tokens",
                   help="length used to sort texts before batching (sentence-transformers uses chars)")
    p.add_argument("--with-st", action="store_true", help="also time sentence-transformers (torch)")
    p.add_argument("--with-openvino", action="store_true", help="also time OpenVINO on the plain graph, if importable")
    p.add_argument("--embeddings-out", default=None, help="write each engine's embeddings as .npy here")
    p.add_argument("--ort-profile", action="store_true",
                   help="also encode each set once per ONNX Runtime variant with its profiler on and emit "
                        "the kernel time per operator type (\"ort_profile\" lines)")
    a = p.parse_args(argv)
    for name in ("threads", "batch_size", "runs"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be at least 1")
    return a


# --- inputs ----------------------------------------------------------------------------------------

def read_texts(path, limit):
    """The `text` column of a header-first TSV (no quoting), first `limit` rows."""
    if not os.path.isfile(path):
        raise Fail(f"texts file not found: {path}")
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if "text" not in header:
            raise Fail(f"{path}: header line has no `text` column (got {header})")
        col = header.index("text")
        texts = []
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if col >= len(fields):
                raise Fail(f"{path}:{lineno}: only {len(fields)} fields, no `text` column")
            texts.append(fields[col])
            if limit is not None and len(texts) >= limit:
                break
    if not texts:
        raise Fail(f"{path}: no texts")
    return texts


def set_name(path):
    """'data/trec6/dev.tsv' -> 'trec6/dev.tsv' (parent folder + file name)."""
    path = os.path.normpath(path)
    return "/".join([os.path.basename(os.path.dirname(path)), os.path.basename(path)]).lstrip("/")


def load_model_info(model_dir):
    """Checks the sentence-transformers folder; returns (config, max_seq_length, weights path)."""
    if not os.path.isdir(model_dir):
        raise Fail(f"model folder not found: {model_dir}")

    def load_json(name, required=True):
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            if required:
                raise Fail(f"model folder {model_dir} has no {name}")
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    config = load_json("config.json")
    st_config = load_json("sentence_bert_config.json", required=False) or {}
    max_seq_length = int(st_config.get("max_seq_length") or 512)
    # all-MiniLM-L6-v2 is Transformer -> mean Pooling -> Normalize; this script implements exactly
    # that, so refuse a folder whose pipeline differs rather than time the wrong thing.
    modules = load_json("modules.json", required=False)
    if modules is not None:
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
            raise Fail(f"{model_dir}/modules.json: expected Transformer, Pooling[, Normalize], got {kinds}")
        pooling = load_json(os.path.join(modules[1].get("path") or "1_Pooling", "config.json"), required=False) or {}
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise Fail(f"{model_dir}: pooling is not mean pooling ({pooling})")
        if "Normalize" not in kinds:
            log("warning: modules.json has no Normalize module; embeddings are still L2-normalised here")
    for name in ("model.safetensors", "pytorch_model.bin"):
        weights = os.path.join(model_dir, name)
        if os.path.isfile(weights):
            break
    else:
        raise Fail(f"model folder {model_dir} has neither model.safetensors nor pytorch_model.bin")
    return config, max_seq_length, weights


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def env_info(args):
    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu == "unknown":
                    cpu = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    import numpy
    import onnx
    import onnxruntime
    import torch
    import transformers
    info = {
        "figure": "env",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_flags": {f: f in flags for f in CPU_FLAGS},
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "ort_version": onnxruntime.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "sort": args.sort,
    }
    if args.with_st:
        import sentence_transformers
        info["sentence_transformers"] = sentence_transformers.__version__
    return info


# --- building the ONNX graphs ---------------------------------------------------------------------

def export_plain(model_dir, out_path, opset):
    """torch.onnx.export of the transformers BertModel: ids, mask, type ids -> last_hidden_state."""
    import torch
    from transformers import AutoModel

    # Eager attention: the SDPA path traces a mask shortcut that depends on the dummy input, and
    # onnxruntime's Attention fusion recognises the eager subgraph.
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    # A dummy batch with padding in it, so nothing mask-dependent gets folded into constants.
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102, 0],
                        [101, 2023, 102, 0, 0, 0, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    dyn = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(model), (ids, mask, types), out_path,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn, "last_hidden_state": dyn},
            opset_version=opset, do_constant_folding=True)


def build_graphs(args, config, weights):
    """Builds (or reuses) the three graphs; returns (folder, build record)."""
    import onnx
    import onnxruntime
    import torch

    sha = sha256_of(weights)
    key = f"{sha[:16]}-ort{onnxruntime.__version__}-torch{torch.__version__.split('+')[0]}-opset{args.opset}"
    folder = os.path.join(args.work, key)
    record_path = os.path.join(folder, "build.json")
    if os.path.isfile(record_path) and all(os.path.isfile(os.path.join(folder, f)) for f in VARIANT_FILES.values()):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        log(f"reusing the ONNX graphs in {folder}")
        emit({"figure": "build", "cached": True, "dir": folder, **record})
        return folder, record

    num_heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    os.makedirs(args.work, exist_ok=True)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    torch.set_num_threads(args.threads)
    record = {"weights_sha256": sha, "opset": args.opset, "num_heads": num_heads, "hidden_size": hidden}
    t_all = time.perf_counter()

    log(f"exporting {args.model} to ONNX (opset {args.opset})")
    t = time.perf_counter()
    plain = os.path.join(tmp, VARIANT_FILES["plain-fp32"])
    export_plain(args.model, plain, args.opset)
    record["export_seconds"] = round(time.perf_counter() - t, 3)

    log(f"fusing with onnxruntime.transformers.optimizer (bert, {num_heads} heads, hidden {hidden})")
    from onnxruntime.transformers.optimizer import optimize_model
    t = time.perf_counter()
    fused_model = optimize_model(plain, model_type="bert", num_heads=num_heads, hidden_size=hidden, use_gpu=False)
    fused = os.path.join(tmp, VARIANT_FILES["fused-fp32"])
    fused_model.save_model_to_file(fused)
    record["fuse_seconds"] = round(time.perf_counter() - t, 3)
    record["fused_ops"] = {k: v for k, v in fused_model.get_fused_operator_statistics().items() if v}
    if not record["fused_ops"].get("Attention"):
        log("warning: the optimizer fused no Attention node; fused-fp32 is barely fused")

    log("quantizing to int8 (dynamic, per-channel QInt8 weights)")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    t = time.perf_counter()
    int8 = os.path.join(tmp, VARIANT_FILES["int8"])
    try:
        # Shape inference cannot type the outputs of the com.microsoft ops (SkipLayerNormalization,
        # Attention...) in the fused graph; DefaultTensorType tells the quantizer they are float.
        quantize_dynamic(fused, int8, per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        # A graph that quantizes but won't load is as bad as one that fails to quantize.
        onnxruntime.InferenceSession(int8, providers=["CPUExecutionProvider"])
        record["int8_source"] = "fused-fp32"
    except Exception as e:  # noqa: BLE001 - any failure falls back to the plain graph
        log(f"quantizing the fused graph failed ({type(e).__name__}: {e}); quantizing the plain graph instead")
        record["int8_source"] = "plain-fp32"
        record["int8_fused_error"] = f"{type(e).__name__}: {e}"[:500]
        quantize_dynamic(plain, int8, per_channel=True, weight_type=QuantType.QInt8)
    record["quantize_seconds"] = round(time.perf_counter() - t, 3)
    record["build_seconds"] = round(time.perf_counter() - t_all, 3)
    record["sizes_mb"] = {v: round(os.path.getsize(os.path.join(tmp, f)) / 1e6, 1) for v, f in VARIANT_FILES.items()}

    with open(os.path.join(tmp, "build.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)  # publish only a complete build
    emit({"figure": "build", "cached": False, "dir": folder, **record})
    return folder, record


# --- encoding --------------------------------------------------------------------------------------

class Encoder:
    """The sentence-transformers pipeline around an ONNX-style `run(feeds) -> last_hidden_state`."""

    def __init__(self, tokenizer, max_seq_length, batch_size, sort, run, input_names):
        self.tokenizer, self.max_len, self.batch_size, self.sort = tokenizer, max_seq_length, batch_size, sort
        self.run, self.input_names = run, set(input_names)
        self.pad_id = tokenizer.pad_token_id or 0

    def encode(self, texts):
        """Embeddings in the order of `texts`, and the seconds spent tokenizing."""
        import numpy as np
        t = time.perf_counter()
        ids = self.tokenizer([s.strip() for s in texts], truncation=True, max_length=self.max_len, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        tok_seconds = time.perf_counter() - t
        key = [len(x) for x in ids] if self.sort == "tokens" else [len(s) for s in texts]
        order = np.argsort([-k for k in key], kind="stable")
        out = None
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            hidden = self.run({k: v for k, v in feeds.items() if k in self.input_names})
            # Mean pooling over real tokens, then L2 normalisation (torch's F.normalize, eps 1e-12).
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return out, tok_seconds


def ort_session(path, args, profile_prefix=None):
    """An ONNX Runtime CPU session with the bench's thread settings (profiling on if asked)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def session_encoder(sess, args, tokenizer, max_len):
    output = sess.get_outputs()[0].name
    return Encoder(tokenizer, max_len, args.batch_size, args.sort,
                   lambda feeds: sess.run([output], feeds)[0], [i.name for i in sess.get_inputs()])


def ort_encoder(path, args, tokenizer, max_len):
    return session_encoder(ort_session(path, args), args, tokenizer, max_len)


def ort_profile(folder, args, tokenizer, max_len, sets):
    """One profiled encode per ONNX Runtime variant and set: kernel seconds per operator type.

    The profiler's per-node clock adds a little time of its own, so its total is not the timed
    figure; its shares say where the variant's time goes (for the fused graphs, Attention and
    QAttention include the query/key/value product, DynamicQuantizeMatMul the activations'
    quantisation)."""
    import collections
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            for name, texts in sets:
                sess = ort_session(os.path.join(folder, VARIANT_FILES[variant]), args,
                                   profile_prefix=os.path.join(tmp, "ort"))
                enc = session_encoder(sess, args, tokenizer, max_len)
                enc.encode(texts[:args.batch_size])  # warm-up, inside the profile too (small)
                enc.encode(texts)
                with open(sess.end_profiling(), encoding="utf-8") as f:
                    events = json.load(f)
                ops = collections.Counter()
                for e in events:
                    if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                        ops[e["args"]["op_name"]] += e["dur"] / 1e6
                total = sum(ops.values())
                emit({"figure": "ort_profile", "engine": "onnxruntime", "variant": variant, "set": name,
                      "texts": len(texts), "kernel_seconds": round(total, 4),
                      "op_seconds": {k: round(v, 4) for k, v in ops.most_common()},
                      "op_shares": {k: round(v / total, 3) for k, v in ops.most_common()}})


def openvino_encoder(path, args, tokenizer, max_len):
    import openvino as ov
    core = ov.Core()
    model = core.read_model(path)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
    names = [p.get_any_name() for p in compiled.inputs]
    out = compiled.outputs[0]
    return Encoder(tokenizer, max_len, args.batch_size, args.sort,
                   lambda feeds: compiled(feeds)[out], names)


class STEncoder:
    """sentence-transformers itself, with its own tokenization, sorting and pooling."""

    def __init__(self, model_dir, batch_size):
        from sentence_transformers import SentenceTransformer
        self.model = SentenceTransformer(model_dir, device="cpu")
        self.batch_size = batch_size

    def encode(self, texts):
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=False), None


def time_engine(engine, variant, encoder, sets, args, extra):
    """Warm-up batch, then `runs` timed encodes of each set; returns the last run's embeddings."""
    embeddings = {}
    encoder.encode(sets[0][1][:args.batch_size])
    for name, texts in sets:
        for run in range(1, args.runs + 1):
            t = time.perf_counter()
            emb, tok_seconds = encoder.encode(texts)
            seconds = time.perf_counter() - t
            line = {"figure": "encode", "engine": engine, "variant": variant, "set": name, "texts": len(texts),
                    "seconds": round(seconds, 4), "texts_per_s": round(len(texts) / seconds, 1)}
            if tok_seconds is not None:
                line["tokenize_seconds"] = round(tok_seconds, 4)
            line.update({"threads": args.threads, "batch_size": args.batch_size, "run": run, **extra})
            emit(line)
        embeddings[name] = emb
    return embeddings


def cosines(a, b):
    import numpy as np
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# --- main ------------------------------------------------------------------------------------------

def main(argv):
    args = parse_args(argv)
    # Thread caps before torch / tokenizers load: the tokenizers crate's rayon pool reads these.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads == 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    else:
        os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        raise Fail(f"{e}: install onnxruntime and onnx into the venv (scripts/setup.sh does)")

    config, max_len, weights = load_model_info(args.model)
    sets = [(set_name(p), read_texts(p, args.limit)) for p in args.texts]
    names = [n for n, _ in sets]
    if len(set(names)) != len(names):
        raise Fail(f"two texts files share a set name: {names}")

    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    emit(env_info(args))

    folder, record = build_graphs(args, config, weights)
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ort_extra = {"ort_version": onnxruntime.__version__}

    results = {}  # (engine, variant) -> {set: embeddings}
    for variant in VARIANTS:
        log(f"timing onnxruntime {variant}")
        enc = ort_encoder(os.path.join(folder, VARIANT_FILES[variant]), args, tokenizer, max_len)
        extra = dict(ort_extra, int8_source=record["int8_source"]) if variant == "int8" else ort_extra
        results[("onnxruntime", variant)] = time_engine("onnxruntime", variant, enc, sets, args, extra)
        del enc

    if args.ort_profile:
        log("profiling onnxruntime")
        ort_profile(folder, args, tokenizer, max_len, sets)

    if args.with_openvino:
        try:
            import openvino
        except ImportError:
            emit({"figure": "skipped", "engine": "openvino", "reason": "openvino is not importable"})
        else:
            log("timing openvino plain-fp32")
            enc = openvino_encoder(os.path.join(folder, VARIANT_FILES["plain-fp32"]), args, tokenizer, max_len)
            results[("openvino", "plain-fp32")] = time_engine(
                "openvino", "plain-fp32", enc, sets, args, {"openvino_version": openvino.__version__})
            del enc

    if args.with_st:
        import sentence_transformers
        log("timing sentence-transformers")
        enc = STEncoder(args.model, args.batch_size)
        results[("sentence-transformers", "torch-fp32")] = time_engine(
            "sentence-transformers", "torch-fp32", enc, sets, args,
            {"st_version": sentence_transformers.__version__, "torch_version": torch.__version__})
        reference = ("sentence-transformers", "torch-fp32")
    else:
        reference = ("onnxruntime", "plain-fp32")

    ref_label = f"{reference[0]} {reference[1]}"
    for (engine, variant), by_set in results.items():
        if (engine, variant) == reference:
            continue
        for name, emb in by_set.items():
            cos = cosines(emb, results[reference][name])
            emit({"figure": "fidelity", "engine": engine, "variant": variant, "set": name, "texts": len(cos),
                  "min_cos": round(float(cos.min()), 7), "mean_cos": round(float(cos.mean()), 7),
                  "reference": ref_label})

    if args.embeddings_out:
        os.makedirs(args.embeddings_out, exist_ok=True)
        for (engine, variant), by_set in results.items():
            for name, emb in by_set.items():
                stem = name.replace("/", "_").rsplit(".", 1)[0]
                path = os.path.join(args.embeddings_out, f"{stem}__{engine}__{variant}.npy")
                np.save(path, emb)
        log(f"embeddings written to {args.embeddings_out} (rows in file order)")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Fail as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
