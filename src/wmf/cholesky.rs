//! Exact per-row solve: A_u = YtY + lambda I + Y_u^T (C_u - I) Y_u built with one small GEMM
//! over sqrt(c - 1)-scaled gathered factors, factorised A_u = L L^T, then two triangular solves.
//!
//! The factorisations are batched: the systems of 16 rows are interleaved element by element
//! ([f32; 16] per matrix entry), so every scalar step of the Cholesky algorithm becomes one
//! full-width vector operation over 16 independent systems — no short vectors, remainders or
//! horizontal reductions, which is what dominates a k = 100 factorisation done row by row.

use super::cg::Block;
use crate::error::{Error, Result};
use crate::kernels::{axpy, gram};
use multiversion::multiversion;
use std::cell::RefCell;

const LANES: usize = 16;
type Lanes = [f32; LANES];

thread_local! {
    /// Per-thread scratch: the interleaved matrices (k^2 x 64 bytes) are reused, not
    /// reallocated, for every block.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    systems: Vec<Lanes>,
    rhs: Vec<Lanes>,
    gram: Vec<f32>,
    b: Vec<f32>,
}

pub(crate) fn solve_block(block: &Block<'_>, x: &mut [f32]) -> Result<()> {
    SCRATCH.with(|s| solve_block_with(block, x, &mut s.borrow_mut()))
}

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn solve_block_with(block: &Block<'_>, x: &mut [f32], s: &mut Scratch) -> Result<()> {
    let dim = block.dim;
    let rows = x.len() / dim;
    let (span, local) = block.spans(rows);
    let mut g = block.gather(&span);
    let c = &block.conf[span];
    s.systems.resize(dim * dim, [0.0; LANES]);
    s.rhs.resize(dim, [0.0; LANES]);
    let kk = dim * dim;
    s.gram.resize(LANES * kk, 0.0);
    s.b.resize(dim, 0.0);
    for first in (0..rows).step_by(LANES) {
        let group = first..(first + LANES).min(rows);
        let active = group.len();
        for (lane, row) in group.clone().enumerate() {
            s.b.fill(0.0);
            for t in local[row].clone() {
                let yt = &mut g[t * dim..(t + 1) * dim];
                axpy(c[t], yt, &mut s.b); // b = sum_i c_i y_i, before scaling y_i in place
                let scale = (c[t] - 1.0).sqrt();
                yt.iter_mut().for_each(|v| *v *= scale);
            }
            let scaled = &g[local[row].start * dim..local[row].end * dim];
            gram(local[row].len(), dim, scaled, &mut s.gram[lane * kk..(lane + 1) * kk]);
            for (r, bv) in s.rhs.iter_mut().zip(&s.b) {
                r[lane] = *bv;
            }
        }
        // Interleave entry by entry (each 64-byte entry written once), lower triangle only:
        // that is all the factorisation reads. Unused lanes solve the identity system.
        for i in 0..dim {
            for l in 0..=i {
                let e = i * dim + l;
                let entry = &mut s.systems[e];
                for (lane, v) in entry.iter_mut().enumerate().take(active) {
                    *v = s.gram[lane * kk + e] + block.a[e];
                }
                entry[active..].fill(if i == l { 1.0 } else { 0.0 });
            }
        }
        for r in s.rhs.iter_mut() {
            r[active..].fill(0.0);
        }
        factor(&mut s.systems, dim).map_err(|lane| {
            Error::invalid(format!(
                "the least-squares system of row {} is not positive definite; use regularization > 0",
                block.first_row + first + lane
            ))
        })?;
        solve_factored(&s.systems, dim, &mut s.rhs);
        for (lane, row) in group.enumerate() {
            for (xv, r) in x[row * dim..(row + 1) * dim].iter_mut().zip(&s.rhs) {
                *xv = r[lane];
            }
        }
    }
    Ok(())
}

/// Sixteen f32 lanes as one SIMD value. The algorithm below is written once against this
/// trait and instantiated per instruction set, because left to itself LLVM vectorises the
/// loops over matrix entries with gathers instead of using one register per entry.
trait Simd16: Copy {
    /// # Safety: the CPU supports the implementation's instruction set.
    unsafe fn load(p: &Lanes) -> Self;
    unsafe fn store(self, p: &mut Lanes);
    /// acc - a * b
    unsafe fn sub_mul(acc: Self, a: Self, b: Self) -> Self;
}

#[derive(Clone, Copy)]
struct Portable(Lanes);

