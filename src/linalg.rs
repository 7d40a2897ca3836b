//! Dense symmetric positive-definite solves in f64: a blocked Cholesky factorisation whose
//! trailing updates are `matrixmultiply::dgemm` products, and the triangular solves for many
//! right-hand sides. Used by the closed-form ridge regression of the linear content model.

use crate::error::{Error, Result};

/// Columns factored per block: the panel stays in cache while dgemm updates the rest.
const BLOCK: usize = 64;

/// Overwrite the lower triangle of the row-major `n x n` symmetric matrix `a` with its
/// Cholesky factor L (A = L Lᵀ). The strict upper triangle is left as scratch. Fails (with
/// the pivot's index) when A is not numerically positive definite.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    crate::ensure!(a.len() == n * n, "matrix has {} values, expected {n} x {n}", a.len());
    for k0 in (0..n).step_by(BLOCK) {
        let kb = BLOCK.min(n - k0);
        // The diagonal block, unblocked (its left part was already subtracted).
        for j in k0..k0 + kb {
            let mut d = a[j * n + j];
            for p in k0..j {
                d -= a[j * n + p] * a[j * n + p];
            }
            if !(d > 0.0) || !d.is_finite() {
                return Err(Error::Compute(format!(
                    "the {n} x {n} system is not positive definite (pivot {j} is {d:e})"
                )));
            }
            let d = d.sqrt();
            a[j * n + j] = d;
            for i in j + 1..k0 + kb {
                let mut s = a[i * n + j];
                for p in k0..j {
                    s -= a[i * n + p] * a[j * n + p];
                }
                a[i * n + j] = s / d;
            }
        }
        let rest = k0 + kb;
        if rest == n {
            break;
        }
        // The panel below the block: rows solve against L_kkᵀ.
        for i in rest..n {
            for j in k0..k0 + kb {
                let mut s = a[i * n + j];
                for p in k0..j {
                    s -= a[i * n + p] * a[j * n + p];
                }
                a[i * n + j] = s / a[j * n + j];
            }
        }
        // Trailing update A22 -= P Pᵀ, with P the panel (rows rest.., columns k0..k0+kb).
        let m = n - rest;
        let base = a.as_mut_ptr();
        // SAFETY: P (columns k0..rest) and the updated block (columns rest..n) are disjoint
        // parts of `a`, both inside it for the strides given; dgemm only writes C.
        unsafe {
            let p = base.add(rest * n + k0);
            let c = base.add(rest * n + rest);
            matrixmultiply::dgemm(
                m, kb, m, -1.0, p, n as isize, 1, p, 1, n as isize, 1.0, c, n as isize, 1,
            );
        }
    }
    Ok(())
}

/// Solve L Lᵀ X = B in place for the `n x nrhs` row-major B, with L from [`cholesky`].
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], nrhs: usize) {
    if nrhs == 1 {
        return cholesky_solve_one(l, n, b);
    }
    // L Z = B, row by row: z_i = (b_i - sum_{j<i} L_ij z_j) / L_ii.
    for i in 0..n {
        let (done, row) = b.split_at_mut(i * nrhs);
        let row = &mut row[..nrhs];
        for j in 0..i {
            let lij = l[i * n + j];
            if lij != 0.0 {
                let zj = &done[j * nrhs..(j + 1) * nrhs];
                row.iter_mut().zip(zj).for_each(|(r, z)| *r -= lij * z);
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
    // Lᵀ X = Z, from the last row up: x_i = (z_i - sum_{j>i} L_ji x_j) / L_ii.
    for i in (0..n).rev() {
        let (row, later) = b.split_at_mut((i + 1) * nrhs);
        let row = &mut row[i * nrhs..];
        for j in i + 1..n {
            let lji = l[j * n + i];
            if lji != 0.0 {
                let xj = &later[(j - i - 1) * nrhs..(j - i) * nrhs];
                row.iter_mut().zip(xj).for_each(|(r, x)| *r -= lji * x);
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|r| *r /= d);
    }
}

/// [`cholesky_solve`] for one right-hand side (a Woodbury row's small system, solved ~10^5
/// times per half-sweep): the same operations in the same order, without the per-row slices.
fn cholesky_solve_one(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut r = b[i];
        for j in 0..i {
            let lij = l[i * n + j];
            if lij != 0.0 {
                r -= lij * b[j];
            }
        }
        b[i] = r / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut r = b[i];
        for j in i + 1..n {
            let lji = l[j * n + i];
            if lji != 0.0 {
                r -= lji * b[j];
            }
        }
        b[i] = r / l[i * n + i];
    }
}

/// C (m x n) = Aᵀ B for row-major A (k x m) and B (k x n); C is overwritten.
pub fn gemm_atb(m: usize, n: usize, k: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    assert!(
        a.len() >= k * m && b.len() >= k * n && c.len() >= m * n,
        "gemm_atb shapes"
    );
    // SAFETY: the shapes were checked above; the three buffers do not overlap (&/&mut).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            1,
            m as isize,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random SPD matrix B Bᵀ + n I of size n.
    fn spd(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let b: Vec<f64> = (0..n * n).map(|_| rng.random::<f64>() - 0.5).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|p| b[i * n + p] * b[j * n + p]).sum::<f64>();
            }
            a[i * n + i] += n as f64 * 0.1;
        }
        a
    }

    #[test]
    fn blocked_factor_solves_across_block_edges() {
        // Sizes below, at and across the block size.
        for n in [1, 5, 63, 64, 65, 150] {
            let a = spd(n, n as u64);
            let mut l = a.clone();
            cholesky(&mut l, n).unwrap();
            for i in 0..n {
                for j in 0..=i {
                    let lij: f64 = (0..=j).map(|p| l[i * n + p] * l[j * n + p]).sum();
                    assert!((lij - a[i * n + j]).abs() < 1e-9 * n as f64, "n={n} ({i},{j})");
                }
            }
            let nrhs = 3;
            let x: Vec<f64> = (0..n * nrhs).map(|v| (v as f64 * 0.37).sin()).collect();
            let mut b = vec![0.0; n * nrhs];
            for i in 0..n {
                for r in 0..nrhs {
                    b[i * nrhs + r] = (0..n).map(|j| a[i * n + j] * x[j * nrhs + r]).sum();
                }
            }
            // Each column alone (the one-right-hand-side path) gives the same bits.
            let columns: Vec<Vec<f64>> = (0..nrhs)
                .map(|r| {
                    let mut col: Vec<f64> = (0..n).map(|i| b[i * nrhs + r]).collect();
                    cholesky_solve(&l, n, &mut col, 1);
                    col
                })
                .collect();
            cholesky_solve(&l, n, &mut b, nrhs);
            for (got, want) in b.iter().zip(&x) {
                assert!((got - want).abs() < 1e-8, "n={n}: {got} vs {want}");
            }
            for (r, col) in columns.iter().enumerate() {
                assert!(
                    (0..n).all(|i| col[i].to_bits() == b[i * nrhs + r].to_bits()),
                    "n={n}, column {r}"
                );
            }
        }
    }

    #[test]
    fn indefinite_matrix_is_an_error_not_a_nan() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let err = cholesky(&mut a, 2).unwrap_err().to_string();
        assert!(err.contains("not positive definite"), "{err}");
    }

    #[test]
    fn atb_matches_the_definition() {
        let (k, m, n) = (7, 3, 4);
        let a: Vec<f64> = (0..k * m).map(|v| v as f64 * 0.5 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|v| (v as f64).cos()).collect();
        let mut c = vec![9.0; m * n];
        gemm_atb(m, n, k, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| a[p * m + i] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-12);
            }
        }
    }
}
