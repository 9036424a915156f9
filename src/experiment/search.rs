//! The searches behind the `tuned` and `heads-only:tuned` recipes: seed-0 trials on dev data,
//! each a run under `search/<recipe>/`, and the settings they choose.

use super::{mean_accuracy, slug, write_json, Entry, Overrides, Runner, Search};
use crate::error::Result;
use crate::freeze::Freeze;
use crate::optim::LrPreset;
use crate::train::steps_per_epoch;
use serde::{Deserialize, Serialize};

/// One trial of a search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// The settings the trial adds to its configuration's.
    pub settings: Overrides,
    /// Mean dev accuracy over the tasks, per epoch.
    pub dev_by_epoch: Vec<f64>,
    /// Task A dev accuracy of the trial's kept epoch (NaN when it has no Task A dev metrics).
    pub dev_a: f64,
    /// Task B dev accuracy of the trial's kept epoch (NaN when it has no Task B dev metrics).
    pub dev_b: f64,
    /// What the search compares: the kept epoch's mean dev accuracy over the tasks.
    pub score: f64,
    /// Wall-clock seconds of the trial's run.
    pub wall_seconds: f64,
}

/// What a search tried and chose (`search/<name>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRecord {
    /// The name of the configuration the search is for.
    pub name: String,
    /// The search's procedure in words: what was tried, on which data, and how the winner
    /// was picked.
    pub procedure: String,
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
    /// The settings the recipe runs with (over its configuration's own).
    pub chosen: Overrides,
}

/// Rates as `[5e-5, 1e-4]`.
fn rate_list(rates: &[f64]) -> String {
    format!("[{}]", rates.iter().map(|r| format!("{r:e}")).collect::<Vec<_>>().join(", "))
}

/// The best trial's index (the first of equals).
fn best(ts: &[Trial]) -> usize {
    (0..ts.len()).fold(0, |b, i| if ts[i].score > ts[b].score { i } else { b })
}

