//! Tasks 2-4 on a tiny random BERT (no model files): freezing, per-subset optimizers and their
//! schedule, the training loop and its edge cases, checkpoints, and the `mtt train` / `eval` /
//! `predict` commands.

mod common;

use common::{config, fixture, p, run, Cmd, Fixture, TASK_A, TASK_B};

use multi_task_transformer::batch::{make_batch, Batch, Draw, Source};
use multi_task_transformer::padding::pad;
use multi_task_transformer::data::{self, Example, Labels, Task};
use multi_task_transformer::freeze::Freeze;
use multi_task_transformer::infer::{self, Batching};
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::optim::{learning_rates, LrPreset, OptimConfig, Optimizers};
use multi_task_transformer::params::{under_prefix, EMBEDDINGS, HEAD_A, HEAD_B};
use multi_task_transformer::train::{train, train_step, LossMix, Progress, RunMetrics, TrainConfig};
use multi_task_transformer::Classifier;
use std::collections::BTreeMap;
use std::time::Duration;
use tch::{Device, Tensor};

/// A model with heads, the mixed examples, and the label sets.
fn model_and_data(f: &Fixture) -> (Classifier, Vec<Example>) {
    tch::manual_seed(5);
    let sources = vec![
        data::read_labelled(&f.task_a, Some(Task::A)).unwrap(),
        data::read_labelled(&f.task_b, Some(Task::B)).unwrap(),
    ];
    let (la, lb) = (Labels::collect(&sources, Task::A), Labels::collect(&sources, Task::B));
    let (clf, _) = Classifier::from_base(&f.model, multi_task_transformer::task::seed_tasks(la, lb), 0.0, Device::Cpu).unwrap();
    let ex = clf.examples(&sources).unwrap();
    (clf, ex)
}

fn changed(before: &Tensor, after: &Tensor) -> bool {
    !before.equal(after)
}

/// Median |change| of the elements of each subset that moved, after one step from `before`.
fn median_moves(clf: &Classifier, before: &BTreeMap<String, Tensor>) -> BTreeMap<String, f64> {
    let after = clf.model.params().snapshot();
    let mut out = BTreeMap::new();
    for s in clf.model.params().subsets() {
        let mut deltas: Vec<f64> = Vec::new();
        for (name, b) in before.iter().filter(|(n, _)| under_prefix(n, &s.name)) {
            let d = Vec::<f64>::try_from((&after[name] - b).abs().flatten(0, -1).to_kind(tch::Kind::Double)).unwrap();
            deltas.extend(d.into_iter().filter(|&x| x > 0.0));
        }
        deltas.sort_by(f64::total_cmp);
        out.insert(s.name.clone(), deltas[deltas.len() / 2]);
    }
    out
}

/// A mixed batch of `rows` as token ids.
fn tokens(clf: &Classifier, ex: &[Example], rows: &[usize]) -> Batch {
    make_batch(ex, &Draw { rows: rows.to_vec(), task: None }, clf.model.tasks(), Source::Tokens { pad_id: clf.tokenizer.pad_id() }, Device::Cpu)
}

/// Adam's first step moves every element that got a gradient by about the rate (elements with
/// no gradient, embedding rows of unused tokens, do not move): so one step from a fresh model
/// shows each subset's effective rate.
fn assert_first_step_rates(clf: &Classifier, ex: &[Example], opts: &mut Optimizers, step: usize, want: &BTreeMap<String, f64>) {
    let before = clf.model.params().snapshot();
    let all: Vec<usize> = (0..ex.len()).collect();
    let b = tokens(clf, ex, &all);
    train_step(&clf.model, opts, &b, &LossMix::fixed(vec![1.0, 1.0]), true, step).unwrap();
    for (name, median) in median_moves(clf, &before) {
        let rate = want[&name];
        assert!((median - rate).abs() <= 0.05 * rate, "step {step}, {name}: median |delta| {median:e} vs rate {rate:e}");
    }
}

