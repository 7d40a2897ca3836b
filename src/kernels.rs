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

/// How [`dot_axpy_rows`] weighs row `t` given `d = y_t . v` and the confidence `c_t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowWeight {
    /// `c_t - (c_t - 1) d`: the conjugate gradient's initial residual.
    Residual,
    /// `(c_t - 1) d`, rows with `c_t = 1` skipped: its product with the search direction.
    Step,
}

impl RowWeight {
    #[inline(always)]
    pub fn of(self, c: f32, d: f32) -> Option<f32> {
        match self {
            RowWeight::Residual => Some(c - (c - 1.0) * d),
            RowWeight::Step => {
                let w = c - 1.0;
                (w != 0.0).then_some(w * d)
            }
        }
    }
}

/// For each row `y_t` of the row-major `rows` (`v.len()` wide) with confidence `c[t]`:
/// `out += w_t y_t`, `w_t` from `d = dot(y_t, v)` by `weight` (the sparse half of the
/// conjugate gradient's products, one row of a block). The same sums as [`dot`] and
/// [`axpy`] in the same order, so the same bits, but in explicit AVX-512 or AVX2 registers
/// where the CPU has them (with `out` held in registers across the rows): LLVM vectorises
/// [`dot`]'s 16 accumulators as eight 2-lane ones. The features are detected per call (a
/// cached flag), so per row of a block, not per interaction.
#[inline(always)]
pub fn dot_axpy_rows(rows: &[f32], c: &[f32], v: &[f32], out: &mut [f32], weight: RowWeight) {
    let dim = v.len();
    assert!(
        dim > 0 && out.len() == dim && rows.len() == c.len() * dim,
        "dot_axpy_rows operand shapes (a bug in the caller)"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU has the features.
            return unsafe { x86::dot_axpy_rows_avx512(rows, c, v, out, weight) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU has the features.
            return unsafe { x86::dot_axpy_rows_avx2(rows, c, v, out, weight) };
        }
    }
    for (yt, &ct) in rows.chunks_exact(dim).zip(c) {
        if let Some(w) = weight.of(ct, dot(yt, v)) {
            axpy(w, yt, out);
        }
    }
}

/// [`dot`] of `a` with each of four vectors as long as it, the same bits, four at a time in
/// explicit registers where the CPU has AVX-512 (one chunk of `a` loaded for the four, four
/// independent sums instead of one chain of dependent adds).
#[inline(always)]
pub fn dot4(a: &[f32], bs: [&[f32]; 4]) -> [f32; 4] {
    assert!(
        bs.iter().all(|b| b.len() == a.len()),
        "dot4 operand lengths (a bug in the caller)"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU has the features.
            return unsafe { x86::dot512x4(a, bs) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU has the features.
            return bs.map(|b| unsafe { x86::dot256(a, b) });
        }
    }
    bs.map(|b| dot(a, b))
}

/// Every inner product `ys[r] . zs[c]` of a tile of at most four by four vectors of one
/// length: `out[r][c]`. Its own summation order, fixed and the same on every CPU (not
/// [`dot`]'s): 16 lane sums over chunks of 16, the last chunk zero-padded, each product added
/// as `acc + y * z` (no FMA), then each lane group of four folded as `(l0 + l2) + (l1 + l3)`
/// and the four groups as `(g0 + g2) + (g1 + g3)`. In AVX-512 registers where the CPU has
/// them: every chunk of a vector is loaded once for the whole tile and the sums of a row fold
/// together, so a tile costs about a third of as many [`dot4`] calls (the Woodbury Gram).
#[inline(always)]
pub fn dot_tile<const R: usize, const C: usize>(ys: [&[f32]; R], zs: [&[f32]; C]) -> [[f32; C]; R] {
    let n = ys.first().map_or(0, |y| y.len());
    assert!(
        R <= 4 && C <= 4 && ys.iter().chain(&zs).all(|v| v.len() == n),
        "dot_tile operand shapes (a bug in the caller)"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU has the features.
            return unsafe { x86::dot_tile512(ys, zs) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU has the features.
            return unsafe { x86::dot_tile256(ys, zs) };
        }
    }
    dot_tile_portable(ys, zs)
}

