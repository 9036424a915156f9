//! Owns sentence pooling and L2 normalisation, as pure functions on tensors.
//!
//! Mirrors sentence-transformers' `models.Pooling` (v3.3.1) and `models.Normalize`: padding never
//! counts; `[CLS]` and `[SEP]` do, as they carry attention mask 1.

use crate::config::PoolingConfig;
use tch::{Kind, Tensor};

/// Mask-aware mean: `hidden` `[batch, seq, hidden]`, `mask` `[batch, seq]` (1 = token) to
/// `[batch, hidden]`. The token count is clamped at 1e-9 as sentence-transformers does.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Tensor {
    let (sum, count) = masked_sum(hidden, mask);
    sum / count.clamp_min(1e-9)
}

/// Mean scaled by the square root of the token count (`pooling_mode_mean_sqrt_len_tokens`).
pub fn mean_sqrt_len_pool(hidden: &Tensor, mask: &Tensor) -> Tensor {
    let (sum, count) = masked_sum(hidden, mask);
    sum / count.clamp_min(1e-9).sqrt()
}

/// The first token's vector (`[CLS]`).
pub fn cls_pool(hidden: &Tensor) -> Tensor {
    hidden.select(1, 0)
}

/// Element-wise maximum over real tokens; padding is set to -1e9 first.
pub fn max_pool(hidden: &Tensor, mask: &Tensor) -> Tensor {
    let pad = mask.unsqueeze(-1).eq(0);
    hidden.masked_fill(&pad, -1e9).amax([1].as_slice(), false)
}

/// The pooled sentence vector for `cfg`, modes concatenated in sentence-transformers' order.
pub fn pool(cfg: &PoolingConfig, hidden: &Tensor, mask: &Tensor) -> Tensor {
    let mut parts = Vec::with_capacity(4);
    if cfg.cls {
        parts.push(cls_pool(hidden));
    }
    if cfg.max {
        parts.push(max_pool(hidden, mask));
    }
    if cfg.mean {
        parts.push(mean_pool(hidden, mask));
    }
    if cfg.mean_sqrt_len {
        parts.push(mean_sqrt_len_pool(hidden, mask));
    }
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(&parts, 1)
    }
}

/// Rows divided by their L2 norm (clamped at 1e-12, like `torch.nn.functional.normalize`).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2, [1].as_slice(), true).clamp_min(1e-12);
    x / norm
}

fn masked_sum(hidden: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let m = mask.unsqueeze(-1).to_kind(hidden.kind());
    let sum = (hidden * &m).sum_dim_intlist([1].as_slice(), false, hidden.kind());
    let count = m.sum_dim_intlist([1].as_slice(), false, Kind::Float).to_kind(hidden.kind());
    (sum, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn mean_ignores_padding_and_counts_real_tokens() {
        // batch 2, seq 3, hidden 2; the second row has one padding position holding garbage.
        let h = t(&[1., 2., 3., 4., 5., 6., 10., 20., 30., 40., 999., 999.], &[2, 3, 2]);
        let m = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0]).view([2, 3]);
        let p = mean_pool(&h, &m);
        assert_eq!(Vec::<f32>::try_from(p.flatten(0, -1)).unwrap(), vec![3., 4., 20., 30.]);
        let x = max_pool(&h, &m);
        assert_eq!(Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), vec![5., 6., 30., 40.]);
        let c = cls_pool(&h);
        assert_eq!(Vec::<f32>::try_from(c.flatten(0, -1)).unwrap(), vec![1., 2., 10., 20.]);
    }

    #[test]
    fn concatenates_modes_and_normalizes() {
        let h = t(&[3., 4., 3., 4.], &[1, 2, 2]);
        let m = Tensor::from_slice(&[1i64, 1]).view([1, 2]);
        let cfg = PoolingConfig { cls: true, max: false, mean: true, mean_sqrt_len: false };
        assert_eq!(pool(&cfg, &h, &m).size(), vec![1, 4]);
        let n = l2_normalize(&mean_pool(&h, &m));
        assert_eq!(Vec::<f32>::try_from(n.flatten(0, -1)).unwrap(), vec![0.6, 0.8]);
        let z = l2_normalize(&Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu)));
        assert_eq!(f32::try_from(z.sum(Kind::Float)).unwrap(), 0.0);
    }
}
