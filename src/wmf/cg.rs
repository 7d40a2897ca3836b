//! Conjugate-gradient solve of (A + Y_u^T (C_u - I) Y_u) x_u = Y_u^T C_u p_u for a block of
//! rows at once, A = YtY + lambda I. The rows step in lock-step so that the dense part, A p,
//! is one small GEMM per step for the whole block (A stays in registers/L1) instead of a
//! matrix-vector product per row; the sparse part runs over the row's factors gathered once
//! into a contiguous buffer. Y^T C_u Y is never formed.

use crate::kernels::{RowWeight, axpy, dot, dot_axpy_rows, gemm_ab_small, prefetch, prefetch_l2};
use crate::sparse::CsrRef;
use multiversion::multiversion;
use std::cell::RefCell;

/// Residual below which a row is considered solved (as in implicit).
const CONVERGED: f32 = 1e-20;

/// The inputs every row of a block shares.
pub(crate) struct Block<'a> {
    pub first_row: usize,
    /// The other side's factors (n_other x dim).
    pub y: &'a [f32],
    pub dim: usize,
    /// YtY + lambda I (dim x dim).
    pub a: &'a [f32],
    pub m: CsrRef<'a>,
    /// Confidence c_ui of each stored interaction, aligned with `m.data`.
    pub conf: &'a [f32],
}

impl Block<'_> {
    /// The block's interactions: their global range, and per row its local sub-range.
    pub(crate) fn spans(&self, rows: usize) -> (std::ops::Range<usize>, Vec<std::ops::Range<usize>>) {
        let base = self.m.indptr[self.first_row] as usize;
        let end = self.m.indptr[self.first_row + rows] as usize;
        let local = (0..rows)
            .map(|r| {
                let range = self.m.row_range(self.first_row + r);
                range.start - base..range.end - base
            })
            .collect();
        (base..end, local)
    }

    /// Copy the factors of the block's interactions into one contiguous buffer, `g`
    /// (resized; a caller's reused buffer, so no fresh pages are faulted in per block).
    /// The rows are scattered over a table far larger than the caches: each is prefetched
    /// into L2 [`GATHER_AHEAD`] rows ahead so its misses overlap with the copies before it.
    pub(crate) fn gather_into(&self, span: &std::ops::Range<usize>, g: &mut Vec<f32>) {
        const AHEAD: usize = GATHER_AHEAD;
        let dim = self.dim;
        let js = &self.m.indices[span.clone()];
        let row = |j: i32| &self.y[j as usize * dim..(j as usize + 1) * dim];
        g.clear();
        g.reserve(js.len() * dim);
        for &j in js.iter().take(AHEAD) {
            prefetch_l2(row(j));
        }
        for (t, &j) in js.iter().enumerate() {
            if let Some(&ahead) = js.get(t + AHEAD) {
                prefetch_l2(row(ahead));
            }
            g.extend_from_slice(row(j));
        }
    }

    /// [`Block::gather_into`] a fresh buffer.
    pub(crate) fn gather(&self, span: &std::ops::Range<usize>) -> Vec<f32> {
        let mut g = Vec::new();
        self.gather_into(span, &mut g);
        g
    }
}

thread_local! {
    /// Per-thread buffers reused by every block: the gathered factors (up to 400 KiB, past
    /// the allocator's mmap threshold, so a fresh one per block cost page faults and zeroing)
    /// and the CG vectors.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    g: Vec<f32>,
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
}

/// Factor rows are prefetched this many interactions ahead of their use.
const PREFETCH_AHEAD: usize = 8;
/// A gather prefetches its factor rows this many interactions ahead, into L2 only: a request
/// into L1 holds one of L1's few miss slots until it arrives, so fewer rows were in flight
/// (Taste Profile size, 3 iterations, alternated runs: 26.5 -> 25.2 s with 16 or 32 ahead
/// into L2, against 8 ahead into L1; distances 4-32 into L1 had measured level).
const GATHER_AHEAD: usize = 32;

