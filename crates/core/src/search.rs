//! Ranking utilities shared by every method: top-k selection, inner-product search (MIPS) over
//! unit-norm embeddings, score fusion for the hybrid method, and the host-side transpose that
//! lets weights and keys reach a device as contiguous matrices.

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
    docs.chunks_exact(d).map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum()).collect()
}

/// A row-major `[rows, cols]` matrix as row-major `[cols, rows]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(values.len(), rows * cols, "transpose: {} values are not [{rows}, {cols}]", values.len());
    let mut out = vec![0f32; values.len()];
    for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
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

    #[test]
    fn transpose_moves_rows_to_columns() {
        // [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]]
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