/// [`dot_tile`] in plain loops (the order the SIMD kernel keeps).
#[inline(always)]
fn dot_tile_portable<const R: usize, const C: usize>(ys: [&[f32]; R], zs: [&[f32]; C]) -> [[f32; C]; R] {
    let n = ys.first().map_or(0, |y| y.len());
    let mut acc = [[[0f32; LANES]; C]; R];
    for start in (0..n).step_by(LANES) {
        let lanes = (n - start).min(LANES);
        let chunk = |v: &[f32]| {
            let mut padded = [0f32; LANES];
            padded[..lanes].copy_from_slice(&v[start..start + lanes]);
            padded
        };
        let zc = zs.map(chunk);
        for (acc_r, y) in acc.iter_mut().zip(ys) {
            let yc = chunk(y);
            for (a, z) in acc_r.iter_mut().zip(&zc) {
                for l in 0..LANES {
                    a[l] += yc[l] * z[l];
                }
            }
        }
    }
    let fold = |a: &[f32; LANES]| {
        let group = |q: usize| (a[4 * q] + a[4 * q + 2]) + (a[4 * q + 1] + a[4 * q + 3]);
        (group(0) + group(2)) + (group(1) + group(3))
    };
    acc.map(|row| row.map(|a| fold(&a)))
}