#[test]
fn every_freezing_scenario_keeps_frozen_bitwise_and_trains_the_rest() {
    let f = fixture();
    for scenario in ["none", "encoder", "embeddings", "layers:1", "head-a", "head-b", "all"] {
        let (clf, ex) = model_and_data(&f);
        let params = clf.model.params();
        let freeze: Freeze = scenario.parse().unwrap();
        freeze.apply(params).unwrap();
        let frozen_prefixes = freeze.prefixes(params).unwrap();
        let rates = learning_rates(params, LrPreset::Uniform, None, &[]).unwrap();
        let mut opts = Optimizers::new(params, &rates, OptimConfig::default(), 3).unwrap();
        let before = params.snapshot();
        let all: Vec<usize> = (0..ex.len()).collect();
        for step in 0..3 {
            let b = tokens(&clf, &ex, &all);
            train_step(&clf.model, &mut opts, &b, &LossMix::fixed(vec![1.0, 1.0]), true, step).unwrap();
        }
        let after = params.snapshot();
        for (name, b) in &before {
            let is_frozen = frozen_prefixes.iter().any(|p| under_prefix(name, p));
            if is_frozen {
                assert!(!changed(b, &after[name]), "{scenario}: frozen {name} changed");
            } else if !name.contains("token_type_embeddings") && !name.contains("position_embeddings") {
                // (rows of these tables that no token uses get no gradient)
                assert!(changed(b, &after[name]), "{scenario}: trainable {name} did not change");
            }
        }
        assert_eq!(opts.is_empty(), scenario == "all", "{scenario}");
        // A frozen encoder builds no autograd graph: the pooled vector needs no gradient.
        let (ids, mask) = pad(&[&ex[0].ids, &ex[1].ids], clf.tokenizer.pad_id(), Device::Cpu);
        let pooled = clf.model.pooled_t(&ids, &mask, true);
        assert_eq!(pooled.requires_grad(), !freeze.freezes_encoder(), "{scenario}");
    }
}

#[test]
fn first_adam_step_moves_each_subset_by_its_own_rate() {
    let f = fixture();
    let (clf, ex) = model_and_data(&f);
    let rates = learning_rates(clf.model.params(), LrPreset::Layerwise, None, &[]).unwrap();
    assert_eq!((rates[EMBEDDINGS], rates["encoder.encoder.layer.1"], rates[HEAD_B]), (1e-6, 1e-5, 1e-4));
    let mut opts = Optimizers::new(clf.model.params(), &rates, OptimConfig::default(), 1).unwrap();
    assert_first_step_rates(&clf, &ex, &mut opts, 0, &rates);
}

#[test]
fn warmup_and_linear_decay_scale_each_subsets_own_rate() {
    let f = fixture();
    let cfg = OptimConfig { warmup_steps: 4, linear_decay: true, ..Default::default() };
    // 10 planned steps: warm-up (k+1)/4 for k < 4, then (10-k)/6.
    for (step, factor) in [(0usize, 0.25), (3, 1.0), (7, 0.5), (9, 1.0 / 6.0)] {
        let (clf, ex) = model_and_data(&f);
        // Distinct rates, all large enough that float32 resolves a sixth of them (at |w| ~ 1).
        let overrides = [(EMBEDDINGS.to_string(), 2e-4), ("encoder.encoder.layer".to_string(), 5e-5)];
        let rates = learning_rates(clf.model.params(), LrPreset::Layerwise, None, &overrides).unwrap();
        let mut opts = Optimizers::new(clf.model.params(), &rates, cfg.clone(), 10).unwrap();
        let want: BTreeMap<String, f64> = rates.iter().map(|(n, r)| (n.clone(), r * factor)).collect();
        for (name, r) in opts.rates_at(step) {
            assert!((r - want[&name]).abs() < 1e-18, "step {step} {name}: {r:e}");
        }
        // And the optimizers really use it: the first update at that step moves by that rate.
        assert_first_step_rates(&clf, &ex, &mut opts, step, &want);
    }
}

