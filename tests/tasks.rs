//! Named tasks of the three kinds on one encoder, on a tiny random BERT: classification beside a
//! pair-classification and a similarity task, what the checkpoint records, freezing one named
//! head, the frozen-encoder cache for pairs, resuming bitwise, checkpoints from before tasks were
//! named, and the command line (`--task`, `--tasks`, `eval --task`, `predict`).

mod common;

use common::{config, fixture, p, run, Cmd, Fixture};
use multi_task_transformer::freeze::Freeze;
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::optim::LrPreset;
use multi_task_transformer::data::{self, Labels, Task};
use multi_task_transformer::task::{TaskInfo, TaskKind, TaskSpec};
use multi_task_transformer::testing::write_tiny_model_folder_with;
use multi_task_transformer::train::{self, Progress, RunControl, RunMetrics, TrainConfig};
use multi_task_transformer::{Classifier, Error};
use std::path::{Path, PathBuf};

/// Paraphrase or not: pairs that share their question word are paraphrases.
const PARA: &str = "text_a\ttext_b\tlabel\n\
what is the name ?\twhat film is this ?\tsame\n\
who is the name ?\twho was it ?\tsame\n\
where is the city ?\twhere was the film ?\tsame\n\
how many city ?\thow many films ?\tsame\n\
what is the name ?\twho was it ?\tdifferent\n\
who is the name ?\thow many films ?\tdifferent\n\
where is the city ?\ti love this film !\tdifferent\n\
how many city ?\tthis was awful .\tdifferent\n";

/// Similarity 0-5: the same sentiment scores high.
const SIM: &str = "text_a\ttext_b\tscore\n\
i love this film !\tthis movie was great .\t4.8\n\
i hate this film .\tthis was awful .\t4.5\n\
i love this film !\ti hate this film .\t0.5\n\
this movie was great .\tthis was awful .\t0.2\n\
it was a film .\tthe movie is a film .\t4.0\n\
very fun movie !\tvery boring film .\t1.0\n\
very fun movie !\ti love this film !\t4.2\n\
very boring film .\tthis was awful .\t3.9\n";

