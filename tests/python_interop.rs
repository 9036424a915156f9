//! Checkpoints both ways with Python (the project's venv: `scripts/setup.sh` installs torch,
//! transformers and sentence-transformers into `.venv`): `mtt export` loads in
//! sentence-transformers with the same embeddings; a training run's `model.safetensors` loads
//! into the seed's PyTorch model with the same probabilities; a state saved from that PyTorch
//! model comes back through `mtt import` with the same probabilities. Tolerance 1e-5.

mod common;

use common::{config, fixture, p, run, Cmd, Fixture};
use std::path::{Path, PathBuf};

const TEXTS: &str = "what is the name of the city ?\ni love this film !\nthis movie was very boring .\nhow many films ?\nit\n";

fn venv_python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(py.is_file(), "{} is missing: run scripts/setup.sh (it installs the Python side)", py.display());
    py
}

fn python(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let o = Cmd::new(venv_python()).arg(script).args(args).env("HF_HUB_OFFLINE", "1").run().ok();
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("python {args:?}: {e}\n{}", o.stdout))
}

/// `mtt predict` probabilities per task, rows in input order, columns in label order.
fn mtt_probs(model: &Path, texts: &Path) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let out = Cmd::mtt(["predict", "--model", p(model), "--input", p(texts), "--device", "cpu"]).run().ok().stdout;
    let labels: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    let names = |k: &str| -> Vec<String> { serde_json::from_value(labels[k].clone()).unwrap() };
    let (la, lb) = (names("labels_a"), names("labels_b"));
    let mut a = vec![];
    let mut b = vec![];
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        a.push(la.iter().map(|l| v["task_a"]["probs"][l].as_f64().unwrap()).collect());
        b.push(lb.iter().map(|l| v["task_b"]["probs"][l].as_f64().unwrap()).collect());
    }
    (a, b)
}

fn max_diff(x: &[Vec<f64>], y: &serde_json::Value) -> f64 {
    let y: Vec<Vec<f64>> = serde_json::from_value(y.clone()).unwrap();
    assert_eq!(x.len(), y.len());
    x.iter().zip(&y).flat_map(|(r, s)| r.iter().zip(s).map(|(a, b)| (a - b).abs())).fold(0.0, f64::max)
}

/// Trains a checkpoint (two epochs at 1e-2, the seed's two tasks plus `tasks`) and exports it;
/// returns the checkpoint, a file of [`TEXTS`] and the exported folder.
fn trained_and_exported(f: &Fixture, tasks: Vec<multi_task_transformer::task::TaskSpec>) -> (PathBuf, PathBuf, PathBuf) {
    let mut c = config(f, "ckpt");
    c.schedule.epochs = 2;
    c.optimizer.lr_overrides = vec![("".into(), 1e-2)];
    c.data.tasks = tasks;
    run(&c);
    let ckpt = f.root.join("ckpt");
    let texts = f.root.join("texts.txt");
    std::fs::write(&texts, TEXTS).unwrap();
    let exported = f.root.join("exported");
    Cmd::mtt(["export", "--model", p(&ckpt), "--out", p(&exported)]).run().ok();
    (ckpt, texts, exported)
}