#[test]
fn layer_decay_gives_each_layer_its_power_of_the_factor() {
    let f = fixture();
    let (clf, ex) = model_and_data(&f);
    let rates = learning_rates(clf.model.params(), LrPreset::Uniform, Some(0.5), &[]).unwrap();
    // 2 layers: layer i gets 1e-4 * 0.5^(2-i), the embeddings 1e-4 * 0.5^3.
    let want = [(EMBEDDINGS, 1.25e-5), ("encoder.encoder.layer.0", 2.5e-5), ("encoder.encoder.layer.1", 5e-5), (HEAD_A, 1e-4), (HEAD_B, 1e-4)];
    for (name, r) in want {
        assert!((rates[name] - r).abs() < 1e-18, "{name}: {:e}", rates[name]);
    }
    let mut opts = Optimizers::new(clf.model.params(), &rates, OptimConfig::default(), 1).unwrap();
    assert_first_step_rates(&clf, &ex, &mut opts, 0, &rates);
}

#[test]
fn a_task_a_only_batch_after_a_mixed_batch_leaves_the_sentiment_head_untouched() {
    let f = fixture();
    let (clf, ex) = model_and_data(&f);
    let rates = learning_rates(clf.model.params(), LrPreset::Uniform, None, &[]).unwrap();
    let mut opts = Optimizers::new(clf.model.params(), &rates, OptimConfig::default(), 2).unwrap();
    let all: Vec<usize> = (0..ex.len()).collect();
    let mixed = tokens(&clf, &ex, &all);
    train_step(&clf.model, &mut opts, &mixed, &LossMix::fixed(vec![1.0, 1.0]), true, 0).unwrap();
    // The mixed step gave sentiment_head Adam moments; a step without Task B labels must not
    // move it by momentum.
    let only_a: Vec<usize> = (0..ex.len()).filter(|&i| ex[i].has(0)).collect();
    let b = tokens(&clf, &ex, &only_a);
    assert_eq!((b.n(0), b.n(1)), (8, 0));
    let before = clf.model.params().snapshot();
    let losses = train_step(&clf.model, &mut opts, &b, &LossMix::fixed(vec![1.0, 1.0]), true, 1).unwrap();
    let (per_task, total) = losses.read().unwrap();
    let (a, bl) = (per_task[0], per_task[1]);
    assert!(a.is_some() && bl.is_none() && total.is_finite());
    let after = clf.model.params().snapshot();
    for (name, t) in &before {
        if under_prefix(name, HEAD_B) {
            assert!(!changed(t, &after[name]), "{name} changed");
        }
        if under_prefix(name, HEAD_A) {
            assert!(changed(t, &after[name]), "{name} did not change");
        }
    }
}

fn overfit_config(f: &Fixture, out: &str) -> TrainConfig {
    let mut c = config(f, out);
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.optimizer.lr_overrides = vec![("".into(), 3e-3)];
    c.schedule.epochs = 60;
    c.schedule.batch_size = 8;
    c
}

#[test]
fn overfits_eight_examples_to_full_accuracy() {
    let f = fixture();
    let (out, lines) = run(&overfit_config(&f, "overfit"));
    let last = out.metrics.epochs.last().unwrap();
    assert_eq!(last.dev["task_a"].accuracy, 1.0, "{lines:?}");
    assert_eq!(last.dev["task_b"].accuracy, 1.0, "{lines:?}");
    let first = out.metrics.step_losses[0];
    let final_loss = *out.metrics.step_losses.last().unwrap();
    assert!(final_loss < first / 5.0, "loss {first} -> {final_loss}");
    assert!(lines.iter().any(|l| l.starts_with("Epoch [60/60], Loss Task A: ")));
}