fn write(f: &Fixture, name: &str, text: &str) -> PathBuf {
    let path = f.root.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Task A plus `para` (pair-classification) and `sim` (similarity), each file its own dev file.
fn three_kinds(f: &Fixture, out: &str) -> TrainConfig {
    let mut c = config(f, out);
    c.data.task_b = None;
    c.data.dev_b = None;
    let (para, sim) = (write(f, "para.tsv", PARA), write(f, "sim.tsv", SIM));
    c.data.tasks = vec![
        TaskSpec::new("para", TaskKind::PairClassification, para.clone(), Some(para)),
        TaskSpec::new("sim", TaskKind::Similarity, sim.clone(), Some(sim)),
    ];
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.optimizer.lr_overrides = vec![("".into(), 3e-3)];
    c
}

fn metrics(dir: &Path) -> RunMetrics {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn three_kinds_train_together_and_every_loss_falls() {
    let f = fixture();
    // Without dropout: on eight pairs, the tiny encoder's 10% dropout decides the outcome (over
    // 28 seeded runs, 4 ended below 0.8 Pearson, whether packed or padded).
    let mut c = three_kinds(&f, "three");
    c.model = f.root.join("tiny-no-dropout");
    write_tiny_model_folder_with(&c.model, 11, |m| (m.bert.hidden_dropout_prob, m.bert.attention_probs_dropout_prob) = (0.0, 0.0)).unwrap();
    c.schedule.epochs = 40;
    let (out, lines) = run(&c);
    let m = &out.metrics;
    assert_eq!(m.tasks, ["task_a", "para", "sim"]);
    assert!(lines[0].contains("8 Task A labels, 8 para (pair-classification), 8 sim (similarity)"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("Epoch [1/40], Loss Task A: ") && l.contains(", Loss para: ") && l.contains(", Loss sim: ")), "{lines:?}");
    let (first, last) = (&m.epochs[0], m.epochs.last().unwrap());
    // Cross-entropy on 8 rows falls to near 0; the cosine loss of a tiny random encoder less far.
    for (task, factor) in [("task_a", 0.5), ("para", 0.5), ("sim", 0.75)] {
        assert!(last.losses[task] < first.losses[task] * factor, "{task}: loss {} -> {}", first.losses[task], last.losses[task]);
    }
    assert_eq!(last.dev["task_a"].accuracy, 1.0, "{lines:?}");
    assert_eq!(last.dev["para"].accuracy, 1.0, "{lines:?}");
    // The cosines learn the scores: their correlation with the gold scores rises.
    let (s0, s1) = (first.dev_similarity["sim"], last.dev_similarity["sim"]);
    assert!(s1.pearson > 0.8 && s1.pearson > s0.pearson + 0.1, "{s0:?} -> {s1:?}");
    assert_eq!(m.step_losses_by_task["para"].len(), m.step_losses.len());
    // The checkpoint records every task; only the classification kinds have heads.
    let saved = MultiTask::read_config(&c.output.out).unwrap();
    let kinds: Vec<(&str, TaskKind, usize)> = saved.tasks.iter().map(|t| (t.name.as_str(), t.kind, t.labels.len())).collect();
    assert_eq!(kinds, [("task_a", TaskKind::Classification, 4), ("para", TaskKind::PairClassification, 2), ("sim", TaskKind::Similarity, 0)]);
    assert_eq!(saved.tasks[2].score_range, Some([0.0, 5.0]));
    assert!(saved.labels_b.is_none() && saved.labels_a.is_some());
    let (clf, report) = Classifier::load(&c.output.out, tch::Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let subsets: Vec<&str> = clf.model.params().subsets().iter().map(|s| s.name.as_str()).filter(|n| !n.starts_with("encoder")).collect();
    assert_eq!(subsets, ["classification_head", "heads.para"]);
    // The pair head reads (u, v, |u - v|): three times the pooled width.
    let w = clf.model.params().named_variables().into_iter().find(|(n, _)| n == "heads.para.weight").unwrap().1;
    assert_eq!(w.size(), [2, 3 * saved.encoder.embedding_dim()]);
}

#[test]
fn freezing_a_named_head_keeps_it_bitwise_and_the_cache_covers_pairs() {
    let f = fixture();
    let mut c = three_kinds(&f, "frozen-para");
    c.schedule.epochs = 2;
    c.optimizer.freeze = Freeze::Head("para".into());
    let before = {
        tch::manual_seed(c.schedule.seed as i64);
        let la = Labels::collect(&[data::read_labelled(&f.task_a, Some(Task::A)).unwrap()], Task::A);
        let tasks = vec![
            TaskInfo::classes("task_a", TaskKind::Classification, la),
            TaskInfo::classes("para", TaskKind::PairClassification, Labels(vec!["different".into(), "same".into()])),
            TaskInfo { name: "sim".into(), kind: TaskKind::Similarity, labels: Labels::default(), score_range: Some([0.0, 5.0]) },
        ];
        let (clf, _) = Classifier::from_base(&c.model, tasks, 0.0, tch::Device::Cpu).unwrap();
        clf.model.params().snapshot()
    };
    let (out, lines) = run(&c);
    let after = out.classifier.model.params().snapshot();
    for (name, t) in &before {
        let same = t.equal(&after[name]);
        if name.starts_with("heads.para") {
            assert!(same, "{name} changed: {lines:?}");
        } else if name.starts_with("classification_head") {
            assert!(!same, "{name} did not train");
        }
    }
    assert!(out.metrics.frozen_subsets.contains(&"heads.para".to_string()));
    // A frozen encoder trains the heads on cached vectors of both texts of every pair: the same
    // dev metrics as recomputing the encoder at every step.
    let mut cached = three_kinds(&f, "cached");
    cached.optimizer.freeze = Freeze::Encoder;
    cached.schedule.epochs = 3;
    let (a, lines) = run(&cached);
    assert!(a.metrics.cached, "{lines:?}");
    let mut plain = cached.clone();
    plain.output.out = f.root.join("uncached");
    plain.schedule.cache = false;
    let (b, _) = run(&plain);
    assert!(!b.metrics.cached);
    let (x, y) = (a.metrics.epochs.last().unwrap(), b.metrics.epochs.last().unwrap());
    assert_eq!(x.dev["para"].confusion, y.dev["para"].confusion);
    assert!((x.dev_similarity["sim"].spearman - y.dev_similarity["sim"].spearman).abs() < 1e-9);
    assert!((x.losses["para"] - y.losses["para"]).abs() < 1e-5, "{:?} vs {:?}", x.losses, y.losses);
}

#[test]
fn three_kinds_resume_bitwise() {
    let f = fixture();
    let mut full = three_kinds(&f, "full");
    full.schedule.epochs = 2;
    full.head_dropout = Some(0.2);
    run(&full);
    let mut cut = full.clone();
    cut.output.out = f.root.join("cut");
    let ctl = RunControl { interrupt_after: Some(7), ..RunControl::new(Progress::Off) };
    let e = train::train_with(&cut, &ctl, &mut |_: &str| {}).err().expect("the run must stop");
    assert!(matches!(e, Error::Interrupted { step: 7, .. }), "{e}");
    train::resume(&cut.output.out, Progress::Off, &mut |_: &str| {}).unwrap();
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(weights(&cut.output.out) == weights(&full.output.out), "resumed weights differ");
    let (a, b) = (metrics(&cut.output.out), metrics(&full.output.out));
    assert_eq!(a.step_losses, b.step_losses);
    assert_eq!(a.step_losses_by_task, b.step_losses_by_task);
    assert_eq!(serde_json::to_string(&a.epochs.last().unwrap().dev_similarity).unwrap(), serde_json::to_string(&b.epochs.last().unwrap().dev_similarity).unwrap());
}

#[test]
fn a_two_task_checkpoint_from_before_named_tasks_still_loads() {
    let f = fixture();
    let mut c = config(&f, "old");
    c.schedule.max_steps = Some(2);
    run(&c);
    // The config as older versions wrote it: labels_a/labels_b, no `tasks` (and no checksums).
    let path = c.output.out.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("tasks");
    o.remove("integrity");
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let (clf, report) = Classifier::load(&c.output.out, tch::Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    assert_eq!(clf.model.config.task_names(), ["task_a", "task_b"]);
    let probs = clf.probabilities(&["who was it ?"], multi_task_transformer::infer::Batching::fixed(4, clf.tokenizer.pad_id())).unwrap();
    assert_eq!(probs.iter().map(|(t, p)| (t.as_str(), p.size())).collect::<Vec<_>>(), [("task_a", vec![1, 4]), ("task_b", vec![1, 3])]);
    // A config whose labels_a disagrees with its task list is refused, naming the file.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["tasks"] = serde_json::json!([{"name": "task_a", "kind": "classification", "labels": ["x"]}]);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let e = MultiTask::read_config(&c.output.out).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("labels_a"), "{e}");
}

#[test]
fn the_command_line_trains_evaluates_and_predicts_named_tasks() {
    let f = fixture();
    let (para, sim) = (write(&f, "para.tsv", PARA), write(&f, "sim.tsv", SIM));
    let tasks = write(&f, "tasks.toml", "[[task]]\nname = \"sim\"\nkind = \"similarity\"\ntrain = \"sim.tsv\"\nweight = 0.5\n");
    let out = f.root.join("cli");
    let r = Cmd::mtt(["train", "--model", p(&f.model), "--task-a", p(&f.task_a), "--out", p(&out), "--device", "cpu", "--epochs", "2"])
        .arg("--task")
        .arg(format!("para=pair-classification:{}:{}", p(&para), p(&para)))
        .arg("--tasks")
        .arg(p(&tasks))
        .run()
        .ok();
    assert!(r.stdout.contains("Loss para: ") && r.stdout.contains("Loss sim: "), "{}", r.stdout);
    let cfg = MultiTask::read_config(&out).unwrap();
    assert_eq!(cfg.task_names(), ["task_a", "para", "sim"]);
    let eval = Cmd::mtt(["eval", "--model", p(&out), "--device", "cpu", "--task-a", p(&f.task_a)])
        .arg("--task")
        .arg(format!("para={}", p(&para)))
        .arg("--task")
        .arg(format!("sim={}", p(&sim)))
        .run()
        .ok();
    let v: serde_json::Value = serde_json::from_str(eval.stdout.trim()).unwrap();
    assert_eq!(v["para"]["n"], 8);
    assert_eq!(v["task_a"]["n"], 8);
    assert!(v["sim"]["spearman"].is_f64() && v["sim"]["n"] == 8, "{v}");
    let e = Cmd::mtt(["eval", "--model", p(&out), "--device", "cpu", "--task", "nope=x.tsv"]).run();
    assert!(!e.success());
    assert!(e.stderr.contains("no task 'nope'") && e.stderr.contains("task_a, para, sim"), "{}", e.stderr);
    // predict answers every one-text classification head under its name.
    let pred = Cmd::mtt(["predict", "--model", p(&out), "--device", "cpu"]).stdin("who was it ?\n").run().ok();
    let line: serde_json::Value = serde_json::from_str(pred.stdout.trim()).unwrap();
    assert!(line["task_a"]["label"].is_string() && line.get("task_b").is_none(), "{line}");
    // --pairs: each TEXT_A<TAB>TEXT_B line gets the pair tasks' answers.
    let pred = Cmd::mtt(["predict", "--model", p(&out), "--device", "cpu", "--pairs"]).stdin("who was it ?\thow many films ?\ni love this film !\tthis was awful .\n").run().ok();
    let lines = pred.json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["text_b"], "this was awful .");
    assert!(lines[0]["para"]["label"].is_string() && lines[0]["sim"]["score"].is_f64() && lines[0].get("task_a").is_none(), "{}", lines[0]);
    let keys: Vec<&String> = lines[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);
    let bad = Cmd::mtt(["predict", "--model", p(&out), "--device", "cpu", "--pairs"]).stdin("no tab here\n").run();
    assert!(!bad.success() && bad.stderr.contains("stdin:1: expected TEXT_A<TAB>TEXT_B"), "{}", bad.stderr);
    // A bad --task names what is wrong.
    let e = Cmd::mtt(["train", "--model", p(&f.model), "--out", p(&f.root.join("bad")), "--task", "para=regression:x.tsv"]).run();
    assert!(!e.success());
    assert!(e.stderr.contains("task kind 'regression'"), "{}", e.stderr);
}

#[path = "../benches/serve_load/driver.rs"]
mod driver;

fn post(url: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = match ureq::post(&format!("{url}{path}")).set("Content-Type", "application/json").send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("{path}: {e}"),
    };
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

#[test]
fn serve_answers_named_heads_and_scores_pairs() {
    let f = fixture();
    let mut c = three_kinds(&f, "served");
    c.schedule.epochs = 3;
    let (out, _) = run(&c);
    let clf = out.classifier;
    let server = driver::Server::start(common::bin("mtt"), &c.output.out, &[]);
    // /predict: every one-text head, or the ones named.
    let (s, v) = post(&server.url, "/predict", r#"{"texts": ["who was it ?"]}"#);
    assert_eq!(s, 200, "{v}");
    assert!(v["predictions"][0]["task_a"]["label"].is_string(), "{v}");
    let (s, v) = post(&server.url, "/predict", r#"{"texts": ["who was it ?"], "tasks": ["task_b"]}"#);
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("no classification head 'task_b' (its heads: task_a)"), "{v}");
    // /similarity: the cosine of the two texts' vectors, as the library computes it.
    let pairs = [("i love this film !", "this movie was great ."), ("who was it ?", "how many films ?")];
    let body = serde_json::json!({ "pairs": pairs.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>() }).to_string();
    let (s, v) = post(&server.url, "/similarity", &body);
    assert_eq!(s, 200, "{v}");
    let ids = clf.tokenizer.encode_all(&pairs.iter().flat_map(|(a, b)| [*a, *b]).collect::<Vec<_>>());
    let pooled = multi_task_transformer::infer::batched(&ids, multi_task_transformer::infer::Batching::fixed(8, clf.tokenizer.pad_id()), tch::Device::Cpu, &[clf.model.config.encoder.embedding_dim()], |x, m| {
        vec![clf.model.pooled_t(x, m, false)]
    })
    .unwrap()
    .remove(0);
    for (i, got) in v["similarities"].as_array().unwrap().iter().enumerate() {
        let (u, w) = (pooled.get(2 * i as i64).unsqueeze(0), pooled.get(2 * i as i64 + 1).unsqueeze(0));
        let want = f64::try_from(tch::Tensor::cosine_similarity(&u, &w, 1, 1e-8)).unwrap();
        assert!((got.as_f64().unwrap() - want).abs() < 1e-5, "pair {i}: {got} vs {want}");
        // The pair head's probabilities, as the model computes them.
        let probs = tch::no_grad(|| clf.model.logits_t(1, &u, Some(&w), false).unwrap().softmax(-1, tch::Kind::Float));
        let want: Vec<f32> = Vec::try_from(probs.flatten(0, -1)).unwrap();
        let (s, p) = post(&server.url, "/similarity", &serde_json::json!({ "pairs": [[pairs[i].0, pairs[i].1]], "task": "para" }).to_string());
        assert_eq!(s, 200, "{p}");
        let got = &p["predictions"][0]["probs"];
        for (label, w) in ["different", "same"].iter().zip(&want) {
            assert!((got[label].as_f64().unwrap() - *w as f64).abs() < 1e-5, "{label}: {got} vs {want:?}");
        }
    }
    let (s, v) = post(&server.url, "/similarity", r#"{"pairs": [["a", "b"]], "task": "nope"}"#);
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("its pair tasks: para, sim"), "{v}");
    let (s, v) = post(&server.url, "/similarity", r#"{"pairs": [["a"]]}"#);
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("pairs[0] is not a [text, text] pair"), "{v}");
}
