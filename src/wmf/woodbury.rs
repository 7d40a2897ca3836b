//! Exact solve of the rows with few interactions, by the Woodbury identity.
//!
//! A row with interactions i = 1..n (factors `y_i` of the other side, confidences `c_i`,
//! weights `w_i = c_i - 1 > 0`) solves `(A + U^T W U) x = U^T c`, with `A = YtY + lambda I`
//! shared by every row and `U` the n x k matrix of the `y_i`. With `z_i = A^{-1} y_i`
//! (computed once per half-sweep for every factor some such row needs), the identity gives
//!
//! `x = sum_i v_i z_i`, where `(W^{-1} + G) v = W^{-1} c` and `G_ij = y_i . z_j`,
//!
//! an n x n system instead of the k x k one (`(W^{-1} + G)^{-1} W^{-1} c` is
//! `c - (W^{-1} + G)^{-1} G c`, the identity's correction, folded). For the item side of
//! listening data, where most songs have a handful of listeners, this costs a fraction of the
//! `steps` conjugate-gradient steps (each a k x k product per row), and it is exact. A row's
//! path depends only on its own interaction count and confidences and on `A`, so shards solve
//! every row as the local fit does.

use crate::kernels::{axpy, dot_tile, gemm_ab, prefetch_l2};
use crate::linalg::{cholesky, cholesky_solve};
use crate::sparse::CsrRef;
use multiversion::multiversion;
use rayon::prelude::*;
use std::cell::RefCell;

/// No Woodbury row has more interactions than this (the n x n system stays one block of
/// [`cholesky`], which factors blocks of 64 columns).
const MAX_N: usize = 48;

/// The most interactions for which the Woodbury solve is cheaper than `steps` steps of the
/// blocked conjugate gradient at `dim` factors; 0 = never.
///
/// Flop counts: CG costs `(steps + 1) (2 k^2 + 4 k n)` per row, in GEMMs that run near peak;
/// Woodbury costs `n^2 k` (the Gram of `y` against `z`, by dot products) plus `n^3 / 3` (the
/// factorisation, in f64) plus `2 k n`, weighted 2x for running below peak (at 100 factors
/// and 3 steps: up to 22 interactions; limits of 18 and 30 measured within noise of it).
pub(crate) fn limit(dim: usize, steps: usize) -> usize {
    let k = dim as f64;
    let cg = |n: f64| (steps as f64 + 1.0) * (2.0 * k * k + 4.0 * k * n);
    let woodbury = |n: f64| 2.0 * (n * n * k + n * n * n / 3.0) + 2.0 * k * n;
    (0..=MAX_N)
        .rev()
        .find(|&n| woodbury(n as f64) <= cg(n as f64))
        .unwrap_or(0)
}

/// Whether a row with these confidences is solved by Woodbury (every weight `c - 1` must be
/// positive: `W^{-1}` is needed).
pub(crate) fn qualifies(conf: &[f32], limit: usize) -> bool {
    conf.len() <= limit && conf.iter().all(|&c| c > 1.0 && c.is_finite())
}

/// `A^{-1} y_j` for every factor row `j` that a Woodbury row reads.
pub(crate) struct Prepared {
    /// For each factor row of the other side, its place in `z` (UNUSED when no row reads it).
    slot: Vec<u32>,
    /// `A^{-1} y_j`, `dim` per used row, in the order of `slot`.
    z: Vec<f32>,
    dim: usize,
}

const UNUSED: u32 = u32::MAX;

