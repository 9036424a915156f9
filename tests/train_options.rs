//! The training options beyond the seed's: the frozen-encoder cache, task sampling, uncertainty
//! weighting, early stopping and pooling, on a tiny random BERT.

mod common;

use common::{config, fixture, run};
use multi_task_transformer::batch::TaskSampling;
use multi_task_transformer::freeze::Freeze;
use multi_task_transformer::infer::Batching;
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::optim::LrPreset;
use multi_task_transformer::train::LossWeighting;

#[test]
fn cached_and_uncached_frozen_encoder_give_the_same_losses() {
    let f = fixture();
    let mut c = config(&f, "cached");
    c.optimizer.freeze = Freeze::Encoder;
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.optimizer.lr_overrides = vec![("".into(), 1e-2)];
    c.schedule.epochs = 3;
    c.data.ood_b = Some(f.task_b.clone());
    let (cached, lines) = run(&c);
    assert!(cached.metrics.cached, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("computed once")), "{lines:?}");
    c.schedule.cache = false;
    c.output.out = f.root.join("uncached");
    let (plain, _) = run(&c);
    assert!(!plain.metrics.cached);
    let (a, b) = (&cached.metrics.step_losses, &plain.metrics.step_losses);
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 12, "3 epochs of 4 batches");
    for (step, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "step {step}: cached {x} vs recomputed {y}");
    }
    let (first, last): (f64, f64) = (a[..4].iter().sum(), a[8..].iter().sum());
    assert!(last < first, "the heads learn: {a:?}");
    for (e, p) in cached.metrics.epochs.iter().zip(&plain.metrics.epochs) {
        for set in [(&e.dev, &p.dev), (&e.ood, &p.ood)] {
            for (task, m) in set.0 {
                assert_eq!(m.accuracy, set.1[task].accuracy, "epoch {} {task}", e.epoch);
            }
        }
        assert_eq!(e.ood.len(), 1, "ood evaluates Task B only");
    }
    // The saved heads give the same dev metrics through the whole model.
    let (clf, _) = multi_task_transformer::Classifier::load(&f.root.join("cached"), tch::Device::Cpu).unwrap();
    let ex = clf.examples(&[multi_task_transformer::data::read_labelled(&f.task_a, Some(multi_task_transformer::data::Task::A)).unwrap()]).unwrap();
    let m = multi_task_transformer::infer::evaluate(&clf.model, &ex, Batching::fixed(8, clf.tokenizer.pad_id())).unwrap();
    assert_eq!(m.classes["task_a"].accuracy, cached.metrics.epochs[2].dev["task_a"].accuracy);
}