#[test]
fn save_best_keeps_the_best_dev_epoch() {
    let f = fixture();
    let mut c = overfit_config(&f, "best");
    c.output.save_best = true;
    let (out, lines) = run(&c);
    let m = &out.metrics;
    let score = |e: usize| m.epochs[e - 1].dev.values().map(|d| d.accuracy).sum::<f64>() / 2.0;
    // The first epoch with the highest mean dev accuracy (ties do not replace it).
    let best = (1..=m.epochs.len()).fold(1, |b, e| if score(e) > score(b) { e } else { b });
    assert_eq!(m.saved_epoch, Some(best));
    assert!(best < 60, "the run should reach its best before the end (best {best})");
    assert!(lines.iter().any(|l| l.ends_with(&format!("epoch {best}: checkpoint kept)"))), "{lines:?}");
    // The folder holds that epoch's weights: evaluating them gives that epoch's dev metrics.
    let dir = f.root.join("best");
    let (loaded, _) = Classifier::load(&dir, Device::Cpu).unwrap();
    let dev = loaded.examples(&[data::read_labelled(&f.task_a, Some(Task::A)).unwrap(), data::read_labelled(&f.task_b, Some(Task::B)).unwrap()]).unwrap();
    let got = infer::evaluate(&loaded.model, &dev, Batching::fixed(64, loaded.tokenizer.pad_id())).unwrap();
    assert_eq!(got.classes, m.epochs[best - 1].dev);
    let on_disk: RunMetrics = serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!((on_disk.saved_epoch, on_disk.epochs.len()), (Some(best), 60));
}