impl Prepared {
    /// None when A is not numerically positive definite (then every row takes CG).
    /// `table`'s memory holds `z` (its contents are overwritten).
    pub(crate) fn new(
        a: &[f32],
        y: &[f32],
        dim: usize,
        (m, rows): (CsrRef<'_>, &[bool]),
        table: Vec<f32>,
    ) -> Option<Prepared> {
        let mut l: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        cholesky(&mut l, dim).ok()?;
        let mut inverse = vec![0f64; dim * dim];
        for d in 0..dim {
            inverse[d * dim + d] = 1.0;
        }
        cholesky_solve(&l, dim, &mut inverse, dim);
        let inverse: Vec<f32> = inverse.iter().map(|&v| v as f32).collect();
        let n_other = y.len() / dim;
        let mut slot = vec![UNUSED; n_other];
        let mut used = 0u32;
        for (row, _) in rows.iter().enumerate().filter(|(_, e)| **e) {
            for &j in m.row(row).0 {
                let s = &mut slot[j as usize];
                if *s == UNUSED {
                    *s = used;
                    used += 1;
                }
            }
        }
        let mut which = vec![0u32; used as usize];
        for (j, &s) in slot.iter().enumerate() {
            if s != UNUSED {
                which[s as usize] = j as u32;
            }
        }
        let mut z = table;
        z.clear();
        if z.capacity() < used as usize * dim {
            // Growing would copy the old allocation; its contents are not needed.
            z = Vec::new();
        }
        z.resize(used as usize * dim, 0.0);
        // Gathered 256 at a time, one GEMM each (A^{-1} is symmetric: the rows of Y A^{-1}).
        // A row of a product does not depend on the other rows in it, so neither does z_j.
        z.par_chunks_mut(dim * 256)
            .zip(which.par_chunks(256))
            .for_each(|(out, js)| {
                let mut gathered = vec![0f32; js.len() * dim];
                for (g, &j) in gathered.chunks_exact_mut(dim).zip(js) {
                    g.copy_from_slice(&y[j as usize * dim..(j as usize + 1) * dim]);
                }
                gemm_ab(js.len(), dim, dim, &gathered, &inverse, out);
            });
        Some(Prepared { slot, z, dim })
    }

    /// The memory of the `A^{-1} y` table, for the next [`Prepared::new`].
    pub(crate) fn into_table(self) -> Vec<f32> {
        self.z
    }

    /// Start loading the factors a row with these other-side indices reads (`y_j` and
    /// `z_j`): called for the next row while one is solved, since those rows are scattered
    /// over tables larger than the caches and the Gram's loads otherwise wait on them.
    pub(crate) fn prefetch_row(&self, y: &[f32], indices: &[i32]) {
        let dim = self.dim;
        for &j in indices {
            let j = j as usize;
            prefetch_l2(&y[j * dim..(j + 1) * dim]);
            let s = self.slot[j] as usize;
            prefetch_l2(&self.z[s * dim..(s + 1) * dim]);
        }
    }

    /// Solve one row (its other-side indices and confidences) into `x`. False when its
    /// n x n system is not numerically positive definite (the caller then solves it exactly
    /// the k x k way).
    pub(crate) fn solve_row(&self, y: &[f32], indices: &[i32], conf: &[f32], x: &mut [f32]) -> bool {
        SCRATCH.with(|s| solve_row_with(self, y, indices, conf, x, &mut s.borrow_mut()))
    }
}

/// The n x n system and its right-hand side.
type Scratch = (Vec<f64>, Vec<f64>);

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new((Vec::new(), Vec::new())) };
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn solve_row_with(
    p: &Prepared,
    y: &[f32],
    indices: &[i32],
    conf: &[f32],
    x: &mut [f32],
    scratch: &mut Scratch,
) -> bool {
    let (dim, n) = (p.dim, indices.len());
    x.fill(0.0);
    if n == 0 {
        return true; // no interaction: A x = 0
    }
    let z = |t: usize| {
        let s = p.slot[indices[t] as usize] as usize;
        &p.z[s * dim..(s + 1) * dim]
    };
    let yv = |t: usize| &y[indices[t] as usize * dim..(indices[t] as usize + 1) * dim];
    let (g, v) = scratch;
    g.clear();
    g.resize(n * n, 0.0);
    v.clear();
    // S = W^{-1} + G (lower triangle: all the factorisation reads), rhs = W^{-1} c.
    // G_st = y_s . z_t for t <= s, in tiles of up to 4 x 4 (`kernels::dot_tile`): the rows
    // s0.. of a tile against four z_t left of the diagonal, or against as many on it
    // (products above the diagonal are dropped).
    for s0 in (0..n).step_by(4) {
        let rows = (n - s0).min(4);
        for t0 in (0..=s0).step_by(4) {
            let diagonal = t0 == s0;
            match (rows, diagonal) {
                (1, true) => gram_tile::<1, 1>(g, n, s0, t0, &yv, &z),
                (2, true) => gram_tile::<2, 2>(g, n, s0, t0, &yv, &z),
                (3, true) => gram_tile::<3, 3>(g, n, s0, t0, &yv, &z),
                (4, true) => gram_tile::<4, 4>(g, n, s0, t0, &yv, &z),
                (1, false) => gram_tile::<1, 4>(g, n, s0, t0, &yv, &z),
                (2, false) => gram_tile::<2, 4>(g, n, s0, t0, &yv, &z),
                (3, false) => gram_tile::<3, 4>(g, n, s0, t0, &yv, &z),
                _ => gram_tile::<4, 4>(g, n, s0, t0, &yv, &z),
            }
        }
    }
    for s in 0..n {
        let w = (conf[s] - 1.0) as f64;
        g[s * n + s] += 1.0 / w;
        v.push(conf[s] as f64 / w);
    }
    if cholesky(g, n).is_err() {
        return false;
    }
    cholesky_solve(g, n, v, 1);
    for (t, &vt) in v.iter().enumerate() {
        axpy(vt as f32, z(t), x);
    }
    true
}

/// `g[s][t] = ys(s) . zs(t)` (as f64) for the `R` rows from `s0` and `C` columns from `t0`,
/// `t <= s` only.
#[inline(always)]
fn gram_tile<'a, const R: usize, const C: usize>(
    g: &mut [f64],
    n: usize,
    s0: usize,
    t0: usize,
    ys: &impl Fn(usize) -> &'a [f32],
    zs: &impl Fn(usize) -> &'a [f32],
) {
    let d = dot_tile::<R, C>(std::array::from_fn(|r| ys(s0 + r)), std::array::from_fn(|c| zs(t0 + c)));
    for (r, row) in d.iter().enumerate() {
        let s = s0 + r;
        for (c, &v) in row.iter().enumerate() {
            let t = t0 + c;
            if t <= s {
                g[s * n + t] = v as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_cost_model() {
        // 100 factors, 3 steps: rows of up to 22 interactions.
        let l = limit(100, 3);
        assert_eq!(l, 22);
        assert!(limit(100, 8) > l, "more CG steps make Woodbury worth more rows");
        assert!(limit(4, 3) <= MAX_N);
        assert!(qualifies(&[2.0, 3.0], l) && !qualifies(&[1.0, 3.0], l) && qualifies(&[], l));
        assert!(!qualifies(&vec![2.0; l + 1], l));
    }
}
