//! One optimisation step and the reading of its results: the per-task cross-entropy, how the
//! losses combine ([`LossMix`]), [`train_step`], and the pending values read back from the
//! device at sync points, where a non-finite value stops the run.

use super::metrics::RunMetrics;
use super::state::EpochSums;
use crate::batch::{Batch, Inputs, TaskPart, IGNORE};
use crate::task::TaskKind;
use crate::error::{Error, Result};
use crate::model::MultiTask;
use crate::optim::Optimizers;
use tch::{Device, Kind, Reduction, Tensor};

/// The libtorch seed of training step `step` (0-based) of a run seeded `seed`.
pub fn step_seed(seed: u64, step: usize) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) as i64 & i64::MAX
}

/// One task's loss on its part of the batch: mean cross-entropy over its labelled rows
/// (classification kinds), or the mean squared error between the pair's cosine similarity and
/// the rescaled score (similarity).
fn task_loss(model: &MultiTask, pooled: &Tensor, part: &TaskPart) -> Tensor {
    let u = pooled.index_select(0, &part.u);
    let v = part.v.as_ref().map(|v| pooled.index_select(0, v));
    match part.kind {
        TaskKind::Similarity => {
            let v = v.expect("a similarity part has second texts");
            let cos = Tensor::cosine_similarity(&u, &v, 1, 1e-8);
            (cos - &part.target).square().mean(Kind::Float)
        }
        _ => {
            let logits = model.logits_t(part.task, &u, v.as_ref(), true).expect("a classification task has a head");
            logits.cross_entropy_loss::<Tensor>(&part.target, None, Reduction::Mean, IGNORE, 0.0)
        }
    }
}

/// Losses of one training step, as detached device scalars (reading them waits for the device).
pub struct StepLosses {
    /// Each task's loss over its rows in the batch, by task index (`None` when it had none).
    pub per_task: Vec<Option<Tensor>>,
    /// The weighted sum that was minimised.
    pub total: Tensor,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<Tensor>,
}

impl StepLosses {
    /// The values on the CPU: each task's loss, the weighted total.
    pub fn read(&self) -> Result<(Vec<Option<f64>>, f64)> {
        let read = |t: &Tensor| -> Result<f64> { Ok(f64::try_from(t)?) };
        let per_task = self.per_task.iter().map(|l| l.as_ref().map(read).transpose()).collect::<Result<_>>()?;
        Ok((per_task, read(&self.total)?))
    }
}

/// How one step combines the tasks' losses.
#[derive(Clone)]
pub struct LossMix<'a> {
    /// Factor on each task's loss, by task index (with uncertainty weighting, on its
    /// precision-scaled term).
    pub weights: Vec<f64>,
    /// Uncertainty weighting's `[n_tasks]` log-variances, when it is on.
    pub log_vars: Option<&'a Tensor>,
}

impl LossMix<'_> {
    /// Fixed weights.
    pub fn fixed(weights: Vec<f64>) -> LossMix<'static> {
        LossMix { weights, log_vars: None }
    }

    fn term(&self, loss: &Tensor, task: usize) -> Tensor {
        let w = self.weights.get(task).copied().unwrap_or(1.0);
        match self.log_vars {
            None => loss * w,
            Some(s) => {
                let s = s.get(task as i64);
                loss * w * (-&s).exp() + s * 0.5
            }
        }
    }
}

/// One optimisation step on `b`: forward (dropout in the heads, and in the encoder when
/// `encoder_dropout`), each task's loss over its rows, combined by `mix`, backward and every
/// optimizer's step. Returns `None` (and changes nothing) when the batch has no target at all.
/// Reads nothing back from the device, so it does not check the loss: the caller does, at its
/// sync points.
pub fn train_step(model: &MultiTask, opts: &mut Optimizers, b: &Batch, mix: &LossMix, encoder_dropout: bool, step: usize) -> Option<StepLosses> {
    if b.parts.is_empty() {
        return None;
    }
    let pooled = match &b.inputs {
        Inputs::Tokens { ids, mask } => model.pooled_t(ids, mask, encoder_dropout),
        Inputs::Pooled(p) => p.shallow_clone(),
    };
    let mut per_task: Vec<Option<Tensor>> = (0..model.tasks().len()).map(|_| None).collect();
    let mut total: Option<Tensor> = None;
    for part in &b.parts {
        let loss = task_loss(model, &pooled, part);
        let term = mix.term(&loss, part.task);
        total = Some(match total {
            None => term,
            Some(t) => t + term,
        });
        per_task[part.task] = Some(loss);
    }
    let total = total?;
    let grad_norm = opts.step(&total, step);
    Some(StepLosses { per_task: per_task.into_iter().map(|l| l.map(|t| t.detach())).collect(), total: total.detach(), grad_norm })
}