/// A block with more interactions than this (one row of a popular item: the sweep's blocks
/// hold at most 1024) reads its factors in place instead of gathering a copy of them.
/// `time_a_long_row` below, best of many: with the portable `dot`, in place cost 6% more at
/// 16,384 plays and 13% at 65,536 (the gathered copy stays in the heap) and half as much at
/// 436,598 (a copy past glibc's 32 MiB mmap limit is fresh pages every time); since the
/// gathered rows go through `kernels::dot_axpy_rows`, in place costs 2.2x at 16,384, 1.6x at
/// 65,536 and still half at 436,598 (one run on a shared machine). 6% of the Taste Profile's
/// item-side plays lie in rows of 16,384 to 65,536: a higher limit would buy some speed with
/// up to 2 x 25 MiB more at the peak.
const MAX_GATHER: usize = 1 << 14;

/// A gather buffer past this many floats (1 MiB; a block within the sweep's limits needs at
/// most 400 KiB) came from a single very popular row: it is freed, not kept per thread.
const KEEP_FLOATS: usize = 1 << 18;

pub(crate) fn solve_block(block: &Block<'_>, x: &mut [f32], steps: usize) {
    solve_block_gathering(block, x, steps, MAX_GATHER);
}

/// [`solve_block`] gathering at most `max_gather` interactions (the timing test varies it).
fn solve_block_gathering(block: &Block<'_>, x: &mut [f32], steps: usize, max_gather: usize) {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        solve_block_with(block, x, steps, s, max_gather);
        if s.g.capacity() > KEEP_FLOATS {
            s.g = Vec::new();
        }
    });
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn solve_block_with(block: &Block<'_>, x: &mut [f32], steps: usize, s: &mut Scratch, max_gather: usize) {
    let dim = block.dim;
    let rows = x.len() / dim;
    let (span, local) = block.spans(rows);
    // A single row of a very popular item is not gathered (its copy would be the largest
    // allocation of the fit: 167 MiB for the most played song of the Taste Profile); its
    // factors are read in place, prefetched ahead, at about the same cost, since a copy
    // that size does not stay in cache between the steps either.
    let direct = span.len() > max_gather;
    if direct {
        s.g.clear();
    } else {
        block.gather_into(&span, &mut s.g);
    }
    let (g, y, js) = (&s.g, block.y, &block.m.indices[span.clone()]);
    let factor = |t: usize| -> &[f32] {
        if direct {
            if let Some(&ahead) = js.get(t + PREFETCH_AHEAD) {
                prefetch(&y[ahead as usize * dim..(ahead as usize + 1) * dim]);
            }
            let j = js[t] as usize;
            &y[j * dim..(j + 1) * dim]
        } else {
            &g[t * dim..(t + 1) * dim]
        }
    };
    let c = &block.conf[span];
    // out += w_t y_t over a row's interactions (`kernels::dot_axpy_rows` on the gathered
    // copy; the same sums in place, with the prefetches, for a row too long to gather).
    let sparse = |ts: std::ops::Range<usize>, v: &[f32], out: &mut [f32], weight: RowWeight| {
        if direct {
            for t in ts {
                let yt = factor(t);
                if let Some(w) = weight.of(c[t], dot(yt, v)) {
                    axpy(w, yt, out);
                }
            }
        } else {
            dot_axpy_rows(&g[ts.start * dim..ts.end * dim], &c[ts], v, out, weight);
        }
    };

    // r = b - A_u x = -A x + sum_i (c_i - (c_i - 1) y_i.x) y_i
    let r = &mut s.r;
    r.clear();
    r.resize(rows * dim, 0.0);
    gemm_ab_small(rows, dim, dim, x, block.a, r);
    r.iter_mut().for_each(|v| *v = -*v);
    for row in 0..rows {
        let xr = &x[row * dim..(row + 1) * dim];
        let rr = &mut r[row * dim..(row + 1) * dim];
        sparse(local[row].clone(), xr, rr, RowWeight::Residual);
    }
    let p = &mut s.p;
    p.clear();
    p.extend_from_slice(r);
    let mut rs: Vec<f32> = r.chunks_exact(dim).map(|v| dot(v, v)).collect();
    for row in 0..rows {
        if !(rs[row] >= CONVERGED) {
            rs[row] = 0.0;
            p[row * dim..(row + 1) * dim].fill(0.0);
        }
    }

    let ap = &mut s.ap;
    ap.clear();
    ap.resize(rows * dim, 0.0);
    for _ in 0..steps {
        if rs.iter().all(|&v| v == 0.0) {
            break;
        }
        gemm_ab_small(rows, dim, dim, p, block.a, ap);
        for row in 0..rows {
            if rs[row] == 0.0 {
                continue;
            }
            let span = row * dim..(row + 1) * dim;
            let (pr, apr) = (&mut p[span.clone()], &mut ap[span.clone()]);
            sparse(local[row].clone(), pr, apr, RowWeight::Step);
            let pap = dot(pr, apr);
            if !(pap > 0.0) {
                // Singular direction (lambda = 0 and no data): stop this row where it is.
                rs[row] = 0.0;
                pr.fill(0.0);
                continue;
            }
            let step = rs[row] / pap;
            axpy(step, pr, &mut x[span.clone()]);
            let rr = &mut r[span];
            axpy(-step, apr, rr);
            let rs_new = dot(rr, rr);
            if rs_new < CONVERGED {
                rs[row] = 0.0;
                pr.fill(0.0);
                continue;
            }
            let beta = rs_new / rs[row];
            for (pv, rv) in pr.iter_mut().zip(rr.iter()) {
                *pv = rv + beta * *pv;
            }
            rs[row] = rs_new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::Csr;

    /// `cargo test --release --lib wmf::cg -- --ignored --nocapture`: one row of up to
    /// 436,598 plays (the Taste Profile's most played song) against 1M users x 100 factors,
    /// solved with its factors gathered and read in place (best of 5 each, alternating).
    #[test]
    #[ignore]
    fn time_a_long_row() {
        let (n_other, dim) = (1_000_000usize, 100usize);
        let y: Vec<f32> = (0..n_other * dim).map(|i| ((i * 7919) % 1000) as f32 * 1e-5).collect();
        let mut a = vec![0f32; dim * dim];
        for d in 0..dim {
            a[d * dim + d] = 1.0;
        }
        for n in [2048usize, 4096, 16_384, 65_536, 436_598] {
            let mut cols: Vec<i32> = (0..n)
                .map(|i| ((i as u64 * 2_654_435_761) % n_other as u64) as i32)
                .collect();
            cols.sort_unstable();
            cols.dedup();
            let mut m = Csr::with_capacity(n_other, 1, cols.len());
            m.push_row(cols.iter().map(|&c| (c, 2.0)));
            let block = Block {
                first_row: 0,
                y: &y,
                dim,
                a: &a,
                m: m.view(),
                conf: &m.data,
            };
            let mut best = [f64::INFINITY; 2];
            let mut out = [vec![0f32; dim], vec![0f32; dim]];
            let reps = (4_000_000 / n).clamp(5, 200);
            for _ in 0..reps {
                for (which, max_gather) in [usize::MAX, 0].into_iter().enumerate() {
                    let mut x = vec![0f32; dim];
                    let t = std::time::Instant::now();
                    solve_block_gathering(&block, &mut x, 3, max_gather);
                    best[which] = best[which].min(t.elapsed().as_secs_f64());
                    out[which] = x;
                }
            }
            assert_eq!(out[0], out[1]);
            println!(
                "{n} plays: gathered {:.3} ms, in place {:.3} ms",
                best[0] * 1e3,
                best[1] * 1e3
            );
        }
    }
}