/// [`dot`] and [`axpy`] in explicit registers, bit for bit: 16 lane sums over the full
/// 16-element chunks (multiply, then add: no FMA, as in the portable code), the remainder
/// summed in order on its own, then the lanes folded pairwise (8, 4, 2, 1) and the remainder
/// added last.
///
/// The kernels enable the feature sets of the `#[multiversion]` targets (see `wmf::cg`), so the
/// closures those clones pass in (which carry their features) inline into them.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::is_x86_feature_detected as has;
    use std::arch::x86_64::*;

    pub(super) fn has_avx512() -> bool {
        has!("avx512f") && has!("avx512bw") && has!("avx512cd") && has!("avx512dq") && has!("avx512vl") && has_avx2()
    }

    pub(super) fn has_avx2() -> bool {
        has!("avx2") && has!("fma")
    }

    /// The body of [`dot512x4`], a macro so that [`in_registers`] has it inline: called, the
    /// function made the caller spill and reload the accumulators of `out` around every four
    /// rows (a `#[target_feature]` function cannot be `#[inline(always)]`). Expands only in a
    /// function with the AVX-512 features.
    macro_rules! dot512x4_body {
        ($a:expr, $bs:expr) => {{
            let (a, bs): (&[f32], [&[f32]; 4]) = ($a, $bs);
            let n = a.len();
            assert!(
                bs.iter().all(|b| b.len() == n),
                "dot512x4 operand lengths (a bug in the caller)"
            );
            let full = n / 16 * 16;
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i < full {
                // SAFETY: i + 16 <= full <= the length of every slice.
                let x = unsafe { _mm512_loadu_ps(a.as_ptr().add(i)) };
                for (acc, b) in acc.iter_mut().zip(&bs) {
                    let y = unsafe { _mm512_loadu_ps(b.as_ptr().add(i)) };
                    *acc = _mm512_add_ps(*acc, _mm512_mul_ps(x, y));
                }
                i += 16;
            }
            let mut out = [0f32; 4];
            for ((o, acc), b) in out.iter_mut().zip(acc).zip(&bs) {
                let mut tail = 0f32;
                for (x, y) in a[full..].iter().zip(&b[full..]) {
                    tail += x * y;
                }
                let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
                *o = fold8(_mm256_add_ps(_mm512_castps512_ps256(acc), high)) + tail;
            }
            out
        }};
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    fn dot512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= the length of both slices.
            let (x, y) = unsafe { (_mm512_loadu_ps(a.as_ptr().add(i)), _mm512_loadu_ps(b.as_ptr().add(i))) };
            acc = _mm512_add_ps(acc, _mm512_mul_ps(x, y));
            i += 16;
        }
        let mut tail = 0f32;
        for (x, y) in a[full..n].iter().zip(&b[full..n]) {
            tail += x * y;
        }
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        let s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), high);
        fold8(s8) + tail
    }

    /// [`dot512`] of `a` with each of four `bs` at once, bit for bit: each pair keeps its own
    /// accumulator and order, but every chunk of `a` is loaded once for the four, and the four
    /// independent sums hide each other's add latency (one `dot512` is a chain of dependent
    /// adds and a fold).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn dot512x4(a: &[f32], bs: [&[f32]; 4]) -> [f32; 4] {
        dot512x4_body!(a, bs)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    fn axpy512(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let a = _mm512_set1_ps(alpha);
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n <= the length of both slices.
            unsafe {
                let (xv, yv) = (_mm512_loadu_ps(x.as_ptr().add(i)), _mm512_loadu_ps(y.as_ptr().add(i)));
                _mm512_storeu_ps(y.as_mut_ptr().add(i), _mm512_add_ps(yv, _mm512_mul_ps(a, xv)));
            }
            i += 16;
        }
        if i < n {
            let m = ((1u32 << (n - i)) - 1) as __mmask16;
            // SAFETY: the mask covers only the n - i < 16 elements left in both slices.
            unsafe {
                let xv = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
                let yv = _mm512_maskz_loadu_ps(m, y.as_ptr().add(i));
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), m, _mm512_add_ps(yv, _mm512_mul_ps(a, xv)));
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / 16 * 16;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= the length of both slices.
            unsafe {
                let (x0, y0) = (_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)));
                let (x1, y1) = (
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                );
                lo = _mm256_add_ps(lo, _mm256_mul_ps(x0, y0));
                hi = _mm256_add_ps(hi, _mm256_mul_ps(x1, y1));
            }
            i += 16;
        }
        let mut tail = 0f32;
        for (x, y) in a[full..n].iter().zip(&b[full..n]) {
            tail += x * y;
        }
        fold8(_mm256_add_ps(lo, hi)) + tail
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn axpy256(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let a = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n <= the length of both slices.
            unsafe {
                let (xv, yv) = (_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(y.as_ptr().add(i)));
                _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_add_ps(yv, _mm256_mul_ps(a, xv)));
            }
            i += 8;
        }
        for (yi, xi) in y[i..n].iter_mut().zip(&x[i..n]) {
            *yi += alpha * xi;
        }
    }

    /// [`super::dot_tile`]: the lane sums in `R x C` registers, the last chunk loaded masked
    /// (zeros, as the portable code pads), each row's four sums folded together.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn dot_tile512<const R: usize, const C: usize>(ys: [&[f32]; R], zs: [&[f32]; C]) -> [[f32; C]; R] {
        let n = ys.first().map_or(0, |y| y.len());
        assert!(
            R <= 4 && C <= 4 && ys.iter().chain(&zs).all(|v| v.len() == n),
            "dot_tile512 operand shapes (a bug in the caller)"
        );
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut i = 0;
        while i < n {
            let mask: __mmask16 = if n - i >= 16 { !0 } else { (1u16 << (n - i)) - 1 };
            // SAFETY: the mask covers only elements i..n of slices n long.
            let zc = zs.map(|z| unsafe { _mm512_maskz_loadu_ps(mask, z.as_ptr().add(i)) });
            for (acc_r, y) in acc.iter_mut().zip(&ys) {
                // SAFETY: as above.
                let yc = unsafe { _mm512_maskz_loadu_ps(mask, y.as_ptr().add(i)) };
                for (a, z) in acc_r.iter_mut().zip(&zc) {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(yc, *z));
                }
            }
            i += 16;
        }
        let mut out = [[0f32; C]; R];
        for (o, a) in out.iter_mut().zip(acc) {
            let zero = _mm512_setzero_ps();
            let at = |c: usize| if c < C { a[c] } else { zero };
            let sums = fold4x16(at(0), at(1), at(2), at(3));
            let mut four = [0f32; 4];
            // SAFETY: four floats stored into a 4-float array.
            unsafe { _mm_storeu_ps(four.as_mut_ptr(), sums) };
            o.copy_from_slice(&four[..C]);
        }
        out
    }

    /// [`super::dot_tile`] in AVX2 registers: each pair's 16 lane sums in two registers
    /// (lanes 0-7 and 8-15), the tile in sub-tiles of at most 2 x 2 pairs (eight sums and
    /// the loads fit in the 16 registers; a 4 x 4 tile's 32 would spill), the last chunk
    /// loaded masked (zeros, as the portable code pads), each row's sums folded together.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_tile256<const R: usize, const C: usize>(ys: [&[f32]; R], zs: [&[f32]; C]) -> [[f32; C]; R] {
        let n = ys.first().map_or(0, |y| y.len());
        assert!(
            R <= 4 && C <= 4 && ys.iter().chain(&zs).all(|v| v.len() == n),
            "dot_tile256 operand shapes (a bug in the caller)"
        );
        let zero = _mm256_setzero_ps();
        let mut sums = [[(zero, zero); 4]; 4];
        for r0 in (0..R).step_by(2) {
            for c0 in (0..C).step_by(2) {
                match ((R - r0).min(2), (C - c0).min(2)) {
                    (1, 1) => sub_tile256::<1, 1>(&ys, &zs, r0, c0, &mut sums),
                    (1, _) => sub_tile256::<1, 2>(&ys, &zs, r0, c0, &mut sums),
                    (_, 1) => sub_tile256::<2, 1>(&ys, &zs, r0, c0, &mut sums),
                    _ => sub_tile256::<2, 2>(&ys, &zs, r0, c0, &mut sums),
                }
            }
        }
        let mut out = [[0f32; C]; R];
        for (o, row) in out.iter_mut().zip(sums) {
            let folded = fold4x8(row.map(|(lo, _)| lo), row.map(|(_, hi)| hi));
            let mut four = [0f32; 4];
            // SAFETY: four floats stored into a 4-float array.
            unsafe { _mm_storeu_ps(four.as_mut_ptr(), folded) };
            o.copy_from_slice(&four[..C]);
        }
        out
    }

    /// The lane sums of `ys[r0..r0 + R2]` against `zs[c0..c0 + C2]` into `sums[r][c]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sub_tile256<const R2: usize, const C2: usize>(
        ys: &[&[f32]],
        zs: &[&[f32]],
        r0: usize,
        c0: usize,
        sums: &mut [[(__m256, __m256); 4]; 4],
    ) {
        let n = ys[0].len();
        let zero = _mm256_setzero_ps();
        let mut acc = [[(zero, zero); C2]; R2];
        let lanes = |i: usize| -> __m256i {
            // All ones in the lanes i.. that lie inside the vectors (n - i of them, or 8).
            let left = n.saturating_sub(i).min(8) as i32;
            _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
        };
        let mut i = 0;
        while i < n {
            let masks = (n - i < 16).then(|| (lanes(i), lanes(i + 8)));
            let load = |v: &[f32]| -> (__m256, __m256) {
                let (lo, hi) = (v.as_ptr().wrapping_add(i), v.as_ptr().wrapping_add(i + 8));
                // SAFETY: a full chunk lies inside the slice; otherwise the masks cover only
                // elements i..n of a slice n long (a masked-out lane is not read).
                unsafe {
                    match masks {
                        None => (_mm256_loadu_ps(lo), _mm256_loadu_ps(hi)),
                        Some((mlo, mhi)) => (_mm256_maskload_ps(lo, mlo), _mm256_maskload_ps(hi, mhi)),
                    }
                }
            };
            let zc: [(__m256, __m256); C2] = std::array::from_fn(|c| load(zs[c0 + c]));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let (ylo, yhi) = load(ys[r0 + r]);
                for ((lo, hi), (zlo, zhi)) in acc_r.iter_mut().zip(&zc) {
                    *lo = _mm256_add_ps(*lo, _mm256_mul_ps(ylo, *zlo));
                    *hi = _mm256_add_ps(*hi, _mm256_mul_ps(yhi, *zhi));
                }
            }
            i += 16;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (c, &pair) in acc_r.iter().enumerate() {
                sums[r0 + r][c0 + c] = pair;
            }
        }
    }

    /// [`fold4x16`] for sums held as lanes 0-7 (`lo`) and 8-15 (`hi`) of four pairs: the
    /// same additions in the same order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fold4x8(lo: [__m256; 4], hi: [__m256; 4]) -> __m128 {
        // Per 128-bit group, as in fold4x16: [(a0 + a2) + (a1 + a3), the same for b, c, d].
        let groups = |[a, b, c, d]: [__m256; 4]| {
            let ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            let cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
            let (ab, cd) = (_mm256_castps_pd(ab), _mm256_castps_pd(cd));
            _mm256_add_ps(
                _mm256_castpd_ps(_mm256_unpacklo_pd(ab, cd)),
                _mm256_castpd_ps(_mm256_unpackhi_pd(ab, cd)),
            )
        };
        // [g0 + g2 | g1 + g3], then those two.
        let g = _mm256_add_ps(groups(lo), groups(hi));
        _mm_add_ps(_mm256_castps256_ps128(g), _mm256_extractf128_ps::<1>(g))
    }

    /// The lane sums of four registers, `[sum a, sum b, sum c, sum d]`, each in
    /// [`super::dot_tile`]'s order: within each 128-bit group `(l0 + l2) + (l1 + l3)`, then
    /// the groups `(g0 + g2) + (g1 + g3)`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    fn fold4x16(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        // Per group: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] and the same for c, d.
        let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
        // Per group: [(a0 + a2) + (a1 + a3), the same for b, c, d].
        let (ab, cd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
        let groups = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)),
        );
        // Groups 0 + 2 and 1 + 3, then those two.
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(groups)));
        let g = _mm256_add_ps(_mm512_castps512_ps256(groups), high);
        _mm_add_ps(_mm256_castps256_ps128(g), _mm256_extractf128_ps::<1>(g))
    }

    /// Lanes 0..8 folded as [`super::dot`] folds them: l + (l + 4), then + (l + 2), then + (l + 1).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fold8(s8: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn dot_axpy_rows_avx512(rows: &[f32], c: &[f32], v: &[f32], out: &mut [f32], weight: super::RowWeight) {
        // `out` held in registers across the rows when it fits in 8 of them: stored back per
        // row, its masked tail would be reloaded by the next row before the store retires,
        // and a masked load cannot take its data from the store buffer.
        match out.len().div_ceil(16) {
            1 => return in_registers::<1>(rows, c, v, out, weight),
            2 => return in_registers::<2>(rows, c, v, out, weight),
            3 => return in_registers::<3>(rows, c, v, out, weight),
            4 => return in_registers::<4>(rows, c, v, out, weight),
            5 => return in_registers::<5>(rows, c, v, out, weight),
            6 => return in_registers::<6>(rows, c, v, out, weight),
            7 => return in_registers::<7>(rows, c, v, out, weight),
            8 => return in_registers::<8>(rows, c, v, out, weight),
            _ => {}
        }
        for (yt, &ct) in rows.chunks_exact(v.len()).zip(c) {
            if let Some(w) = weight.of(ct, dot512(yt, v)) {
                axpy512(w, yt, out);
            }
        }
    }

    /// [`dot_axpy_rows_avx512`] for `out` of `16 (C - 1) + 1 ..= 16 C` floats, in C registers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
    fn in_registers<const C: usize>(rows: &[f32], c: &[f32], v: &[f32], out: &mut [f32], weight: super::RowWeight) {
        let n = out.len();
        let mask = |k: usize| -> __mmask16 {
            let left = n - 16 * k;
            if left >= 16 {
                !0
            } else {
                ((1u32 << left) - 1) as __mmask16
            }
        };
        let mut acc = [_mm512_setzero_ps(); C];
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: the mask covers only elements inside `out`.
            *a = unsafe { _mm512_maskz_loadu_ps(mask(k), out.as_ptr().add(16 * k)) };
        }
        // Four rows' dot products at a time (independent of `out`), then their updates in
        // row order: the same sums as one row after another.
        // A macro rather than a closure, which LLVM left out of line for some `C`.
        macro_rules! add {
            ($yt:expr, $d:expr, $ct:expr) => {{
                let yt: &[f32] = $yt;
                if let Some(w) = weight.of($ct, $d) {
                    let wv = _mm512_set1_ps(w);
                    for (k, a) in acc.iter_mut().enumerate() {
                        // SAFETY: the mask covers only elements inside `yt` (n long).
                        let y = unsafe { _mm512_maskz_loadu_ps(mask(k), yt.as_ptr().add(16 * k)) };
                        *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, y));
                    }
                }
            }};
        }
        for (ys, cs) in rows.chunks_exact(4 * n).zip(c.chunks_exact(4)) {
            let (y0, rest) = ys.split_at(n);
            let (y1, rest) = rest.split_at(n);
            let (y2, y3) = rest.split_at(n);
            let [d0, d1, d2, d3] = dot512x4_body!(v, [y0, y1, y2, y3]);
            add!(y0, d0, cs[0]);
            add!(y1, d1, cs[1]);
            add!(y2, d2, cs[2]);
            add!(y3, d3, cs[3]);
        }
        let done = c.len() / 4 * 4;
        for (yt, &ct) in rows[done * n..].chunks_exact(n).zip(&c[done..]) {
            add!(yt, dot512(yt, v), ct);
        }
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: the mask covers only elements inside `out`.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(16 * k), mask(k), *a) };
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_axpy_rows_avx2(rows: &[f32], c: &[f32], v: &[f32], out: &mut [f32], weight: super::RowWeight) {
        for (yt, &ct) in rows.chunks_exact(v.len()).zip(c) {
            if let Some(w) = weight.of(ct, dot256(yt, v)) {
                axpy256(w, yt, out);
            }
        }
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

/// Columns per register tile of [`gemm_ab_small`]: two AVX-512 registers, or two AVX2 ones
/// (four rows of 32 columns are 16 AVX2 accumulators, all the registers there are: LLVM
/// spilled them and split the rows into odd widths).
const TILE_COLS_512: usize = 32;
const TILE_COLS_256: usize = 16;

/// C (m x n) = A (m x k) * B (k x n), all row-major, C overwritten, without packing: for a
/// few rows against a B that stays in cache, like the conjugate gradient's `A p` per block,
/// where matrixmultiply's packing of B and its masked edge kernels cost more than the
/// product (a block of one popular item is a 1 x k x k product). `#[inline(always)]`, so it
/// takes the target features of the multiversioned caller. Each entry sums over `k` in
/// order, so the result does not depend on `m`, on the tile width or on the thread count.
#[inline(always)]
pub fn gemm_ab_small(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm_ab_small operand too short (a bug in the caller's shapes)"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if !x86::has_avx512() {
            return gemm_ab_small_tiled::<TILE_COLS_256, { TILE_COLS_256 / 2 }>(m, n, k, a, b, c);
        }
    }
    gemm_ab_small_tiled::<TILE_COLS_512, { TILE_COLS_512 / 2 }>(m, n, k, a, b, c)
}

