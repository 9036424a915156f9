//! One optimisation step and the reading of its results: the per-task cross-entropy, how the
//! losses combine ([`LossMix`]), [`train_step`], and the pending values read back from the
//! device at sync points, where a non-finite value stops the run.

use super::metrics::RunMetrics;
use super::state::EpochSums;
use crate::batch::{Batch, Inputs, IGNORE};
use crate::error::{Error, Result};
use crate::model::MultiTask;
use crate::optim::Optimizers;
use tch::{Device, Kind, Reduction, Tensor};

/// The libtorch seed of training step `step` (0-based) of a run seeded `seed`.
pub fn step_seed(seed: u64, step: usize) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) as i64 & i64::MAX
}

/// One task's mean cross-entropy over the rows that have its label, or `None` if none has.
fn task_loss(logits: &Tensor, targets: &Tensor, n: usize) -> Option<Tensor> {
    (n > 0).then(|| logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, IGNORE, 0.0))
}

/// Losses of one training step, as detached device scalars (reading them waits for the device).
pub struct StepLosses {
    /// Task A's mean cross-entropy over the batch's Task A rows (`None` when it had none).
    pub loss_a: Option<Tensor>,
    /// Task B's mean cross-entropy over the batch's Task B rows (`None` when it had none).
    pub loss_b: Option<Tensor>,
    /// The weighted sum that was minimised.
    pub total: Tensor,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<Tensor>,
}

impl StepLosses {
    /// The values on the CPU: Task A loss, Task B loss, weighted total.
    pub fn read(&self) -> Result<(Option<f64>, Option<f64>, f64)> {
        let read = |t: &Tensor| -> Result<f64> { Ok(f64::try_from(t)?) };
        Ok((self.loss_a.as_ref().map(read).transpose()?, self.loss_b.as_ref().map(read).transpose()?, read(&self.total)?))
    }
}

/// How one step combines the two tasks' losses.
#[derive(Clone, Copy)]
pub struct LossMix<'a> {
    /// Factor on Task A's loss (with uncertainty weighting, on its precision-scaled term).
    pub weight_a: f64,
    /// Factor on Task B's loss (with uncertainty weighting, on its precision-scaled term).
    pub weight_b: f64,
    /// Uncertainty weighting's `[2]` log-variances, when it is on.
    pub log_vars: Option<&'a Tensor>,
}

impl LossMix<'_> {
    /// Fixed weights.
    pub fn fixed(weight_a: f64, weight_b: f64) -> LossMix<'static> {
        LossMix { weight_a, weight_b, log_vars: None }
    }

    fn term(&self, loss: &Tensor, task: i64) -> Tensor {
        let w = if task == 0 { self.weight_a } else { self.weight_b };
        match self.log_vars {
            None => loss * w,
            Some(s) => {
                let s = s.get(task);
                loss * w * (-&s).exp() + s * 0.5
            }
        }
    }
}

/// One optimisation step on `b`: forward (dropout in the heads, and in the encoder when
/// `encoder_dropout`), per-task cross-entropy over the rows that have that task's label, combined
/// by `mix`, backward and every optimizer's step. Returns `None` (and changes nothing) when the
/// batch has no label at all. Reads nothing back from the device, so it does not check the loss:
/// the caller does, at its sync points.
pub fn train_step(model: &MultiTask, opts: &mut Optimizers, b: &Batch, mix: &LossMix, encoder_dropout: bool, step: usize) -> Option<StepLosses> {
    let logits = match &b.inputs {
        Inputs::Tokens { ids, mask } => model.heads_t(&model.pooled_t(ids, mask, encoder_dropout), true),
        Inputs::Pooled(p) => model.heads_t(p, true),
    };
    let la = task_loss(&logits.a, &b.labels_a, b.n_a);
    let lb = task_loss(&logits.b, &b.labels_b, b.n_b);
    let total = match (&la, &lb) {
        (Some(a), Some(b)) => mix.term(a, 0) + mix.term(b, 1),
        (Some(a), None) => mix.term(a, 0),
        (None, Some(b)) => mix.term(b, 1),
        (None, None) => return None,
    };
    let grad_norm = opts.step(&total, step);
    Some(StepLosses { loss_a: la.map(|t| t.detach()), loss_b: lb.map(|t| t.detach()), total: total.detach(), grad_norm })
}

/// Step results not yet read from the device.
#[derive(Default)]
pub(super) struct Pending {
    steps: Vec<usize>,
    totals: Vec<Tensor>,
    a: Vec<Tensor>,
    b: Vec<Tensor>,
    /// Whether each pending step had a Task A / Task B loss.
    has_a: Vec<bool>,
    has_b: Vec<bool>,
    norms: Vec<(usize, Tensor)>,
}

impl Pending {
    pub(super) fn push(&mut self, step: usize, s: StepLosses) {
        self.steps.push(step);
        self.totals.push(s.total);
        self.has_a.push(s.loss_a.is_some());
        self.has_b.push(s.loss_b.is_some());
        self.a.extend(s.loss_a);
        self.b.extend(s.loss_b);
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
        let all: Vec<Tensor> =
            self.totals.iter().chain(&self.a).chain(&self.b).chain(self.norms.iter().map(|(_, n)| n)).map(|t| t.reshape([1])).collect();
        let values = Vec::<f64>::try_from(Tensor::cat(&all, 0).to_kind(Kind::Double).to_device(Device::Cpu))?;
        let (totals, rest) = values.split_at(self.totals.len());
        let (a, rest) = rest.split_at(self.a.len());
        let (b, norms) = rest.split_at(self.b.len());
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
        for (has, values, out) in [(&self.has_a, a, &mut metrics.step_losses_a), (&self.has_b, b, &mut metrics.step_losses_b)] {
            let mut v = values.iter();
            out.extend(has.iter().map(|&h| if h { v.next().copied() } else { None }));
        }
        sums.sum_a += a.iter().sum::<f64>();
        sums.n_a += a.len();
        sums.sum_b += b.iter().sum::<f64>();
        sums.n_b += b.len();
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
            p.push(step, StepLosses { loss_a: Some(scalar(v)), loss_b: None, total: scalar(v), grad_norm: None });
        }
        let mut m = RunMetrics::default();
        let e = p.flush(0, &mut m, &mut EpochSums::default(), &saved).unwrap_err().to_string();
        assert!(e.starts_with("loss became NaN at step 2 (epoch 1)") && e.contains("saved: nothing."), "{e}");
        let mut p = Pending::default();
        p.push(3, StepLosses { loss_a: None, loss_b: Some(scalar(1.0)), total: scalar(1.0), grad_norm: Some(scalar(f32::INFINITY)) });
        let e = p.flush(1, &mut m, &mut EpochSums::default(), &saved).unwrap_err().to_string();
        assert!(e.starts_with("gradient norm became inf at step 3 (epoch 2)"), "{e}");
        let mut p = Pending::default();
        p.push(4, StepLosses { loss_a: Some(scalar(2.0)), loss_b: Some(scalar(1.0)), total: scalar(3.0), grad_norm: Some(scalar(0.5)) });
        let mut sums = EpochSums::default();
        p.flush(0, &mut m, &mut sums, &saved).unwrap();
        assert_eq!((sums.sum_a, sums.n_a, sums.sum_b, sums.n_b, sums.last_total), (2.0, 1, 1.0, 1, 3.0));
        assert_eq!(m.step_losses, vec![3.0]);
        assert_eq!((m.step_losses_a.clone(), m.step_losses_b.clone()), (vec![Some(2.0)], vec![Some(1.0)]));
        assert_eq!(p.len(), 0);
    }
}
