//! Dynamic padding: each batch is padded only to its own longest sequence.

use tch::{Device, Tensor};

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
}