#[test]
fn checkpoints_go_to_python_and_back() {
    let f = fixture();
    let (ckpt, texts, exported) = trained_and_exported(&f, vec![]);

    // 1. Export: sentence-transformers gives the same embeddings as `mtt embed` on the checkpoint.
    for file in ["modules.json", "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "sentence_bert_config.json", "1_Pooling/config.json", "heads.safetensors", "labels.json"] {
        assert!(exported.join(file).is_file(), "{file} missing");
    }
    assert!(exported.join("2_Normalize").is_dir(), "the tiny base model normalises, so the export does");
    let theirs = python(&["embed", p(&exported), p(&texts)]);
    let ours = Cmd::mtt(["embed", "--model", p(&ckpt), "--input", p(&texts), "--normalize", "--device", "cpu"]).run().ok().stdout;
    let ours: Vec<Vec<f64>> = ours.lines().map(|l| serde_json::from_value(serde_json::from_str::<serde_json::Value>(l).unwrap()["embedding"].clone()).unwrap()).collect();
    let d = max_diff(&ours, &theirs);
    println!("export: sentence-transformers vs mtt embed, max abs diff {d:.2e}");
    assert!(d <= 1e-5, "embeddings differ by {d}");
    // The exported folder is also a model folder for mtt itself.
    let again = Cmd::mtt(["embed", "--model", p(&exported), "--input", p(&texts), "--normalize", "--device", "cpu"]).run().ok().stdout;
    assert_eq!(again.lines().count(), 5);

    // 2. The checkpoint's weights load into the seed's PyTorch model: same probabilities.
    let (a, b) = mtt_probs(&ckpt, &texts);
    let py = python(&["probs", p(&exported), p(&ckpt.join("model.safetensors")), p(&texts)]);
    // The PyTorch model (no pooler) is built from the configuration alone: every one of its
    // weights comes from the checkpoint, and the checkpoint holds nothing else.
    assert_eq!(py["missing"], serde_json::json!([]));
    assert_eq!(py["unexpected"], serde_json::json!([]));
    let (da, db) = (max_diff(&a, &py["a"]), max_diff(&b, &py["b"]));
    println!("checkpoint in PyTorch: max prob diff A {da:.2e}, B {db:.2e}");
    assert!(da <= 1e-5 && db <= 1e-5, "{da} {db}");

    // 3. A state saved from the PyTorch model comes back: `mtt import` and `--model` directly.
    let state = f.root.join("from-python.safetensors");
    let py = python(&["perturb", p(&exported), p(&ckpt.join("model.safetensors")), p(&texts), p(&state), "7"]);
    let imported = f.root.join("imported");
    Cmd::mtt(["import", "--weights", p(&state), "--like", p(&ckpt), "--out", p(&imported)]).run().ok();
    let (a2, b2) = mtt_probs(&imported, &texts);
    let (da, db) = (max_diff(&a2, &py["a"]), max_diff(&b2, &py["b"]));
    println!("PyTorch state through mtt import: max prob diff A {da:.2e}, B {db:.2e}");
    assert!(da <= 1e-5 && db <= 1e-5, "{da} {db}");
    assert!(max_diff(&a2, &serde_json::to_value(&a).unwrap()) > 1e-3, "the perturbed model must predict differently");
    // From the exported folder's description too.
    let imported2 = f.root.join("imported2");
    Cmd::mtt(["import", "--weights", p(&state), "--like", p(&exported), "--out", p(&imported2)]).run().ok();
    assert_eq!(mtt_probs(&imported2, &texts), (a2, b2));
    // A file with foreign tensors is refused.
    let e = Cmd::mtt(["import", "--weights", p(&exported.join("heads.safetensors")), "--like", p(&ckpt), "--out", p(&f.root.join("bad"))]).run();
    assert!(!e.success());
    assert!(e.stderr.contains("not in the file"), "{}", e.stderr);
}

#[test]
fn torchrun_continues_a_checkpoint_on_two_processes() {
    let f = fixture();
    let mut c = config(&f, "ckpt");
    c.optimizer.lr_plan = multi_task_transformer::optim::LrPreset::Uniform;
    run(&c);
    let ckpt = f.root.join("ckpt");
    let out = f.root.join("ddp");
    let torchrun = venv_python().with_file_name("torchrun");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/torchrun_finetune.py");
    let stdout = Cmd::new(&torchrun)
        .args(["--standalone", "--nproc_per_node", "2", p(&script), "--checkpoint", p(&ckpt), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b)])
        .args(["--steps", "1", "--batch-size", "4", "--out", p(&out)])
        .env("OMP_NUM_THREADS", "1")
        .run()
        .ok()
        .stdout;
    let ranks: Vec<serde_json::Value> = stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(ranks.len(), 2, "{stdout}");
    assert_eq!(ranks[0]["params_sha256"], ranks[1]["params_sha256"], "DDP keeps the ranks' weights identical");
    assert_eq!(ranks[0]["world"], 2);
    assert_eq!(ranks[0]["rates"]["encoder.encoder.layer.0"], 1e-4, "the checkpoint's uniform plan (layer-wise would be 1e-5)");
    // The result is a checkpoint mtt reads directly, and it moved.
    let texts = f.root.join("texts.txt");
    std::fs::write(&texts, TEXTS).unwrap();
    let (a0, _) = mtt_probs(&ckpt, &texts);
    let (a1, _) = mtt_probs(&out, &texts);
    let moved = a0.iter().zip(&a1).flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v).abs())).fold(0.0, f64::max);
    assert!(moved > 0.0, "one DDP step changes the predictions");
}

