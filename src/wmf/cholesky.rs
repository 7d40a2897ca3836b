//! Exact per-row solve: A_u = YtY + lambda I + Y_u^T (C_u - I) Y_u built with one small GEMM
//! over sqrt(c - 1)-scaled gathered factors, factorised A_u = L L^T, then two triangular solves.

use super::cg::Block;
use crate::error::{Error, Result};
use crate::kernels::{axpy, dot, gram};
use multiversion::multiversion;

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn solve_block(block: &Block<'_>, x: &mut [f32]) -> Result<()> {
    let dim = block.dim;
    let rows = x.len() / dim;
    let (span, local) = block.spans(rows);
    let mut g = block.gather(&span);
    let c = &block.conf[span];
    let mut a_u = vec![0f32; dim * dim];
    for row in 0..rows {
        let xr = &mut x[row * dim..(row + 1) * dim];
        xr.fill(0.0);
        for t in local[row].clone() {
            let yt = &mut g[t * dim..(t + 1) * dim];
            axpy(c[t], yt, xr); // b = sum_i c_i y_i, before scaling y_i in place
            let s = (c[t] - 1.0).sqrt();
            yt.iter_mut().for_each(|v| *v *= s);
        }
        let rows_g = &g[local[row].start * dim..local[row].end * dim];
        gram(local[row].len(), dim, rows_g, &mut a_u);
        for (v, a) in a_u.iter_mut().zip(block.a) {
            *v += a;
        }
        factor(&mut a_u, dim).map_err(|()| {
            Error::invalid(format!(
                "the least-squares system of row {} is not positive definite; use regularization > 0",
                block.first_row + row
            ))
        })?;
        solve_factored(&a_u, dim, xr);
    }
    Ok(())
}

/// In-place Cholesky factorisation (lower triangle of `m` becomes L); Err if not positive definite.
#[inline(always)]
pub(crate) fn factor(m: &mut [f32], dim: usize) -> std::result::Result<(), ()> {
    for i in 0..dim {
        for j in 0..=i {
            let s = m[i * dim + j] - dot(&m[i * dim..i * dim + j], &m[j * dim..j * dim + j]);
            if i == j {
                if !(s > 0.0) {
                    return Err(());
                }
                m[i * dim + i] = s.sqrt();
            } else {
                m[i * dim + j] = s / m[j * dim + j];
            }
        }
    }
    Ok(())
}

/// Solve L L^T x = b in place, L from [`factor`].
#[inline(always)]
pub(crate) fn solve_factored(l: &[f32], dim: usize, b: &mut [f32]) {
    for i in 0..dim {
        b[i] = (b[i] - dot(&l[i * dim..i * dim + i], &b[..i])) / l[i * dim + i];
    }
    for i in (0..dim).rev() {
        let mut s = b[i];
        for j in i + 1..dim {
            s -= l[j * dim + i] * b[j];
        }
        b[i] = s / l[i * dim + i];
    }
}
