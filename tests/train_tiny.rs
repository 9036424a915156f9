//! Tasks 2-4 on a tiny random BERT (no model files): freezing, per-subset optimizers, the
//! training loop, checkpoints and the `mtt eval` / `mtt predict` commands.

mod common;

use multi_task_transformer::data::{self, Labels, Task};
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::optim::{learning_rates, Freeze, LrPreset, OptimConfig, Optimizers};
use multi_task_transformer::params::{under_prefix, HEAD_A, HEAD_B};
use multi_task_transformer::testing::write_tiny_model_folder;
use multi_task_transformer::train::{train, train_step, TrainConfig};
use multi_task_transformer::SentenceEncoder;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Task A: question type from the question word; Task B: sentiment from the adjective.
const TASK_A: &str = "text\tlabel\nwhat is the name ?\tENTY\nwho is the name ?\tHUM\nwhere is the city ?\tLOC\nhow many city ?\tNUM\nwhat film is this ?\tENTY\nwho was it ?\tHUM\nwhere was the film ?\tLOC\nhow many films ?\tNUM\n";
const TASK_B: &str = "text\tlabel\ni love this film !\tpositive\nthis movie was great .\tpositive\ni hate this film .\tnegative\nthis was awful .\tnegative\nit was a film .\tneutral\nthe movie is a film .\tneutral\nvery fun movie !\tpositive\nvery boring film .\tnegative\n";

/// libtorch's random generator is global: tests that draw from it (initialisation, dropout)
/// must not interleave, or "same seed, same losses" would fail for the wrong reason.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Fixture {
    _serial: std::sync::MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    model: PathBuf,
    task_a: PathBuf,
    task_b: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    write_tiny_model_folder(&model, 11).unwrap();
    let task_a = dir.path().join("a.tsv");
    let task_b = dir.path().join("b.tsv");
    std::fs::write(&task_a, TASK_A).unwrap();
    std::fs::write(&task_b, TASK_B).unwrap();
    let root = dir.path().to_path_buf();
    Fixture { _serial: serial, _dir: dir, model, task_a, task_b, root }
}

fn config(f: &Fixture, out: &str) -> TrainConfig {
    let mut c = TrainConfig::new(f.model.clone(), f.root.join(out));
    c.task_a = Some(f.task_a.clone());
    c.task_b = Some(f.task_b.clone());
    c.dev_a = Some(f.task_a.clone());
    c.dev_b = Some(f.task_b.clone());
    c.device = "cpu".into();
    c.batch_size = 4;
    c
}

/// A model with heads, the mixed examples, and the label sets.
fn model_and_data(f: &Fixture) -> (MultiTask, Vec<data::Example>) {
    tch::manual_seed(5);
    let sources = vec![
        data::read_labelled(&f.task_a, Some(Task::A)).unwrap(),
        data::read_labelled(&f.task_b, Some(Task::B)).unwrap(),
    ];
    let (la, lb) = (Labels::collect(&sources, Task::A), Labels::collect(&sources, Task::B));
    let (base, _) = SentenceEncoder::load(&f.model, Device::Cpu).unwrap();
    let model = MultiTask::new(base, la.clone(), lb.clone(), 0.0).unwrap();
    let ex = data::examples(&sources, &la, &lb, &model.base.tokenizer).unwrap();
    (model, ex)
}

fn changed(before: &Tensor, after: &Tensor) -> bool {
    !before.equal(after)
}

#[test]
fn every_freezing_scenario_keeps_frozen_bitwise_and_trains_the_rest() {
    let f = fixture();
    for scenario in ["none", "encoder", "embeddings", "layers:1", "head-a", "head-b", "all"] {
        let (model, ex) = model_and_data(&f);
        let freeze = Freeze::parse(scenario).unwrap();
        freeze.apply(&model.base.params, 2).unwrap();
        let frozen_prefixes = freeze.prefixes(2).unwrap();
        let rates = learning_rates(&model.base.params, LrPreset::Uniform, None, &[]).unwrap();
        let mut opts = Optimizers::new(&model.base.params, &rates, OptimConfig::default(), 3).unwrap();
        let before = model.base.params.snapshot();
        let all: Vec<usize> = (0..ex.len()).collect();
        for step in 0..3 {
            let b = data::make_batch(&ex, &all, model.base.tokenizer.pad_id(), Device::Cpu);
            train_step(&model, &mut opts, &b, 1.0, 1.0, step).unwrap();
        }
        let after = model.base.params.snapshot();
        for (name, b) in &before {
            let is_frozen = frozen_prefixes.iter().any(|p| under_prefix(name, p));
            if is_frozen {
                assert!(!changed(b, &after[name]), "{scenario}: frozen {name} changed");
            } else if !name.contains("token_type_embeddings") && !name.contains("position_embeddings") {
                // (rows of these tables that no token uses get no gradient; checked below)
                assert!(changed(b, &after[name]), "{scenario}: trainable {name} did not change");
            }
        }
        assert_eq!(opts.is_empty(), scenario == "all", "{scenario}");
        // A frozen encoder builds no autograd graph: the pooled vector needs no gradient.
        let b = data::make_batch(&ex, &[0, 1], model.base.tokenizer.pad_id(), Device::Cpu);
        let pooled = model.pooled_t(&b.ids, &b.mask, true);
        assert_eq!(pooled.requires_grad(), !matches!(scenario, "encoder" | "all"), "{scenario}");
    }
}