/// Pair-classification head probabilities of `model` on the texts' consecutive pairs.
fn pair_probs(model: &Path, texts: &str, task: &str) -> Vec<Vec<f64>> {
    let (clf, _) = multi_task_transformer::Classifier::load(model, tch::Device::Cpu).unwrap();
    let lines: Vec<&str> = texts.lines().collect();
    let ids = clf.tokenizer.encode_all(&lines);
    let b = multi_task_transformer::infer::Batching::fixed(8, clf.tokenizer.pad_id());
    let pooled = multi_task_transformer::infer::batched(&ids, b, tch::Device::Cpu, &[clf.model.config.encoder.embedding_dim()], |x, m| vec![clf.model.pooled_t(x, m, false)]).unwrap().remove(0);
    let n = lines.len() as i64;
    let t = clf.model.config.task(task).unwrap().0;
    let p = tch::no_grad(|| clf.model.logits_t(t, &pooled.narrow(0, 0, n - 1), Some(&pooled.narrow(0, 1, n - 1)), false).unwrap().softmax(-1, tch::Kind::Double));
    Vec::<Vec<f64>>::try_from(p).unwrap()
}

#[test]
fn named_heads_go_to_python_and_back() {
    use multi_task_transformer::task::{TaskKind, TaskSpec};
    let f = fixture();
    let para = f.root.join("para.tsv");
    std::fs::write(&para, "text_a\ttext_b\tlabel\nwhat is the name ?\twhat film is this ?\tsame\nwho is the name ?\thow many films ?\tdifferent\nwhere is the city ?\twhere was the film ?\tsame\nhow many city ?\ti love this film !\tdifferent\n").unwrap();
    let sim = f.root.join("sim.tsv");
    std::fs::write(&sim, "text_a\ttext_b\tscore\ni love this film !\tthis movie was great .\t4.8\ni love this film !\ti hate this film .\t0.5\n").unwrap();
    let tasks = vec![TaskSpec::new("para", TaskKind::PairClassification, para, None), TaskSpec::new("sim", TaskKind::Similarity, sim, None)];
    let (ckpt, texts, exported) = trained_and_exported(&f, tasks);
    // Every task in labels.json; every head in the PyTorch model built from it.
    let py = python(&["probs", p(&exported), p(&ckpt.join("model.safetensors")), p(&texts)]);
    assert_eq!((py["missing"].clone(), py["unexpected"].clone()), (serde_json::json!([]), serde_json::json!([])));
    let (a, b) = mtt_probs(&ckpt, &texts);
    let dp = max_diff(&pair_probs(&ckpt, TEXTS, "para"), &py["pairs"]["para"]);
    let (da, db) = (max_diff(&a, &py["heads"]["task_a"]), max_diff(&b, &py["heads"]["task_b"]));
    println!("named heads in PyTorch: max prob diff task_a {da:.2e}, task_b {db:.2e}, para {dp:.2e}");
    assert!(da <= 1e-5 && db <= 1e-5 && dp <= 1e-5, "{da} {db} {dp}");
    // And back: a perturbed PyTorch state through mtt import.
    let state = f.root.join("from-python.safetensors");
    let py = python(&["perturb", p(&exported), p(&ckpt.join("model.safetensors")), p(&texts), p(&state), "3"]);
    let imported = f.root.join("imported");
    Cmd::mtt(["import", "--weights", p(&state), "--like", p(&exported), "--out", p(&imported)]).run().ok();
    let dp = max_diff(&pair_probs(&imported, TEXTS, "para"), &py["pairs"]["para"]);
    let (a2, _) = mtt_probs(&imported, &texts);
    let da = max_diff(&a2, &py["heads"]["task_a"]);
    println!("PyTorch state with named heads through mtt import: max prob diff task_a {da:.2e}, para {dp:.2e}");
    assert!(da <= 1e-5 && dp <= 1e-5, "{da} {dp}");
    let cfg = multi_task_transformer::model::MultiTask::read_config(&imported).unwrap();
    assert_eq!(cfg.task_names(), ["task_a", "task_b", "para", "sim"]);
}
