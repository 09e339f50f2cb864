//! Ranking utilities shared by every method: top-k selection, inner-product search (MIPS) over
//! unit-norm embeddings, and score fusion for the hybrid method.

/// Indices of the `k` highest scores, best first (ties broken by lower index).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(idx.len());
    let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx
}

/// Inner products of one query with every row of `docs` (row-major `[n, d]`).
pub fn inner_products(query: &[f32], docs: &[f32]) -> Vec<f32> {
    let d = query.len();
    docs.chunks_exact(d)
        .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum())
        .collect()
}

/// Scores z-normalised (mean 0, std 1) so that different methods can be added.
pub fn standardize(scores: &[f32]) -> Vec<f32> {
    let n = scores.len().max(1) as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt().max(1e-6);
    scores.iter().map(|s| (s - mean) / std).collect()
}

/// Weighted sum of standardised score lists.
pub fn fuse(lists: &[(&[f32], f32)]) -> Vec<f32> {
    let n = lists.first().map_or(0, |(s, _)| s.len());
    let mut out = vec![0.0; n];
    for (scores, w) in lists {
        for (o, s) in out.iter_mut().zip(standardize(scores)) {
            *o += w * s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_best_first() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
    }
}