#[test]
fn first_adam_step_moves_each_subset_by_its_own_rate() {
    let f = fixture();
    let (model, ex) = model_and_data(&f);
    let rates = learning_rates(&model.base.params, LrPreset::Layerwise, None, &[]).unwrap();
    let mut opts = Optimizers::new(&model.base.params, &rates, OptimConfig::default(), 1).unwrap();
    let before = model.base.params.snapshot();
    let all: Vec<usize> = (0..ex.len()).collect();
    let b = data::make_batch(&ex, &all, model.base.tokenizer.pad_id(), Device::Cpu);
    train_step(&model, &mut opts, &b, 1.0, 1.0, 0).unwrap();
    let after = model.base.params.snapshot();
    for s in model.base.params.subsets() {
        // Adam's first step moves every element that got a gradient by about the rate; elements
        // with no gradient (embedding rows of unused tokens) do not move at all.
        let mut deltas: Vec<f64> = Vec::new();
        for (name, b) in before.iter().filter(|(n, _)| under_prefix(n, &s.name)) {
            let d = Vec::<f64>::try_from((&after[name] - b).abs().flatten(0, -1).to_kind(tch::Kind::Double)).unwrap();
            deltas.extend(d.into_iter().filter(|&x| x > 0.0));
        }
        deltas.sort_by(f64::total_cmp);
        let median = deltas[deltas.len() / 2];
        let rate = rates[&s.name];
        assert!((median - rate).abs() <= 0.05 * rate, "{}: median |delta| {median:e} vs rate {rate:e}", s.name);
    }
}

#[test]
fn a_batch_with_only_task_a_labels_leaves_the_sentiment_head_untouched() {
    let f = fixture();
    let (model, ex) = model_and_data(&f);
    let rates = learning_rates(&model.base.params, LrPreset::Uniform, None, &[]).unwrap();
    let mut opts = Optimizers::new(&model.base.params, &rates, OptimConfig::default(), 1).unwrap();
    let only_a: Vec<usize> = (0..ex.len()).filter(|&i| ex[i].label_a.is_some()).collect();
    let b = data::make_batch(&ex, &only_a, model.base.tokenizer.pad_id(), Device::Cpu);
    assert_eq!((b.n_a, b.n_b), (8, 0));
    let before = model.base.params.snapshot();
    let losses = train_step(&model, &mut opts, &b, 1.0, 1.0, 0).unwrap();
    assert!(losses.loss_b.is_none() && losses.total.is_finite());
    let after = model.base.params.snapshot();
    for (name, t) in &before {
        if under_prefix(name, HEAD_B) {
            assert!(!changed(t, &after[name]), "{name} changed");
        }
        if under_prefix(name, HEAD_A) {
            assert!(changed(t, &after[name]), "{name} did not change");
        }
    }
}

#[test]
fn overfits_eight_examples_to_full_accuracy() {
    let f = fixture();
    let mut c = config(&f, "overfit");
    c.lr_plan = LrPreset::Uniform;
    c.lr_overrides = vec![("".into(), 3e-3)];
    c.epochs = 60;
    c.batch_size = 8;
    let mut lines = Vec::new();
    let out = train(&c, false, &mut |l: &str| lines.push(l.to_string())).unwrap();
    let last = out.metrics.epochs.last().unwrap();
    assert_eq!(last.dev["task_a"].accuracy, 1.0, "{lines:?}");
    assert_eq!(last.dev["task_b"].accuracy, 1.0, "{lines:?}");
    let first = out.metrics.step_losses[0];
    let final_loss = *out.metrics.step_losses.last().unwrap();
    assert!(final_loss < first / 5.0, "loss {first} -> {final_loss}");
    assert!(lines.iter().any(|l| l.starts_with("Epoch [60/60], Loss Task A: ")));
}

#[test]
fn same_seed_gives_identical_losses_and_another_seed_does_not() {
    let f = fixture();
    let run = |seed: u64, out: &str| {
        let mut c = config(&f, out);
        c.seed = seed;
        c.epochs = 2;
        c.head_dropout = 0.1;
        train(&c, false, &mut |_: &str| {}).unwrap().metrics.step_losses
    };
    let (a, b, other) = (run(7, "s1"), run(7, "s2"), run(8, "s3"));
    assert_eq!(a, b);
    assert_ne!(a, other);
}

