//! Dense f32 kernels shared by the solvers, top-k and metrics.
//!
//! `dot`/`axpy` are `#[inline(always)]` so that they take on the target features of the
//! `#[multiversion]` function they are inlined into (AVX2+FMA, AVX-512, NEON): one source,
//! runtime dispatch at the level of a whole block of work rather than per call.
//! Matrix products go through `matrixmultiply`, which is cache-blocked and detects SIMD itself.
//! Plain `a * b + c` rather than `mul_add`: without FMA in the target, `mul_add` is a libm call.

const LANES: usize = 16;

/// Inner product with 16 independent accumulators so LLVM can vectorise the reduction.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    // Pairwise fold keeps the summation order fixed (deterministic) and short.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// y += alpha * x
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// y (n) = B x for B (n x k, row-major): one query against many rows. For a single query a
/// dot product per row beats a GEMM, which would pack B first.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub fn gemv_rows(x: &[f32], b: &[f32], k: usize, y: &mut [f32]) {
    for (yi, row) in y.iter_mut().zip(b.chunks_exact(k)) {
        *yi = dot(x, row);
    }
}

/// Columns per register tile of [`gemm_ab_small`] (two AVX-512 registers).
const TILE_COLS: usize = 32;

/// C (m x n) = A (m x k) * B (k x n), all row-major, C overwritten, without packing: for a
/// few rows against a B that stays in cache, like the conjugate gradient's `A p` per block,
/// where matrixmultiply's packing of B and its masked edge kernels cost more than the
/// product (a block of one popular item is a 1 x k x k product). `#[inline(always)]`, so it
/// takes the target features of the multiversioned caller. Each entry sums over `k` in
/// order, so the result does not depend on `m` or on the thread count.
#[inline(always)]
pub fn gemm_ab_small(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm_ab_small operand too short (a bug in the caller's shapes)"
    );
    let full = n / TILE_COLS * TILE_COLS;
    // The last n % 32 columns of B, zero-padded to a full tile, so they vectorise too.
    let tail: Vec<f32> = if full < n {
        let mut t = vec![0f32; k * TILE_COLS];
        for (dst, src) in t.chunks_exact_mut(TILE_COLS).zip(b.chunks_exact(n)) {
            dst[..n - full].copy_from_slice(&src[full..]);
        }
        t
    } else {
        Vec::new()
    };
    let mut r = 0;
    while r + 4 <= m {
        small_rows::<4>(r, n, k, a, b, &tail, c);
        r += 4;
    }
    while r < m {
        small_rows::<1>(r, n, k, a, b, &tail, c);
        r += 1;
    }
}

/// Rows `r0..r0 + R` of [`gemm_ab_small`], one 32-column tile at a time, the last from `tail`.
#[inline(always)]
fn small_rows<const R: usize>(r0: usize, n: usize, k: usize, a: &[f32], b: &[f32], tail: &[f32], c: &mut [f32]) {
    let rows: [&[f32]; R] = std::array::from_fn(|i| &a[(r0 + i) * k..(r0 + i + 1) * k]);
    for j in (0..n).step_by(TILE_COLS) {
        let (src, stride, offset) = if j + TILE_COLS <= n {
            (b, n, j)
        } else {
            (tail, TILE_COLS, 0)
        };
        let acc = small_tile::<R>(&rows, k, src, stride, offset);
        let width = TILE_COLS.min(n - j);
        for (i, acc) in acc.iter().enumerate() {
            c[(r0 + i) * n + j..(r0 + i) * n + j + width].copy_from_slice(&acc[..width]);
        }
    }
}

/// R x 32 accumulators: sum over t of rows[i][t] * src[t * stride + offset..][..32].
#[inline(always)]
fn small_tile<const R: usize>(
    rows: &[&[f32]; R],
    k: usize,
    src: &[f32],
    stride: usize,
    offset: usize,
) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for t in 0..k {
        let bt: &[f32; TILE_COLS] = src[t * stride + offset..t * stride + offset + TILE_COLS]
            .try_into()
            .expect("tile width");
        for i in 0..R {
            let s = rows[i][t];
            for l in 0..TILE_COLS {
                acc[i][l] += s * bt[l];
            }
        }
    }
    acc
}

/// C (m x n) = A (m x k, row-major) * B^T where B is (n x k, row-major); C is overwritten.
pub fn gemm_abt(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // B^T is B read with swapped strides, no copy.
    sgemm(m, k, n, a, (k, 1), b, (1, k), c);
}

/// C (m x n) = A (m x k) * B (k x n), all row-major; C is overwritten.
pub fn gemm_ab(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm(m, k, n, a, (k, 1), b, (n, 1), c);
}