/// Step results not yet read from the device.
#[derive(Default)]
pub(super) struct Pending {
    steps: Vec<usize>,
    totals: Vec<Tensor>,
    /// Each pending step's task losses, by task index.
    losses: Vec<Vec<Option<Tensor>>>,
    norms: Vec<(usize, Tensor)>,
}

impl Pending {
    pub(super) fn push(&mut self, step: usize, s: StepLosses) {
        self.steps.push(step);
        self.totals.push(s.total);
        self.losses.push(s.per_task);
        if let Some(n) = s.grad_norm {
            self.norms.push((step, n));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads every pending value in one transfer, checks it, and adds it to `metrics` and `sums`.
    /// A non-finite value is an error that ends with `saved()`: what the output folder holds.
    pub(super) fn flush(&mut self, epoch: usize, metrics: &mut RunMetrics, sums: &mut EpochSums, saved: &dyn Fn() -> String) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let task_losses = self.losses.iter().flatten().flatten();
        let all: Vec<Tensor> = self.totals.iter().chain(task_losses).chain(self.norms.iter().map(|(_, n)| n)).map(|t| t.reshape([1])).collect();
        let values = Vec::<f64>::try_from(Tensor::cat(&all, 0).to_kind(Kind::Double).to_device(Device::Cpu))?;
        let (totals, rest) = values.split_at(self.totals.len());
        let n_task_values: usize = self.losses.iter().map(|l| l.iter().flatten().count()).sum();
        let (task_values, norms) = rest.split_at(n_task_values);
        let stop = |what: &str, v: f64, step: usize| {
            Error::NonFinite(format!(
                "{what} became {v} at step {step} (epoch {}); training stopped and nothing more was saved: {}. Try a lower learning rate or gradient clipping",
                epoch + 1,
                saved()
            ))
        };
        if let Some((&step, &v)) = self.steps.iter().zip(totals).find(|(_, v)| !v.is_finite()) {
            return Err(stop("loss", v, step));
        }
        if let Some(((step, _), &v)) = self.norms.iter().zip(norms).find(|(_, v)| !v.is_finite()) {
            return Err(stop("gradient norm", v, *step));
        }
        metrics.step_losses.extend_from_slice(totals);
        let mut v = task_values.iter();
        for step in &self.losses {
            let read: Vec<Option<f64>> = step.iter().map(|l| l.as_ref().map(|_| *v.next().expect("one value per loss"))).collect();
            sums.add(&read);
            metrics.push_step_losses(&read);
        }
        sums.last_total = *totals.last().expect("not empty");
        *self = Pending::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_value_stops_at_the_flush_naming_the_step() {
        let mut p = Pending::default();
        let scalar = |v: f32| Tensor::from_slice(&[v]).reshape([]);
        let saved = || "nothing".to_string();
        for (step, v) in [(1, 0.5f32), (2, f32::NAN)] {
            p.push(step, StepLosses { per_task: vec![Some(scalar(v)), None], total: scalar(v), grad_norm: None });
        }
        let mut m = RunMetrics { tasks: vec!["task_a".into(), "task_b".into()], ..Default::default() };
        let e = p.flush(0, &mut m, &mut EpochSums::default(), &saved).unwrap_err().to_string();
        assert!(e.starts_with("loss became NaN at step 2 (epoch 1)") && e.contains("saved: nothing."), "{e}");
        let mut p = Pending::default();
        p.push(3, StepLosses { per_task: vec![None, Some(scalar(1.0))], total: scalar(1.0), grad_norm: Some(scalar(f32::INFINITY)) });
        let e = p.flush(1, &mut m, &mut EpochSums::default(), &saved).unwrap_err().to_string();
        assert!(e.starts_with("gradient norm became inf at step 3 (epoch 2)"), "{e}");
        let mut p = Pending::default();
        p.push(4, StepLosses { per_task: vec![Some(scalar(2.0)), Some(scalar(1.0))], total: scalar(3.0), grad_norm: Some(scalar(0.5)) });
        let mut sums = EpochSums::default();
        p.flush(0, &mut m, &mut sums, &saved).unwrap();
        assert_eq!((sums.mean(0), sums.mean(1), sums.last_total), ((2.0, 1), (1.0, 1), 3.0));
        assert_eq!(m.step_losses, vec![3.0]);
        assert_eq!((m.step_losses_a.clone(), m.step_losses_b.clone()), (vec![Some(2.0)], vec![Some(1.0)]));
        assert_eq!(p.len(), 0);
    }
}