#[test]
fn max_steps_on_an_epoch_boundary_stops_right_there() {
    let f = fixture();
    // 16 rows, batch 4: 4 steps per epoch.
    let mut c = config(&f, "limit");
    c.schedule.epochs = 3;
    c.schedule.max_steps = Some(4);
    let (out, lines) = run(&c);
    let m = &out.metrics;
    assert_eq!(m.epochs.len(), 1, "{lines:?}");
    assert_eq!((m.epochs[0].steps, m.step_losses.len(), m.saved_epoch, m.stopped_early), (4, 4, Some(1), true));
    assert!(m.epochs[0].loss_a.is_finite() && m.epochs[0].loss_b.is_finite());
    assert!(!lines.iter().any(|l| l.contains("NaN")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopped at the step limit (4 optimizer steps)")), "{lines:?}");
    // A limit equal to the whole plan is not an early stop (the same folder: replaced on request).
    c.output.overwrite = true;
    c.schedule.max_steps = Some(12);
    let (out, _) = run(&c);
    assert_eq!((out.metrics.epochs.len(), out.metrics.step_losses.len(), out.metrics.stopped_early), (3, 12, false));
    // A limit inside an epoch ends that epoch early and saves it.
    c.schedule.max_steps = Some(6);
    let (out, _) = run(&c);
    let steps: Vec<usize> = out.metrics.epochs.iter().map(|e| e.steps).collect();
    assert_eq!((steps, out.metrics.saved_epoch), (vec![4, 2], Some(2)));
}

#[test]
fn same_seed_gives_identical_losses_and_another_seed_does_not() {
    let f = fixture();
    let losses = |seed: u64, out: &str| {
        let mut c = config(&f, out);
        c.schedule.seed = seed;
        c.schedule.epochs = 2;
        c.head_dropout = Some(0.1);
        run(&c).0.metrics.step_losses
    };
    let (a, b, other) = (losses(7, "s1"), losses(7, "s2"), losses(8, "s3"));
    assert_eq!(a, b);
    assert_ne!(a, other);
}

fn logits_of(clf: &Classifier, texts: &[&str]) -> (Tensor, Tensor) {
    let ids = clf.tokenizer.encode_all(texts);
    let seqs: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
    let (x, m) = multi_task_transformer::padding::pad(&seqs, clf.tokenizer.pad_id(), Device::Cpu);
    let l = tch::no_grad(|| clf.model.text_heads_t(&clf.model.pooled_t(&x, &m, false), false));
    (l[0].1.shallow_clone(), l[1].1.shallow_clone())
}

#[test]
fn save_then_load_gives_identical_logits_and_seed_names() {
    let f = fixture();
    let mut c = config(&f, "ckpt");
    c.schedule.max_steps = Some(3);
    let (out, _) = run(&c);
    assert!(out.metrics.stopped_early);
    let dir = f.root.join("ckpt");
    for file in ["model.safetensors", "config.json", "vocab.txt", "metrics.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(MultiTask::is_checkpoint(&dir) && !MultiTask::is_checkpoint(&f.model));
    let (loaded, report) = Classifier::load(&dir, Device::Cpu).unwrap();
    assert!(report.unexpected.is_empty() && report.missing.is_empty());
    let texts = ["what is the city ?", "i love this film !", "a"];
    let (a1, b1) = logits_of(&out.classifier, &texts);
    let (a2, b2) = logits_of(&loaded, &texts);
    assert!(a1.equal(&a2) && b1.equal(&b2));
    let names: Vec<String> = Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    for want in ["encoder.embeddings.word_embeddings.weight", "encoder.encoder.layer.1.output.LayerNorm.bias", "classification_head.weight", "sentiment_head.bias"] {
        assert!(names.iter().any(|n| n == want), "{want} not saved");
    }
    assert!(!names.iter().any(|n| n.contains("pooler")));
}

#[test]
fn continuing_from_a_checkpoint_honours_head_dropout() {
    let f = fixture();
    let mut c = config(&f, "drop1");
    c.schedule.max_steps = Some(2);
    c.head_dropout = Some(0.1);
    run(&c);
    let first = f.root.join("drop1");
    assert_eq!(MultiTask::read_config(&first).unwrap().head_dropout, 0.1);
    // Not given: the checkpoint's own value carries on.
    let mut cont = config(&f, "drop2");
    cont.model = first.clone();
    cont.schedule.max_steps = Some(2);
    run(&cont);
    assert_eq!(MultiTask::read_config(&f.root.join("drop2")).unwrap().head_dropout, 0.1);
    // Given: it replaces the checkpoint's.
    cont.head_dropout = Some(0.3);
    cont.output.out = f.root.join("drop3");
    run(&cont);
    assert_eq!(MultiTask::read_config(&f.root.join("drop3")).unwrap().head_dropout, 0.3);
}

#[test]
fn non_finite_loss_stops_with_an_error_and_keeps_the_last_checkpoint() {
    let f = fixture();
    let c = config(&f, "nan");
    run(&c);
    let weights = f.root.join("nan/model.safetensors");
    let saved = std::fs::read(&weights).unwrap();
    // An absurd rate sends the weights to ~1e30 after one step; the next loss is not finite.
    let mut bad = config(&f, "nan");
    bad.output.overwrite = true;
    bad.optimizer.lr_overrides = vec![("".into(), 1e30)];
    let e = train(&bad, Progress::Off, &mut |_: &str| {}).err().expect("a non-finite loss must stop training").to_string();
    assert!(e.contains("loss became NaN") || e.contains("loss became inf"), "{e}");
    assert!(e.contains("nan still holds an earlier run's checkpoint, left as it was"), "{e}");
    assert_eq!(std::fs::read(&weights).unwrap(), saved, "checkpoint was modified");
}

#[test]
fn freeze_all_evaluates_without_training() {
    let f = fixture();
    let mut c = config(&f, "all");
    c.optimizer.freeze = Freeze::All;
    let (out, lines) = run(&c);
    assert!(out.metrics.step_losses.is_empty());
    assert!(lines.iter().any(|l| l.contains("evaluation only")), "{lines:?}");
    assert!(f.root.join("all/model.safetensors").is_file());
}

#[test]
fn bad_settings_fail_before_any_training() {
    let f = fixture();
    let mut c = config(&f, "err");
    let dev = f.root.join("dev.tsv");
    std::fs::write(&dev, "text\tlabel\nwhat is it ?\tENTY\nwho ?\tDESC\n").unwrap();
    c.data.dev_a = Some(dev);
    let e = train(&c, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("dev.tsv:3: task_a label 'DESC' was never seen in training"), "{e}");
    let mut c = config(&f, "err2");
    c.optimizer.lr_overrides = vec![("encoder.decoder".into(), 1e-3)];
    let e = train(&c, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("'encoder.decoder' matches no subset"), "{e}");
    c.optimizer.lr_overrides = vec![("encoder.encoder.layer.0.attention".into(), 1e-3)];
    let e = train(&c, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("lies inside the subset encoder.encoder.layer.0"), "{e}");
    // An output path that is a file is refused before the model is even loaded.
    let taken = f.root.join("taken");
    std::fs::write(&taken, "x").unwrap();
    let mut c = config(&f, "taken");
    let mut lines = Vec::new();
    let e = train(&c, Progress::Off, &mut |l: &str| lines.push(l.to_string())).err().unwrap().to_string();
    assert!(e.contains("taken exists and is not a folder"), "{e}");
    assert!(lines.is_empty(), "{lines:?}");
    c.output.out = f.root.join("fine");
    c.schedule.batch_size = 0;
    assert!(train(&c, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string().contains("batch_size must be at least 1"));
}

#[test]
fn progress_lines_are_logged_when_no_bar_is_shown() {
    let f = fixture();
    let c = config(&f, "lines");
    let mut lines = Vec::new();
    train(&c, Progress::Lines(Duration::ZERO), &mut |l: &str| lines.push(l.to_string())).unwrap();
    let progress: Vec<&String> = lines.iter().filter(|l| l.starts_with("  epoch 1/1 step ")).collect();
    assert_eq!(progress.len(), 4, "{lines:?}");
    assert!(progress[3].starts_with("  epoch 1/1 step 4/4: loss ") && progress[3].contains("sentences/s, epoch ETA 0s"), "{}", progress[3]);
}

#[test]
fn mtt_train_eval_and_predict_agree() {
    let f = fixture();
    let out = f.root.join("cli");
    let log = Cmd::mtt(["train", "--model", p(&f.model), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b), "--out", p(&out), "--max-steps", "4", "--batch-size", "4", "--device", "cpu", "--progress-every", "0"]).run().ok().stdout;
    // Off a terminal, plain progress lines stand in for the bar.
    assert!(log.contains("  epoch 1/1 step 4/4: loss "), "{log}");
    let eval: serde_json::Value = serde_json::from_str(&Cmd::mtt(["eval", "--model", p(&out), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b)]).run().ok().stdout).unwrap();
    for (task, file, key) in [("task_a", TASK_A, "task_a"), ("task_b", TASK_B, "task_b")] {
        let rows: Vec<(&str, &str)> = file.lines().skip(1).map(|l| l.split_once('\t').unwrap()).collect();
        let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
        let preds = Cmd::mtt(["predict", "--model", p(&out)]).stdin(input).run().ok().json_lines();
        assert_eq!(preds.len(), rows.len());
        let correct = rows.iter().zip(&preds).filter(|((t, gold), pr)| pr["text"] == *t && pr[key]["label"] == *gold).count();
        let m = &eval[task];
        assert_eq!(m["n"], rows.len());
        assert_eq!(m["accuracy"].as_f64().unwrap(), correct as f64 / rows.len() as f64, "{task}");
        let sum: f64 = preds[0][key]["probs"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
}

#[test]
fn mtt_train_errors_are_clear_and_said_once() {
    let f = fixture();
    let help = Cmd::mtt(["train", "--help"]).run().ok().stdout;
    assert!(help.contains("[possible values: none, all, encoder, embeddings, layers:K, head-a, head-b, head:NAME, heads]"), "{help}");
    assert!(help.contains("[possible values: uniform, layerwise]"), "{help}");
    let taken = f.root.join("taken");
    std::fs::write(&taken, "x").unwrap();
    let args = ["train", "--model", p(&f.model), "--task-a", p(&f.task_a), "--task-b", p(&f.task_b), "--device", "cpu", "--out", p(&taken)];
    let out = Cmd::mtt(args).run();
    let err = &out.stderr;
    assert!(!out.success());
    assert_eq!(err.matches("exists and is not a folder").count(), 1, "{err}");
    assert!(!out.stdout.contains("training on"), "trained before checking --out");
    for (flag, value, want) in [("--freeze", "everything", "unknown freezing scenario 'everything'"), ("--batch-size", "0", "must be at least 1"), ("--head-dropout", "1.5", "must be in [0, 1)")] {
        let out = Cmd::mtt(["train", "--task-a", p(&f.task_a), "--out", "x", flag, value]).run();
        let err = &out.stderr;
        assert!(!out.success() && err.contains(flag) && err.contains(want), "{flag}: {err}");
    }
}