/// C (m x n) = A (m x k, row-major) * B (k x n) where row t of B starts at `b[t * ldb]`: a
/// block of columns of a wider row-major matrix, read in place. This is the layout
/// matrixmultiply packs fastest (contiguous runs per row of B), unlike [`gemm_abt`]'s
/// strided reads.
pub fn gemm_ab_strided(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ldb: usize, c: &mut [f32]) {
    sgemm(m, k, n, a, (k, 1), b, (ldb, 1), c);
}

/// B^T (k x n, row-major) of B (n x k, row-major).
pub fn transpose(n: usize, k: usize, b: &[f32]) -> Vec<f32> {
    let mut t = vec![0f32; n * k];
    // Tiles of 64 rows keep both sides' cache lines live.
    for lo in (0..n).step_by(64) {
        let hi = (lo + 64).min(n);
        for c in 0..k {
            let dst = &mut t[c * n + lo..c * n + hi];
            for (d, row) in dst.iter_mut().zip(b[lo * k..hi * k].chunks_exact(k)) {
                *d = row[c];
            }
        }
    }
    t
}

/// G (k x k) = A^T A for A (m x k, row-major); the Gram matrix, overwritten.
pub fn gram(m: usize, k: usize, a: &[f32], g: &mut [f32]) {
    sgemm(k, m, k, a, (1, k), a, (k, 1), g);
}

/// Ask the CPU to bring the cache lines of `row` into L1 ahead of use (a hint: no effect on
/// results, a no-op off x86_64). The WMF gathers of factor rows scattered over a table far
/// larger than the caches issue it a few rows ahead, so the misses overlap with the copies.
#[inline(always)]
pub fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64 / std::mem::size_of::<f32>();
        for i in (0..row.len()).step_by(LINE) {
            // SAFETY: a prefetch never faults or writes; the address is inside `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(i).cast::<i8>()) };
        }
        if let Some(last) = row.last() {
            // The last line, when the row does not start on a line boundary.
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(last).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// C (m x n, row-major) = A (m x k) * B (k x n), A and B given by (row, column) strides in
/// elements; the one place that calls into matrixmultiply.
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], sa: (usize, usize), b: &[f32], sb: (usize, usize), c: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let last = |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, k, sa) < a.len() && last(k, n, sb) < b.len() && m * n <= c.len(),
        "sgemm operand too short (a bug in the caller's shapes)"
    );
    // SAFETY: the assertion above keeps every strided access inside the slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
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

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for n in [0, 1, 15, 16, 17, 100, 129] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn small_gemm_matches_naive_for_every_edge() {
        // Row counts around the 4-row tile, column counts around the 32-column tile.
        for (m, n, k) in [
            (1, 100, 100),
            (3, 31, 5),
            (4, 32, 7),
            (5, 33, 9),
            (9, 100, 100),
            (2, 64, 1),
            (0, 8, 8),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut c = vec![f32::NAN; m * n];
            gemm_ab_small(m, n, k, &a, &b, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
                    assert!(
                        (c[i * n + j] as f64 - want).abs() < 1e-4,
                        "m={m} n={n} k={k} at ({i}, {j})"
                    );
                }
            }
            // A row's result does not depend on the rows around it.
            if m > 1 {
                let mut one = vec![0f32; n];
                gemm_ab_small(1, n, k, &a[(m - 1) * k..], &b, &mut one);
                assert_eq!(one, c[(m - 1) * n..]);
            }
        }
    }

    #[test]
    fn gemms_match_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32).sqrt()).collect();
        let mut c = vec![0f32; m * n];
        gemm_abt(m, n, k, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[j * k + t]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
        let mut g = vec![0f32; k * k];
        gram(m, k, &a, &mut g);
        for i in 0..k {
            for j in 0..k {
                let want: f32 = (0..m).map(|t| a[t * k + i] * a[t * k + j]).sum();
                assert!((g[i * k + j] - want).abs() < 1e-3);
            }
        }
        let bt: Vec<f32> = (0..k * n).map(|idx| b[(idx % n) * k + idx / n]).collect();
        let mut c2 = vec![0f32; m * n];
        gemm_ab(m, n, k, &a, &bt, &mut c2);
        assert_eq!(c, c2);
        let bt = transpose(n, k, &b);
        let mut c3 = vec![0f32; m * n];
        for lo in [0, 3] {
            let w = if lo == 0 { 3 } else { n - 3 };
            let mut part = vec![0f32; m * w];
            gemm_ab_strided(m, w, k, &a, &bt[lo..], n, &mut part);
            for i in 0..m {
                c3[i * n + lo..i * n + lo + w].copy_from_slice(&part[i * w..(i + 1) * w]);
            }
        }
        // Bit-identical to gemm_abt: same kernel, same summation order, only the packing differs.
        assert_eq!(c, c3);
        let mut y = vec![0f32; n];
        gemv_rows(&a[..k], &b, k, &mut y);
        for (yj, cj) in y.iter().zip(&c[..n]) {
            assert!((yj - cj).abs() < 1e-4);
        }
    }
}
