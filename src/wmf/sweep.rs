//! One ALS half-sweep: solve every row of one side given the other side's factors.
//! Rows are grouped into blocks of bounded interaction count, so a popular item with
//! thousands of listeners is a block of its own and rayon's work stealing balances the rest.

use super::{Solver, WmfParams, cg, cholesky, woodbury};
use crate::error::Result;
use crate::kernels::gram;
use crate::sparse::CsrRef;
use rayon::prelude::*;
use std::ops::Range;

/// A block holds at most this many rows...
const MAX_BLOCK_ROWS: usize = 64;
/// ...and at most this many interactions (its gathered factors, 1024 x 100 f32 = 400 KiB,
/// stay in L2 while the conjugate-gradient steps go over them again and again).
const MAX_BLOCK_NNZ: usize = 1024;
/// Rows per partial Gram product; fixed, so the summation order is independent of threads.
pub(crate) const GRAM_CHUNK: usize = 4096;

/// Woodbury rows are solved one by one, this many to a task.
const MAX_EXACT_ROWS: usize = 256;

/// Consecutive row ranges, each within the limits above (a single long row may exceed them).
pub(crate) fn blocks(m: CsrRef<'_>) -> Vec<Range<usize>> {
    segments(m, None).into_iter().map(|(r, _)| r).collect()
}

/// Consecutive row ranges covering every row, each of one kind: Woodbury rows (`exact[row]`;
/// true in the pair) or conjugate-gradient blocks within the limits above.
fn segments(m: CsrRef<'_>, exact: Option<&[bool]>) -> Vec<(Range<usize>, bool)> {
    let is_exact = |row: usize| exact.is_some_and(|e| e[row]);
    let mut out = Vec::with_capacity(m.n_rows / 16 + 1);
    let mut lo = 0;
    let mut nnz = 0;
    for row in 0..m.n_rows {
        let len = m.row_nnz(row);
        let kind = is_exact(lo);
        let full = if kind {
            row - lo == MAX_EXACT_ROWS
        } else {
            row - lo == MAX_BLOCK_ROWS || nnz + len > MAX_BLOCK_NNZ
        };
        if row > lo && (full || is_exact(row) != kind) {
            out.push((lo..row, kind));
            lo = row;
            nnz = 0;
        }
        nnz += len;
    }
    if lo < m.n_rows {
        out.push((lo..m.n_rows, is_exact(lo)));
    }
    out
}

/// Y^T Y + reg I (dim x dim, row-major).
pub(crate) fn regularized_gram(y: &[f32], dim: usize, reg: f32) -> Vec<f32> {
    sum_chunk_grams(&chunk_grams(y, dim), dim, reg)
}

/// The Gram matrix of each consecutive [`GRAM_CHUNK`] rows of `y` (the last chunk may be
/// shorter), stacked: chunks x dim x dim. A chunk's product depends only on its rows, so
/// whoever holds a chunk's rows (a distributed fit's shard) computes the same bits.
pub(crate) fn chunk_grams(y: &[f32], dim: usize) -> Vec<f32> {
    let n = y.len() / dim;
    let chunks = n.div_ceil(GRAM_CHUNK);
    let mut out = vec![0f32; chunks * dim * dim];
    out.par_chunks_mut(dim * dim).enumerate().for_each(|(c, g)| {
        let lo = c * GRAM_CHUNK;
        let hi = (lo + GRAM_CHUNK).min(n);
        gram(hi - lo, dim, &y[lo * dim..hi * dim], g);
    });
    out
}

/// The chunks of [`chunk_grams`] summed in order, plus reg I: [`regularized_gram`] of the
/// rows they came from, bit for bit.
pub(crate) fn sum_chunk_grams(chunks: &[f32], dim: usize, reg: f32) -> Vec<f32> {
    let mut total = vec![0f32; dim * dim];
    for p in chunks.chunks_exact(dim * dim) {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    for d in 0..dim {
        total[d * dim + d] += reg;
    }
    total
}

/// Overwrite `x` (rows of `m` x dim) with the solution given the other side's factors `y`,
/// keeping the memory of Woodbury's `A^{-1} y` table in `table` for the next half-sweep: a
/// fit's half-sweeps reuse one buffer instead of faulting in fresh pages for each (up to
/// 154 MB for the Taste Profile's user side, which the kernel clears first).
pub(crate) fn solve_side_keeping(
    x: &mut [f32],
    (y, dim): (&[f32], usize),
    (m, conf): (CsrRef<'_>, &[f32]),
    params: &WmfParams,
    table: &mut Vec<f32>,
) -> Result<()> {
    let a = regularized_gram(y, dim, params.regularization);
    solve_side_with_gram(x, (y, &a, dim), (m, conf), params, table)
}

/// [`solve_side_keeping`] with `a` = Y^T Y + reg I already computed (a caller that solves few
/// rows against the same `y` many times, as fold-in in a service does, computes it once).
pub(crate) fn solve_side_with_gram(
    x: &mut [f32],
    (y, a, dim): (&[f32], &[f32], usize),
    (m, conf): (CsrRef<'_>, &[f32]),
    params: &WmfParams,
    table: &mut Vec<f32>,
) -> Result<()> {
    // With CG, the rows with few interactions are solved exactly by Woodbury where that is
    // cheaper (see `woodbury`); a row's path depends only on its own data and on `a`.
    let mut prepared = None;
    let mut exact = Vec::new();
    if let Solver::Cg { steps } = params.solver {
        let limit = woodbury::limit(dim, steps);
        exact = (0..m.n_rows)
            .map(|r| woodbury::qualifies(&conf[m.row_range(r)], limit))
            .collect();
        if exact.iter().any(|&e| e) {
            prepared = woodbury::Prepared::new(a, y, dim, (m, &exact), std::mem::take(table));
        }
    }
    let ranges = segments(m, prepared.as_ref().map(|_| exact.as_slice()));
    let mut pieces = Vec::with_capacity(ranges.len());
    let mut rest = x;
    for (r, kind) in ranges {
        let (head, tail) = rest.split_at_mut(r.len() * dim);
        pieces.push((r.start, kind, head));
        rest = tail;
    }
    let solved = pieces.into_par_iter().try_for_each(|(first_row, kind, xs)| {
        let block = |first_row| cg::Block {
            first_row,
            y,
            dim,
            a,
            m,
            conf,
        };
        if kind {
            let woodbury = prepared.as_ref().expect("Woodbury segments only with a prepared solve");
            let rows = xs.len() / dim;
            for (r, xr) in xs.chunks_exact_mut(dim).enumerate() {
                let row = first_row + r;
                if r + 1 < rows {
                    woodbury.prefetch_row(y, &m.indices[m.row_range(row + 1)]);
                }
                let range = m.row_range(row);
                if !woodbury.solve_row(y, &m.indices[range.clone()], &conf[range], xr) {
                    cholesky::solve_block(&block(row), xr)?;
                }
            }
            return Ok(());
        }
        match params.solver {
            Solver::Cg { steps } => {
                cg::solve_block(&block(first_row), xs, steps);
                Ok(())
            }
            Solver::Cholesky => cholesky::solve_block(&block(first_row), xs),
        }
    });
    if let Some(prepared) = prepared {
        *table = prepared.into_table();
    }
    solved
}
