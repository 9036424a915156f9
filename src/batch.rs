//! Owns batching, for inference and training alike: dynamic padding (each batch padded only to
//! its own longest sequence), length-sorted inference batches, the shuffled per-epoch order, and
//! the padded, labelled training [`Batch`].

use crate::data::Example;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Tensor};

/// Label value for "no label for this task" in a batch's target tensor.
pub const IGNORE: i64 = -100;

/// Token ids `[batch, longest]` and attention mask `[batch, longest]` (int64, 1 = token).
pub fn pad(seqs: &[&[i64]], pad_id: i64, device: Device) -> (Tensor, Tensor) {
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * longest);
    let mut mask = Vec::with_capacity(seqs.len() * longest);
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat(pad_id).take(longest - s.len()));
        mask.extend(std::iter::repeat(1i64).take(s.len()));
        mask.extend(std::iter::repeat(0i64).take(longest - s.len()));
    }
    let shape = [seqs.len() as i64, longest as i64];
    (
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&mask).view(shape).to_device(device),
    )
}

/// Indices of `lens` ordered longest first (ties keep input order), then cut into batches.
pub fn length_sorted_batches(lens: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Row indices of one epoch, shuffled deterministically from `seed` and `epoch`, in batches.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    order.shuffle(&mut rng);
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// A padded training batch on the model's device.
pub struct Batch {
    /// `[batch, seq]` token ids.
    pub ids: Tensor,
    /// `[batch, seq]` attention mask, 1 = token.
    pub mask: Tensor,
    /// `[batch]` Task A targets, [`IGNORE`] where a row has none.
    pub labels_a: Tensor,
    /// `[batch]` Task B targets, [`IGNORE`] where a row has none.
    pub labels_b: Tensor,
    /// Rows with a Task A / Task B label.
    pub n_a: usize,
    pub n_b: usize,
    pub size: usize,
}

/// Pads `rows` of `data` into one batch.
pub fn make_batch(data: &[Example], rows: &[usize], pad_id: i64, device: Device) -> Batch {
    let seqs: Vec<&[i64]> = rows.iter().map(|&i| data[i].ids.as_slice()).collect();
    let (ids, mask) = pad(&seqs, pad_id, device);
    let target = |f: &dyn Fn(&Example) -> Option<usize>| -> (Tensor, usize) {
        let v: Vec<i64> = rows.iter().map(|&i| f(&data[i]).map(|l| l as i64).unwrap_or(IGNORE)).collect();
        let n = v.iter().filter(|&&l| l != IGNORE).count();
        (Tensor::from_slice(&v).to_device(device), n)
    };
    let (labels_a, n_a) = target(&|e| e.label_a);
    let (labels_b, n_b) = target(&|e| e.label_b);
    Batch { ids, mask, labels_a, labels_b, n_a, n_b, size: rows.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_longest_in_batch() {
        let (ids, mask) = pad(&[&[101, 5, 102], &[101, 102]], 0, Device::Cpu);
        assert_eq!(ids.size(), vec![2, 3]);
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), vec![101, 5, 102, 101, 102, 0]);
        assert_eq!(Vec::<i64>::try_from(mask.flatten(0, -1)).unwrap(), vec![1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn sorts_by_length_and_keeps_every_index() {
        let b = length_sorted_batches(&[2, 5, 3, 5], 2);
        assert_eq!(b, vec![vec![1, 3], vec![2, 0]]);
    }

    #[test]
    fn shuffling_is_deterministic_per_seed_and_epoch() {
        assert_eq!(epoch_batches(10, 3, 7, 0), epoch_batches(10, 3, 7, 0));
        assert_ne!(epoch_batches(10, 3, 7, 0), epoch_batches(10, 3, 7, 1));
        let mut all: Vec<usize> = epoch_batches(10, 3, 7, 0).concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn training_batches_mark_missing_labels() {
        let ex = |a: Option<usize>, b: Option<usize>| Example { text: String::new(), ids: vec![2, 9, 3], label_a: a, label_b: b };
        let data = vec![ex(Some(1), None), ex(None, Some(2)), ex(Some(0), Some(0))];
        let b = make_batch(&data, &[0, 1, 2], 0, Device::Cpu);
        assert_eq!((b.n_a, b.n_b, b.size), (2, 2, 3));
        assert_eq!(Vec::<i64>::try_from(&b.labels_a).unwrap(), vec![1, IGNORE, 0]);
        assert_eq!(Vec::<i64>::try_from(&b.labels_b).unwrap(), vec![IGNORE, 2, 0]);
    }
}