impl Runner<'_> {
    /// Warm-up over the first ~10% of the steps of one epoch of `e` with `settings` (at least 1).
    fn warmup(&self, e: &Entry, settings: &Overrides) -> Result<usize> {
        let cfg = self.config(&[&e.set, settings], 0, &self.plan.out.join("probe"))?;
        Ok((steps_per_epoch(&cfg)? / 10).max(1))
    }

    /// Runs one trial (seed 0, `settings` over the configuration's own) in its folder under
    /// `search/<name>/`.
    fn trial(&mut self, e: &Entry, settings: Overrides, log: &mut dyn FnMut(&str)) -> Result<Trial> {
        let dir = self.plan.out.join("search").join(slug(&e.name)).join(format!("trial-{}", slug(&settings.to_string())));
        log(&format!("  search {}: trial {settings}", e.name));
        let cfg = self.config(&[&e.set, &settings], 0, &dir)?;
        let (r, m, _) = self.run_one(&e.name, &cfg, log)?;
        let dev_by_epoch: Vec<f64> = m.epochs.iter().filter(|x| x.epoch > 0).map(|x| mean_accuracy(&x.dev)).collect();
        let acc = |k: &str| r.dev.get(k).map_or(f64::NAN, |m| m.accuracy);
        let t = Trial { settings, score: mean_accuracy(&r.dev), dev_a: acc("task_a"), dev_b: acc("task_b"), dev_by_epoch, wall_seconds: r.wall_seconds };
        log(&format!("    dev accuracy A {:.4}, B {:.4} (mean {:.4})", t.dev_a, t.dev_b, t.score));
        Ok(t)
    }

    /// Runs a search's trials and returns its record, also written to `search/<name>.json`.
    pub(super) fn search(&mut self, e: &Entry, kind: Search, log: &mut dyn FnMut(&str)) -> Result<SearchRecord> {
        let (procedure, trials, chosen) = match kind {
            Search::Tuned => self.tuned(e, log)?,
            Search::HeadsOnly => self.heads_only(e, log)?,
        };
        let record = SearchRecord { name: e.name.clone(), procedure, trials, chosen };
        write_json(&self.plan.out.join("search").join(format!("{}.json", slug(&e.name))), &record)?;
        log(&format!("  search {} chose: {}", e.name, record.chosen));
        Ok(record)
    }

    /// `tuned`: everything trainable at one uniform rate, warm-up over 10% of the first epoch,
    /// linear decay. Stage 1: rate x batch size at one epoch on the first rows of each training
    /// file; stage 2: the winner at 2 epochs, kept if better.
    fn tuned(&mut self, e: &Entry, log: &mut dyn FnMut(&str)) -> Result<(String, Vec<Trial>, Overrides)> {
        let quick = self.plan.quick;
        let limit = if quick { 64 } else { 1000 };
        let rates: &[f64] = if quick { &[1e-4, 3e-4] } else { &[5e-5, 1e-4, 2e-4] };
        let batches: &[usize] = if quick { &[16] } else { &[16, 32] };
        let recipe = |rate: f64, batch_size: usize, epochs: usize| Overrides {
            lr_plan: Some(LrPreset::Uniform),
            lr: Some(rate),
            linear_decay: Some(true),
            batch_size: Some(batch_size),
            epochs: Some(epochs),
            ..Overrides::default()
        };
        // A trial: the recipe on the subset, its warm-up from the subset's steps per epoch.
        let on_subset = |me: &Self, rate: f64, batch: usize, epochs: usize| -> Result<Overrides> {
            let mut s = Overrides { limit: Some(limit), ..recipe(rate, batch, epochs) };
            s.warmup_steps = Some(me.warmup(e, &s)?);
            Ok(s)
        };
        let mut trials = Vec::new();
        for &r in rates {
            for &b in batches {
                let s = on_subset(self, r, b, 1)?;
                trials.push(self.trial(e, s, log)?);
            }
        }
        let w = best(&trials);
        let (rate, batch) = {
            let s = &trials[w].settings;
            (s.lr.expect("a tuned trial sets lr"), s.batch_size.expect("a tuned trial sets batch_size"))
        };
        let mut best_epochs = 1;
        if !quick {
            let s = on_subset(self, rate, batch, 2)?;
            let t = self.trial(e, s, log)?;
            if t.score > trials[w].score {
                best_epochs = 2;
            }
            trials.push(t);
        }
        // The full-data recipe: warm-up over ~10% of its own first epoch's steps.
        let mut chosen = recipe(rate, batch, best_epochs);
        chosen.warmup_steps = Some(self.warmup(e, &chosen)?);
        let procedure = format!(
            "uniform rate in {} x batch size in {batches:?}, one epoch each on the first {limit} rows of each training file, \
             warm-up 10% of the first epoch then linear decay; then the winner at 2 epochs (kept if its dev score is higher). \
             Score: mean dev accuracy of the two tasks, seed 0.",
            rate_list(rates)
        );
        Ok((procedure, trials, chosen))
    }

    /// `heads-only`: encoder frozen (cached vectors); the head rate and epoch count with the best
    /// mean dev accuracy over every trial's per-epoch curve.
    fn heads_only(&mut self, e: &Entry, log: &mut dyn FnMut(&str)) -> Result<(String, Vec<Trial>, Overrides)> {
        let quick = self.plan.quick;
        let rates: &[f64] = if quick { &[1e-2] } else { &[1e-3, 3e-3, 1e-2, 3e-2] };
        let max_epochs = if quick { 3 } else { 40 };
        let recipe = |rate: f64, epochs: usize| Overrides {
            freeze: Some(Freeze::Encoder),
            lr_plan: Some(LrPreset::Uniform),
            lr: Some(rate),
            epochs: Some(epochs),
            ..Overrides::default()
        };
        let mut trials = Vec::new();
        for &r in rates {
            trials.push(self.trial(e, Overrides { patience: Some(5), ..recipe(r, max_epochs) }, log)?);
        }
        let mut best_score = f64::NEG_INFINITY;
        let (mut rate, mut epochs) = (rates[0], 1);
        for t in &trials {
            for (i, &s) in t.dev_by_epoch.iter().enumerate() {
                if s > best_score {
                    best_score = s;
                    epochs = i + 1;
                    rate = t.settings.lr.expect("a heads-only trial sets lr");
                }
            }
        }
        let procedure = format!(
            "encoder frozen (cached vectors); head rate in {}, constant, up to {max_epochs} epochs with patience 5 on all training data; \
             the (rate, epoch) with the best mean dev accuracy, seed 0.",
            rate_list(rates)
        );
        Ok((procedure, trials, recipe(rate, epochs)))
    }
}
