//! Owns dynamic padding (each batch padded only to its own longest sequence) and the
//! length-sorted, token-budgeted batches that inference runs in.

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

/// Indices of `lens` ordered longest first (ties keep input order), then cut into batches of at
/// most `max_rows` rows and, with a `token_budget`, at most that many padded tokens (rows times
/// the batch's longest row; a row longer than the budget goes alone).
pub fn length_sorted_batches(lens: &[usize], max_rows: usize, token_budget: Option<usize>) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let sorted: Vec<usize> = order.iter().map(|&i| lens[i]).collect();
    budget_ranges(&sorted, max_rows, token_budget).into_iter().map(|r| order[r].to_vec()).collect()
}

/// Cuts rows already sorted by length (either way) into consecutive ranges of at most `max_rows`
/// rows and, with a `token_budget`, at most that many padded tokens each (a row longer than the
/// budget goes alone).
pub fn budget_ranges(sorted_lens: &[usize], max_rows: usize, token_budget: Option<usize>) -> Vec<std::ops::Range<usize>> {
    let max_rows = max_rows.max(1);
    let mut out = Vec::new();
    let (mut start, mut width) = (0, 0);
    for (i, &len) in sorted_lens.iter().enumerate() {
        let w = width.max(len);
        let over_budget = token_budget.is_some_and(|b| (i + 1 - start) * w > b);
        if i > start && (over_budget || i - start == max_rows) {
            out.push(start..i);
            start = i;
            width = len;
        } else {
            width = w;
        }
    }
    if start < sorted_lens.len() {
        out.push(start..sorted_lens.len());
    }
    out
}

/// Like [`budget_ranges`] over rows sorted by length, shortest first, but also starting a new
/// range when the next (longer) row would make the range's padding exceed `max_padding` times
/// its real tokens: a few long texts then do not pad many short ones to their length. A range
/// always takes its first row; `f64::INFINITY` gives [`budget_ranges`]' ranges.
pub fn snug_ranges(ascending_lens: &[usize], token_budget: usize, max_padding: f64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut width, mut real) = (0, 0, 0);
    for (i, &len) in ascending_lens.iter().enumerate() {
        let (w, n) = (width.max(len), i + 1 - start);
        let padded = n * w;
        let too_loose = (padded - (real + len)) as f64 > max_padding * (real + len) as f64;
        if i > start && (padded > token_budget || too_loose) {
            out.push(start..i);
            (start, width, real) = (i, len, len);
        } else {
            (width, real) = (w, real + len);
        }
    }
    if start < ascending_lens.len() {
        out.push(start..ascending_lens.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snug_ranges_limit_padding_and_budget() {
        let lens = [10, 10, 10, 11, 30, 31, 60];
        // No padding limit: the budget alone (100 padded tokens) cuts.
        assert_eq!(snug_ranges(&lens, 100, f64::INFINITY), budget_ranges(&lens, usize::MAX, Some(100)));
        // 25%: the 30-token row would bring 79 padding tokens to 71 real ones.
        let r = snug_ranges(&lens, 1000, 0.25);
        assert_eq!(r, vec![0..4, 4..6, 6..7]);
        let rows: usize = r.iter().map(|r| r.len()).sum();
        assert_eq!(rows, lens.len(), "every row once");
        assert!(snug_ranges(&[], 10, 0.25).is_empty());
        assert_eq!(snug_ranges(&[500], 10, 0.0), vec![0..1], "a row over the budget goes alone");
    }

    #[test]
    fn pads_to_longest_in_batch() {
        let (ids, mask) = pad(&[&[101, 5, 102], &[101, 102]], 0, Device::Cpu);
        assert_eq!(ids.size(), vec![2, 3]);
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), vec![101, 5, 102, 101, 102, 0]);
        assert_eq!(Vec::<i64>::try_from(mask.flatten(0, -1)).unwrap(), vec![1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn sorts_by_length_and_keeps_every_index() {
        let b = length_sorted_batches(&[2, 5, 3, 5], 2, None);
        assert_eq!(b, vec![vec![1, 3], vec![2, 0]]);
        // A budget of 10 padded tokens: [5, 5] fills it, then [3, 2] (6 tokens).
        assert_eq!(length_sorted_batches(&[2, 5, 3, 5], 8, Some(10)), vec![vec![1, 3], vec![2, 0]]);
        assert_eq!(length_sorted_batches(&[2, 5, 3, 5], 8, Some(9)), vec![vec![1], vec![3], vec![2, 0]]);
    }

    #[test]
    fn token_budget_batches_stay_under_the_budget() {
        let lens = [3, 3, 4, 5, 9, 9, 30, 100];
        let b = budget_ranges(&lens, usize::MAX, Some(20));
        assert_eq!(b.iter().map(|r| r.len()).sum::<usize>(), lens.len());
        for r in &b {
            let padded = r.len() * lens[r.end - 1];
            assert!(padded <= 20 || r.len() == 1, "{r:?}: {padded}");
        }
        assert_eq!(b[0], 0..4);
        assert!(budget_ranges(&[], 4, Some(10)).is_empty());
        // The row cap applies with or without a budget.
        assert_eq!(budget_ranges(&lens, 3, Some(1000)), vec![0..3, 3..6, 6..8]);
        let desc: Vec<usize> = lens.iter().rev().copied().collect();
        for r in budget_ranges(&desc, usize::MAX, Some(20)) {
            assert!(r.len() * desc[r.start] <= 20 || r.len() == 1);
        }
    }
}