fn logits_of(model: &MultiTask, texts: &[&str]) -> (Tensor, Tensor) {
    let ids = model.base.tokenizer.encode_all(texts);
    let seqs: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
    let (x, m) = multi_task_transformer::batch::pad(&seqs, model.base.tokenizer.pad_id(), Device::Cpu);
    let l = tch::no_grad(|| model.forward_t(&x, &m, false));
    (l.a, l.b)
}

#[test]
fn save_then_load_gives_identical_logits_and_seed_names() {
    let f = fixture();
    let mut c = config(&f, "ckpt");
    c.max_steps = Some(3);
    let out = train(&c, false, &mut |_: &str| {}).unwrap();
    assert!(out.metrics.stopped_early);
    let dir = f.root.join("ckpt");
    for file in ["model.safetensors", "config.json", "vocab.txt", "metrics.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let (loaded, report) = MultiTask::load(&dir, Device::Cpu).unwrap();
    assert!(report.unexpected.is_empty() && report.missing.is_empty());
    let texts = ["what is the city ?", "i love this film !", "a"];
    let (a1, b1) = logits_of(&out.model, &texts);
    let (a2, b2) = logits_of(&loaded, &texts);
    assert!(a1.equal(&a2) && b1.equal(&b2));
    let names: Vec<String> = Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    for want in ["encoder.embeddings.word_embeddings.weight", "encoder.encoder.layer.1.output.LayerNorm.bias", "classification_head.weight", "sentiment_head.bias"] {
        assert!(names.iter().any(|n| n == want), "{want} not saved");
    }
    assert!(!names.iter().any(|n| n.contains("pooler")));
}

#[test]
fn non_finite_loss_stops_with_an_error_and_keeps_the_last_checkpoint() {
    let f = fixture();
    let c = config(&f, "nan");
    train(&c, false, &mut |_: &str| {}).unwrap();
    let weights = f.root.join("nan/model.safetensors");
    let saved = std::fs::read(&weights).unwrap();
    let mut bad = config(&f, "nan");
    bad.weight_a = f64::NAN;
    let e = train(&bad, false, &mut |_: &str| {}).err().expect("NaN must stop training").to_string();
    assert!(e.contains("loss became NaN"), "{e}");
    assert_eq!(std::fs::read(&weights).unwrap(), saved, "checkpoint was modified");
}

#[test]
fn freeze_all_evaluates_without_training() {
    let f = fixture();
    let mut c = config(&f, "all");
    c.freeze = Freeze::All;
    let mut lines = Vec::new();
    let out = train(&c, false, &mut |l: &str| lines.push(l.to_string())).unwrap();
    assert!(out.metrics.step_losses.is_empty());
    assert!(lines.iter().any(|l| l.contains("evaluation only")), "{lines:?}");
    assert!(f.root.join("all/model.safetensors").is_file());
}

#[test]
fn unseen_eval_label_and_unknown_lr_prefix_are_errors() {
    let f = fixture();
    let mut c = config(&f, "err");
    let dev = f.root.join("dev.tsv");
    std::fs::write(&dev, "text\tlabel\nwhat is it ?\tENTY\nwho ?\tDESC\n").unwrap();
    c.dev_a = Some(dev);
    let e = train(&c, false, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("dev.tsv:3: task_a label 'DESC' was never seen in training"), "{e}");
    let mut c = config(&f, "err2");
    c.lr_overrides = vec![("encoder.decoder".into(), 1e-3)];
    let e = train(&c, false, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("prefix matches no subset"), "{e}");
}

fn mtt(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mtt"));
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mtt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[test]
fn mtt_train_eval_and_predict_agree() {
    let f = fixture();
    let out = f.root.join("cli");
    mtt(&["train", "--model", p(&f.model), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b), "--out", p(&out), "--max-steps", "4", "--batch-size", "4", "--device", "cpu"], None);
    let eval: serde_json::Value = serde_json::from_str(&mtt(&["eval", "--model", p(&out), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b)], None)).unwrap();
    for (task, file, key) in [("task_a", TASK_A, "task_a"), ("task_b", TASK_B, "task_b")] {
        let rows: Vec<(&str, &str)> = file.lines().skip(1).map(|l| l.split_once('\t').unwrap()).collect();
        let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
        let preds: Vec<serde_json::Value> = mtt(&["predict", "--model", p(&out)], Some(&input)).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(preds.len(), rows.len());
        let correct = rows.iter().zip(&preds).filter(|((t, gold), pr)| pr["text"] == *t && pr[key]["label"] == *gold).count();
        let m = &eval[task];
        assert_eq!(m["n"], rows.len());
        assert_eq!(m["accuracy"].as_f64().unwrap(), correct as f64 / rows.len() as f64, "{task}");
        let sum: f64 = preds[0][key]["probs"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}