#[test]
fn a_cache_folder_is_reused_and_a_damaged_file_rebuilt() {
    let f = fixture();
    let mut c = config(&f, "first");
    c.optimizer.freeze = Freeze::Encoder;
    c.schedule.cache_dir = Some(f.root.join("cache"));
    let (first, _) = run(&c);
    let files: Vec<_> = std::fs::read_dir(f.root.join("cache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "train and dev sets (no ood set): {files:?}");
    c.output.out = f.root.join("second");
    let (second, lines) = run(&c);
    assert!(lines.iter().any(|l| l.contains("loaded from the cache")), "{lines:?}");
    assert_eq!(first.metrics.step_losses, second.metrics.step_losses);
    // A damaged file is reported, rebuilt, and the run goes on.
    std::fs::write(&files[0], b"not a safetensors file").unwrap();
    c.output.out = f.root.join("third");
    let (third, lines) = run(&c);
    assert!(lines.iter().any(|l| l.starts_with("warning: cache file ignored and rebuilt") && l.contains(&*files[0].to_string_lossy())), "{lines:?}");
    assert_eq!(first.metrics.step_losses, third.metrics.step_losses);
    // Another pooling is another cache entry.
    c.pooling = Some("max".into());
    c.output.out = f.root.join("max");
    run(&c);
    assert_eq!(std::fs::read_dir(f.root.join("cache")).unwrap().count(), 4);
}

#[test]
fn per_task_sampling_trains_each_batch_on_one_task() {
    let f = fixture();
    for sampling in [TaskSampling::RoundRobin, TaskSampling::Temperature(2.0)] {
        let mut c = config(&f, &format!("sampling-{sampling}"));
        c.schedule.sampling = sampling;
        c.optimizer.lr_plan = LrPreset::Uniform;
        c.optimizer.lr_overrides = vec![("".into(), 3e-3)];
        c.schedule.epochs = 15;
        let (out, lines) = run(&c);
        let m = &out.metrics;
        assert_eq!(m.epochs[0].steps, 4, "as many batches as mixed sampling");
        let first: f64 = m.step_losses[..4].iter().sum();
        let last: f64 = m.step_losses[m.step_losses.len() - 4..].iter().sum();
        assert!(last < first / 2.0, "{sampling}: {first} -> {last}\n{lines:?}");
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(c.output.out.join("config.json")).unwrap()).unwrap();
        assert_eq!(saved["training"]["sampling"], sampling.to_string());
    }
}

#[test]
fn uncertainty_weighting_learns_and_saves_its_log_variances() {
    let f = fixture();
    let mut c = config(&f, "uncertainty");
    c.optimizer.loss_weighting = LossWeighting::Uncertainty;
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.schedule.epochs = 3;
    let (out, lines) = run(&c);
    let s = out.metrics.epochs.last().unwrap().loss_log_vars.clone().expect("recorded");
    assert!(s[0] != 0.0 && s[1] != 0.0, "log-variances moved from 0: {s:?}");
    assert!(out.metrics.trainable_subsets.iter().any(|(n, r)| n == "loss_weighting" && *r == 1e-2), "{lines:?}");
    let saved = MultiTask::read_config(&c.output.out).unwrap();
    assert_eq!(saved.loss_log_vars, Some(s.clone()));
    // Continuing from the checkpoint starts from the saved values.
    let mut c2 = config(&f, "continued");
    c2.model = c.output.out.clone();
    c2.optimizer.loss_weighting = LossWeighting::Uncertainty;
    c2.optimizer.lr_overrides = vec![("".into(), 0.0)];
    c2.optimizer.loss_weighting_lr = 1e-12;
    let (out2, _) = run(&c2);
    let s2 = out2.metrics.epochs[0].loss_log_vars.clone().unwrap();
    assert!((s2[0] - s[0]).abs() < 1e-6 && (s2[1] - s[1]).abs() < 1e-6, "{s:?} -> {s2:?}");
}

#[test]
fn patience_stops_when_dev_stops_improving() {
    let f = fixture();
    let mut c = config(&f, "patience");
    // Nothing moves (every rate 0): dev accuracy never improves after the first epoch.
    c.optimizer.lr_overrides = vec![("".into(), 0.0)];
    c.schedule.epochs = 10;
    c.schedule.patience = Some(2);
    let (out, lines) = run(&c);
    assert_eq!(out.metrics.epochs.len(), 3, "{lines:?}");
    assert_eq!(out.metrics.early_stopped_epoch, Some(3));
    assert!(lines.iter().any(|l| l.starts_with("early stop: mean dev accuracy has not improved for 2 epoch(s)")), "{lines:?}");
    c.data.dev_a = None;
    c.data.dev_b = None;
    let e = multi_task_transformer::train::train(&c, multi_task_transformer::train::Progress::Off, &mut |_| {}).err().unwrap();
    assert!(e.to_string().contains("patience needs dev data"), "{e}");
}

#[test]
fn pooling_is_a_training_choice_saved_with_the_checkpoint() {
    let f = fixture();
    let mut c = config(&f, "max");
    c.pooling = Some("max".into());
    let (out, _) = run(&c);
    let saved = MultiTask::read_config(&c.output.out).unwrap();
    assert_eq!(saved.encoder.pooling.describe(), "max");
    let (clf, _) = multi_task_transformer::Classifier::load(&c.output.out, tch::Device::Cpu).unwrap();
    let ex = clf.examples(&[multi_task_transformer::data::read_labelled(&f.task_b, Some(multi_task_transformer::data::Task::B)).unwrap()]).unwrap();
    let m = multi_task_transformer::infer::evaluate(&clf.model, &ex, Batching::fixed(3, clf.tokenizer.pad_id())).unwrap();
    assert_eq!(m.classes["task_b"].accuracy, out.metrics.epochs[0].dev["task_b"].accuracy);
    c.pooling = Some("median".into());
    assert!(c.validate().unwrap_err().to_string().contains("pooling 'median'"));
}