/// [`gemm_ab_small`] in tiles of four rows by `W` columns.
#[inline(always)]
fn gemm_ab_small_tiled<const W: usize, const H: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    let full = n / W * W;
    // The last n % W columns of B, zero-padded to a tile of H = W / 2 columns when they fit
    // in one (100 factors: 3 x 32 + 4, padded to 16 rather than 32), else to a full one, so
    // they vectorise too. A tile's width does not change any entry's sum.
    let tail_width = if n - full <= H { H } else { W };
    let tail: Vec<f32> = if full < n {
        let mut t = vec![0f32; k * tail_width];
        for (dst, src) in t.chunks_exact_mut(tail_width).zip(b.chunks_exact(n)) {
            dst[..n - full].copy_from_slice(&src[full..]);
        }
        t
    } else {
        Vec::new()
    };
    let mut r = 0;
    while r + 4 <= m {
        small_rows::<4, W, H>(r, (n, k), a, b, &tail, c);
        r += 4;
    }
    while r < m {
        small_rows::<1, W, H>(r, (n, k), a, b, &tail, c);
        r += 1;
    }
}

/// Rows `r0..r0 + R` of [`gemm_ab_small`], one `W`-column tile at a time, the last from `tail`.
#[inline(always)]
fn small_rows<const R: usize, const W: usize, const H: usize>(
    r0: usize,
    (n, k): (usize, usize),
    a: &[f32],
    b: &[f32],
    tail: &[f32],
    c: &mut [f32],
) {
    let rows: [&[f32]; R] = std::array::from_fn(|i| &a[(r0 + i) * k..(r0 + i + 1) * k]);
    let mut store = |j: usize, acc: &[[f32; W]; R], width: usize| {
        for (i, acc) in acc.iter().enumerate() {
            c[(r0 + i) * n + j..(r0 + i) * n + j + width].copy_from_slice(&acc[..width]);
        }
    };
    let full = n / W * W;
    for j in (0..full).step_by(W) {
        store(j, &small_tile::<R, W>(&rows, k, b, n, j), W);
    }
    if full < n {
        let width = n - full;
        if tail.len() == k * H {
            let half = small_tile::<R, H>(&rows, k, tail, H, 0);
            let mut acc = [[0f32; W]; R];
            for (wide, narrow) in acc.iter_mut().zip(&half) {
                wide[..H].copy_from_slice(narrow);
            }
            store(full, &acc, width);
        } else {
            store(full, &small_tile::<R, W>(&rows, k, tail, W, 0), width);
        }
    }
}