impl Simd16 for Portable {
    #[inline(always)]
    unsafe fn load(p: &Lanes) -> Self {
        Portable(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: &mut Lanes) {
        *p = self.0;
    }
    #[inline(always)]
    unsafe fn sub_mul(acc: Self, a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|t| acc.0[t] - a.0[t] * b.0[t]))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, Simd16};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512);

    impl Simd16 for Avx512 {
        #[inline(always)]
        unsafe fn load(p: &Lanes) -> Self {
            unsafe { Avx512(_mm512_loadu_ps(p.as_ptr())) }
        }
        #[inline(always)]
        unsafe fn store(self, p: &mut Lanes) {
            unsafe { _mm512_storeu_ps(p.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        unsafe fn sub_mul(acc: Self, a: Self, b: Self) -> Self {
            unsafe { Avx512(_mm512_fnmadd_ps(a.0, b.0, acc.0)) }
        }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256, __m256);

    impl Simd16 for Avx2 {
        #[inline(always)]
        unsafe fn load(p: &Lanes) -> Self {
            unsafe { Avx2(_mm256_loadu_ps(p.as_ptr()), _mm256_loadu_ps(p.as_ptr().add(8))) }
        }
        #[inline(always)]
        unsafe fn store(self, p: &mut Lanes) {
            unsafe {
                _mm256_storeu_ps(p.as_mut_ptr(), self.0);
                _mm256_storeu_ps(p.as_mut_ptr().add(8), self.1);
            }
        }
        #[inline(always)]
        unsafe fn sub_mul(acc: Self, a: Self, b: Self) -> Self {
            unsafe { Avx2(_mm256_fnmadd_ps(a.0, b.0, acc.0), _mm256_fnmadd_ps(a.1, b.1, acc.1)) }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn factor_avx512(m: &mut [Lanes], dim: usize) -> std::result::Result<(), usize> {
        unsafe { super::factor_with::<Avx512>(m, dim) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn factor_avx2(m: &mut [Lanes], dim: usize) -> std::result::Result<(), usize> {
        unsafe { super::factor_with::<Avx2>(m, dim) }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn solve_avx512(l: &[Lanes], dim: usize, b: &mut [Lanes]) {
        unsafe { super::solve_with::<Avx512>(l, dim, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn solve_avx2(l: &[Lanes], dim: usize, b: &mut [Lanes]) {
        unsafe { super::solve_with::<Avx2>(l, dim, b) }
    }
}

/// In-place Cholesky factorisation of 16 interleaved systems (the lower triangle becomes L),
/// Err(lane) names a system that is not positive definite.
fn factor(m: &mut [Lanes], dim: usize) -> std::result::Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: each path runs only where the CPU reports its instruction set.
        if is_x86_feature_detected!("avx512f") {
            return unsafe { x86::factor_avx512(m, dim) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return unsafe { x86::factor_avx2(m, dim) };
        }
    }
    // SAFETY: the portable implementation needs no special instructions.
    unsafe { factor_with::<Portable>(m, dim) }
}

/// Solve L L^T x = b in place for 16 interleaved systems, L from [`factor`].
fn solve_factored(l: &[Lanes], dim: usize, b: &mut [Lanes]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `factor`.
        if is_x86_feature_detected!("avx512f") {
            return unsafe { x86::solve_avx512(l, dim, b) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return unsafe { x86::solve_avx2(l, dim, b) };
        }
    }
    // SAFETY: as in `factor`.
    unsafe { solve_with::<Portable>(l, dim, b) }
}

#[inline(always)]
unsafe fn factor_with<S: Simd16>(m: &mut [Lanes], dim: usize) -> std::result::Result<(), usize> {
    // Left-looking (Crout): L[i][j] = (A[i][j] - sum_{l<j} L[i][l] L[j][l]) / L[j][j], each
    // entry accumulated in a register and stored once; four rows i share the loads of row j.
    // SAFETY (all unsafe below): the caller guarantees the instruction set.
    for j in 0..dim {
        let row_j = j * dim;
        let mut acc = unsafe { S::load(&m[row_j + j]) };
        for l in 0..j {
            let v = unsafe { S::load(&m[row_j + l]) };
            acc = unsafe { S::sub_mul(acc, v, v) };
        }
        let mut pivot = [0f32; LANES];
        unsafe { acc.store(&mut pivot) };
        if let Some(lane) = pivot.iter().position(|&p| !(p > 0.0)) {
            return Err(lane);
        }
        let d = pivot.map(f32::sqrt);
        m[row_j + j] = d;
        let inv = d.map(|v| 1.0 / v);
        let mut i = j + 1;
        while i + 4 <= dim {
            let rows = [i * dim, (i + 1) * dim, (i + 2) * dim, (i + 3) * dim];
            let mut acc = rows.map(|r| unsafe { S::load(&m[r + j]) });
            for l in 0..j {
                let ljl = unsafe { S::load(&m[row_j + l]) };
                for (a, r) in acc.iter_mut().zip(rows) {
                    *a = unsafe { S::sub_mul(*a, S::load(&m[r + l]), ljl) };
                }
            }
            for (a, r) in acc.into_iter().zip(rows) {
                let mut out = [0f32; LANES];
                unsafe { a.store(&mut out) };
                m[r + j] = std::array::from_fn(|t| out[t] * inv[t]);
            }
            i += 4;
        }
        for i in i..dim {
            let r = i * dim;
            let mut acc = unsafe { S::load(&m[r + j]) };
            for l in 0..j {
                acc = unsafe { S::sub_mul(acc, S::load(&m[r + l]), S::load(&m[row_j + l])) };
            }
            let mut out = [0f32; LANES];
            unsafe { acc.store(&mut out) };
            m[r + j] = std::array::from_fn(|t| out[t] * inv[t]);
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn solve_with<S: Simd16>(l: &[Lanes], dim: usize, b: &mut [Lanes]) {
    for i in 0..dim {
        // SAFETY (all unsafe below): the caller guarantees the instruction set.
        let mut acc = unsafe { S::load(&b[i]) };
        for j in 0..i {
            acc = unsafe { S::sub_mul(acc, S::load(&l[i * dim + j]), S::load(&b[j])) };
        }
        let mut out = [0f32; LANES];
        unsafe { acc.store(&mut out) };
        let d = l[i * dim + i];
        b[i] = std::array::from_fn(|t| out[t] / d[t]);
    }
    for i in (0..dim).rev() {
        let mut acc = unsafe { S::load(&b[i]) };
        for j in i + 1..dim {
            acc = unsafe { S::sub_mul(acc, S::load(&l[j * dim + i]), S::load(&b[j])) };
        }
        let mut out = [0f32; LANES];
        unsafe { acc.store(&mut out) };
        let d = l[i * dim + i];
        b[i] = std::array::from_fn(|t| out[t] / d[t]);
    }
}
