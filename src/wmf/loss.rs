//! The WMF training objective, evaluated in O(nnz * k + n_users * k^2) with the YtY trick:
//! sum over all pairs of c (p - s)^2 = sum_u [x_u^T YtY x_u + sum_{i in I_u} (c (1 - s)^2 - s^2)].

use super::WmfParams;
use super::sweep::{blocks, regularized_gram};
use crate::kernels::{dot, gemm_ab};
use crate::sparse::CsrRef;
use rayon::prelude::*;

pub(crate) fn training_loss(x: &[f32], y: &[f32], dim: usize, m: CsrRef<'_>, conf: &[f32], params: &WmfParams) -> f64 {
    let yty = regularized_gram(y, dim, 0.0);
    // Per-block partial sums, added in block order: the same total for any thread count.
    let partials: Vec<f64> = blocks(m)
        .into_par_iter()
        .map(|rows| {
            let xs = &x[rows.start * dim..rows.end * dim];
            let mut q = vec![0f32; xs.len()];
            gemm_ab(rows.len(), dim, dim, xs, &yty, &mut q);
            let mut total = 0f64;
            for (r, row) in rows.enumerate() {
                let xr = &xs[r * dim..(r + 1) * dim];
                total += dot(xr, &q[r * dim..(r + 1) * dim]) as f64;
                let (cols, _) = m.row(row);
                for (&j, &c) in cols.iter().zip(&conf[m.row_range(row)]) {
                    let s = dot(xr, &y[j as usize * dim..(j as usize + 1) * dim]) as f64;
                    total += c as f64 * (1.0 - s) * (1.0 - s) - s * s;
                }
            }
            total
        })
        .collect();
    let fit: f64 = partials.iter().sum();
    let norms = |v: &[f32]| v.iter().map(|&a| (a as f64) * (a as f64)).sum::<f64>();
    let reg = params.regularization as f64 * (norms(x) + norms(y));
    let weight = (m.n_rows as f64) * (m.n_cols as f64) + conf.iter().map(|&c| c as f64 - 1.0).sum::<f64>();
    (fit + reg) / weight
}