/// R x W accumulators: sum over t of rows[i][t] * src[t * stride + offset..][..W].
#[inline(always)]
fn small_tile<const R: usize, const W: usize>(
    rows: &[&[f32]; R],
    k: usize,
    src: &[f32],
    stride: usize,
    offset: usize,
) -> [[f32; W]; R] {
    let mut acc = [[0f32; W]; R];
    for t in 0..k {
        let bt: &[f32; W] = src[t * stride + offset..t * stride + offset + W]
            .try_into()
            .expect("tile width");
        for i in 0..R {
            let s = rows[i][t];
            for l in 0..W {
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
    sgemm_single(m, k, n, a, (k, 1), b, (n, 1), c);
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
    sgemm_single(k, m, k, a, (1, k), a, (k, 1), g);
}

/// Ask the CPU to bring the cache lines of `row` into L1 ahead of use (a hint: no effect on
/// results, a no-op off x86_64). The WMF gathers of factor rows scattered over a table far
/// larger than the caches issue it a few rows ahead, so the misses overlap with the copies;
/// the triplet reader, for hash-table slots a few lines ahead.
#[inline(always)]
pub fn prefetch<T>(row: &[T]) {
    prefetch_with::<T, 3>(row);
}

/// [`prefetch`] into L2 only (the T1 hint): the request holds one of L2's miss slots rather
/// than one of L1's fewer ones, so more rows can be on their way at once.
#[inline(always)]
pub fn prefetch_l2<T>(row: &[T]) {
    prefetch_with::<T, 2>(row);
}

#[inline(always)]
fn prefetch_with<T, const HINT: i32>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::_mm_prefetch;
        let (bytes, start) = (std::mem::size_of_val(row), row.as_ptr().cast::<i8>());
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults or writes; the address is inside `row`.
            unsafe { _mm_prefetch::<HINT>(start.wrapping_add(offset)) };
        }
        if bytes > 0 {
            // The last line, when the row does not start on a line boundary.
            // SAFETY: as above.
            unsafe { _mm_prefetch::<HINT>(start.wrapping_add(bytes - 1)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Checks an [`sgemm`]'s operands against its shapes (panicking on a caller's bug) and
/// handles the empty products; true when there is a product left to compute.
#[allow(clippy::too_many_arguments)]
fn sgemm_operands(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
) -> bool {
    if m == 0 || n == 0 {
        return false;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return false;
    }
    let last = |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, k, sa) < a.len() && last(k, n, sb) < b.len() && m * n <= c.len(),
        "sgemm operand too short (a bug in the caller's shapes)"
    );
    true
}

/// C (m x n, row-major) = A (m x k) * B (k x n), A and B given by (row, column) strides in
/// elements; the one place that calls into matrixmultiply.
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], sa: (usize, usize), b: &[f32], sb: (usize, usize), c: &mut [f32]) {
    if !sgemm_operands(m, k, n, a, sa, b, sb, c) {
        return;
    }
    // SAFETY: `sgemm_operands` checked that every strided access lies inside the slices.
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

/// [`sgemm`] by the gemm crate on the calling thread, for operands whose right-hand side has
/// contiguous rows (it packs a column-strided B slowly: see `nn::ops`). On the WMF's shapes
/// (Gram of 4,096 x 100 rows, 256 x 100 by 100 x 100) it ran 98 against matrixmultiply's 82
/// GFLOP/s on one core; the sums' order differs, so results change in their last bits.
#[allow(clippy::too_many_arguments)]
fn sgemm_single(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
) {
    if !sgemm_operands(m, k, n, a, sa, b, sb, c) {
        return;
    }
    // SAFETY: `sgemm_operands` checked that every strided access lies inside the slices; C is
    // written only (read_dst false), m x n row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            sa.1 as isize,
            sa.0 as isize,
            b.as_ptr(),
            sb.1 as isize,
            sb.0 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
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

    /// A [`dot4`] implementation.
    type Four = dyn Fn(&[f32], [&[f32]; 4]) -> [f32; 4];

    /// The portable loops that [`dot_axpy_rows`] and [`dot4`] replace.
    fn portable(dim: usize, rows: &[f32], c: &[f32], v: &[f32], weight: RowWeight) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0.5f32; dim];
        let mut dots = Vec::new();
        for (yt, &ct) in rows.chunks_exact(dim).zip(c) {
            dots.push(dot(v, yt));
            if let Some(w) = weight.of(ct, dot(yt, v)) {
                axpy(w, yt, &mut out);
            }
        }
        (out, dots)
    }

    #[test]
    fn simd_row_kernels_give_the_portable_bits() {
        for dim in (1..=40).chain([63, 64, 100, 129]) {
            let n = 11; // two groups of four rows and three on their own
            let rows: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
            let c: Vec<f32> = (0..n)
                .map(|t| if t == 3 { 1.0 } else { 1.0 + t as f32 * 0.7 })
                .collect();
            let v: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let offsets: Vec<usize> = (0..n).map(|t| ((t * 3) % n) * dim).collect();
            // v against the rows at `offsets`, four at a time (the last group padded).
            let by_fours = |dots: &mut [f32], four: &Four| {
                let row = |t: usize| &rows[offsets[t.min(n - 1)]..][..dim];
                for t in (0..n).step_by(4) {
                    let d = four(&v, [row(t), row(t + 1), row(t + 2), row(t + 3)]);
                    for (k, dk) in d.into_iter().enumerate().take(n - t) {
                        dots[t + k] = dk;
                    }
                }
            };
            for weight in [RowWeight::Residual, RowWeight::Step] {
                let (want_out, mut want_dots) = portable(dim, &rows, &c, &v, weight);
                want_dots = offsets.iter().map(|&o| want_dots[o / dim]).collect();
                let mut got: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
                let (mut out, mut dots) = (vec![0.5f32; dim], vec![0f32; n]);
                dot_axpy_rows(&rows, &c, &v, &mut out, weight);
                by_fours(&mut dots, &dot4);
                got.push((out, dots));
                // Every path this CPU has, not only the one dispatched to.
                #[cfg(target_arch = "x86_64")]
                {
                    if x86::has_avx512() {
                        let (mut out, mut dots) = (vec![0.5f32; dim], vec![0f32; n]);
                        // SAFETY: the CPU has the features.
                        unsafe {
                            x86::dot_axpy_rows_avx512(&rows, &c, &v, &mut out, weight);
                            by_fours(&mut dots, &|a, bs| x86::dot512x4(a, bs));
                        }
                        got.push((out, dots));
                    }
                    if x86::has_avx2() {
                        let (mut out, mut dots) = (vec![0.5f32; dim], vec![0f32; n]);
                        // SAFETY: the CPU has the features.
                        unsafe {
                            x86::dot_axpy_rows_avx2(&rows, &c, &v, &mut out, weight);
                            by_fours(&mut dots, &|a, bs| bs.map(|b| x86::dot256(a, b)));
                        }
                        got.push((out, dots));
                    }
                }
                for (out, dots) in got {
                    assert_eq!((&out, &dots), (&want_out, &want_dots), "dim {dim}, {weight:?}");
                }
            }
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
            (3, 18, 4),
            (6, 50, 11),
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
            // Nor on the tiles' widths, full or halved at the tail: the same bits.
            for tiled in [
                gemm_ab_small_tiled::<32, 16>,
                gemm_ab_small_tiled::<16, 8>,
                gemm_ab_small_tiled::<8, 4>,
            ] {
                let mut other = vec![f32::NAN; m * n];
                tiled(m, n, k, &a, &b, &mut other);
                assert_eq!(other, c, "m={m} n={n} k={k}");
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

    /// Every `R x C` shape of [`dot_tile`], on each path this CPU has: the portable bits, and
    /// within f32 rounding of the f64 products.
    #[test]
    fn dot_tiles_give_the_portable_bits() {
        fn check<const R: usize, const C: usize>(dim: usize) {
            let v = |seed: usize| -> Vec<f32> {
                (0..dim)
                    .map(|i| (((i + 1) * (seed * 7919 + 13)) % 1013) as f32 * 1e-3 - 0.5)
                    .collect()
            };
            let ys: Vec<Vec<f32>> = (0..R).map(v).collect();
            let zs: Vec<Vec<f32>> = (0..C).map(|c| v(c + 11)).collect();
            let yr: [&[f32]; R] = std::array::from_fn(|r| ys[r].as_slice());
            let zr: [&[f32]; C] = std::array::from_fn(|c| zs[c].as_slice());
            let want = dot_tile_portable(yr, zr);
            assert_eq!(dot_tile(yr, zr), want, "{R} x {C}, dim {dim}");
            #[cfg(target_arch = "x86_64")]
            if x86::has_avx512() {
                // SAFETY: the CPU has the features.
                assert_eq!(unsafe { x86::dot_tile512(yr, zr) }, want, "{R} x {C}, dim {dim}");
            }
            #[cfg(target_arch = "x86_64")]
            if x86::has_avx2() {
                // SAFETY: the CPU has the features.
                assert_eq!(unsafe { x86::dot_tile256(yr, zr) }, want, "{R} x {C}, dim {dim}");
            }
            for (r, row) in want.iter().enumerate() {
                for (c, &got) in row.iter().enumerate() {
                    let exact: f64 = ys[r].iter().zip(&zs[c]).map(|(a, b)| *a as f64 * *b as f64).sum();
                    assert!(
                        (got as f64 - exact).abs() <= 1e-5 * (1.0 + dim as f64),
                        "{R} x {C}, dim {dim}"
                    );
                }
            }
        }
        for dim in (1..=40).chain([63, 64, 100, 129]) {
            check::<1, 1>(dim);
            check::<1, 4>(dim);
            check::<2, 3>(dim);
            check::<3, 2>(dim);
            check::<4, 1>(dim);
            check::<4, 4>(dim);
        }
        // Signed zeros keep their sign through the padding, as in the portable sums.
        let (neg, pos) = ([-0.0f32; 5], [0.0f32; 5]);
        assert_eq!(
            dot_tile([&neg[..]], [&pos[..]]),
            dot_tile_portable([&neg[..]], [&pos[..]])
        );
    }
}
