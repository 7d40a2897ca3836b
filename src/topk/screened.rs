//! Exact Top-N of one query over many rows, screened by an int8 copy of the rows.
//!
//! One query against 50,000 f32 song vectors of 100 factors streams 20 MB from memory, and
//! that bandwidth, not arithmetic, is what a served recommendation costs (issue 12). This
//! keeps beside the f32 rows a copy quantised to int8 with one scale per row (a quarter of the
//! bytes) and answers in two passes:
//!
//! 1. The int8 pass: the query is quantised too, every row's inner product is computed in
//!    exact integer arithmetic, and with it a guaranteed interval `[lower, upper]` around the
//!    row's f32 score (see [`Screened::top_n`] for the bound). The `n`-th best lower bound `T`
//!    is tracked, and only the rows whose upper bound reaches `T` are kept as candidates.
//! 2. The f32 pass: the candidates are scored with the same [`dot`] as the exact scan
//!    ([`crate::kernels::gemv_rows`]), and the best `n` of them returned.
//!
//! A row left out has an f32 score below `T`, and `n` rows score at least `T`, so the result
//! is the exact scan's, scores bit for bit and ties broken the same way (higher score, then
//! lower id): the int8 copy only decides which rows need their f32 score, never the order.

use super::TopN;
use crate::kernels::dot;

/// Rows are padded to a multiple of this many int8 codes (one 256-bit step of 16 lanes).
const PAD: usize = 16;
/// Rows screened per block: the block's bounds live in two small stack arrays.
const BLOCK: usize = 256;
/// Largest code magnitude (symmetric, so negation never overflows).
const QMAX: f64 = 127.0;

/// An int8 copy of row-major f32 rows (`k` per row) with what bounds its error.
#[derive(Clone, Debug, Default)]
pub struct Screened {
    k: usize,
    padded: usize,
    codes: Vec<i8>,
    /// Per row: `s_i`, the code scale (`y_i ~ s_i q_i`).
    scale: Vec<f32>,
    /// Per row: an upper bound on `|<u, y_i - s_i q_i>| / |u|` plus the f32 rounding of the
    /// exact score (`gamma_k |y_i|`), so that `resid_i |u|` bounds both.
    resid: Vec<f32>,
    /// Per row: an upper bound on `|s_i q_i|`, which meets the query's own quantisation error.
    code_norm: Vec<f32>,
}

/// `x` as f32, rounded up (f64 -> f32 rounds to nearest, which may be below `x`).
fn up(x: f64) -> f32 {
    let y = x as f32;
    if (y as f64) < x { y.next_up() } else { y }
}

impl Screened {
    /// The screen of `rows` (row-major, `k` per row; `k` > 0).
    pub fn new(rows: &[f32], k: usize) -> Self {
        let mut s = Screened {
            k,
            padded: k.div_ceil(PAD) * PAD,
            ..Default::default()
        };
        s.push_rows(rows);
        s
    }

    pub fn len(&self) -> usize {
        self.scale.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Append rows (the catalogue's added songs), `k` values each.
    pub fn push_rows(&mut self, rows: &[f32]) {
        let k = self.k;
        // f32 rounding of the exact score `dot(u, y)`: 16 lane sums of k/16 terms, a fold of
        // 4 levels and a tail, each step within one rounding of 2^-24 relative; (k + 8) such
        // steps bound it, doubled for margin.
        let gamma = 2.0 * (k as f64 + 8.0) * f64::powi(2.0, -24);
        for row in rows.chunks_exact(k) {
            let amax = row.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
            let scale = if amax > 0.0 { up(amax / QMAX) } else { 0.0 };
            let (mut res, mut code, mut norm) = (0f64, 0f64, 0f64);
            let start = self.codes.len();
            self.codes.resize(start + self.padded, 0);
            for (c, &v) in self.codes[start..start + k].iter_mut().zip(row) {
                let q = if scale > 0.0 {
                    (v as f64 / scale as f64).round().clamp(-QMAX, QMAX)
                } else {
                    0.0
                };
                *c = q as i8;
                let approx = q * scale as f64;
                res += (v as f64 - approx).powi(2);
                code += approx * approx;
                norm += (v as f64).powi(2);
            }
            // The sums above are f64 over at most a few thousand terms: a relative 1e-12
            // covers their rounding.
            let slack = 1.0 + 1e-12;
            self.scale.push(scale);
            self.resid.push(up((res.sqrt() + gamma * norm.sqrt()) * slack));
            self.code_norm.push(up(code.sqrt() * slack));
        }
    }

    /// The best `n` rows of `rows` (the f32 rows this screen was built from) for `query`,
    /// best first, leaving out the row ids in `skip` (sorted); the same (id, score) list as
    /// scanning every row with [`dot`] and [`TopN`].
    ///
    /// The bound: with the query `u ~ s_u p` (int8 codes `p`) and row `y_i ~ s_i q_i`,
    /// `<u, y_i> = s_u s_i <p, q_i> + <u, y_i - s_i q_i> + <u - s_u p, s_i q_i>`, so
    /// `|dot(u, y_i) - s_u s_i <p, q_i>| <= resid_i |u| + |u - s_u p| code_norm_i`, where
    /// `resid_i` also holds the rounding of the f32 `dot`, and `<p, q_i>` is exact in i32.
    pub fn top_n(&self, query: &[f32], rows: &[f32], n: usize, skip: &[i32]) -> Vec<(u32, f32)> {
        let (k, kp) = (self.k, self.padded);
        debug_assert_eq!(query.len(), k);
        debug_assert_eq!(rows.len(), self.len() * k);
        let n_rows = self.len();
        if n == 0 || n_rows == 0 {
            return Vec::new();
        }
        // The query's codes, widened to i16 for the multiply-add, and its error.
        let qmax = query.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        let su = if qmax > 0.0 { qmax / QMAX } else { 0.0 };
        let mut p = vec![0i16; kp];
        let (mut err, mut unorm) = (0f64, 0f64);
        for (c, &v) in p.iter_mut().zip(query) {
            let q = if su > 0.0 {
                (v as f64 / su).round().clamp(-QMAX, QMAX)
            } else {
                0.0
            };
            *c = q as i16;
            err += (v as f64 - q * su).powi(2);
            unorm += (v as f64).powi(2);
        }
        let slack = 1.0 + 1e-12;
        let (err, unorm) = (err.sqrt() * slack, unorm.sqrt() * slack);

        let mut lower_best = TopN::new(n);
        let mut candidates: Vec<(u32, f32)> = Vec::new();
        let mut skip_at = 0usize;
        let mut dots = [0i32; BLOCK];
        let mut lower = [0f32; BLOCK];
        let mut upper = [0f32; BLOCK];
        for lo in (0..n_rows).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(n_rows);
            let width = hi - lo;
            int_dots(&p, &self.codes[lo * kp..hi * kp], kp, &mut dots[..width]);
            let (scale, resid, code_norm) = (&self.scale[lo..hi], &self.resid[lo..hi], &self.code_norm[lo..hi]);
            // Zipped slices of one length: no bounds checks, so the loop vectorises.
            let bounds = lower[..width].iter_mut().zip(&mut upper[..width]);
            for ((((l, u), &d), &s), (&r, &c)) in bounds.zip(&dots[..width]).zip(scale).zip(resid.iter().zip(code_norm))
            {
                let centre = d as f64 * (s as f64 * su);
                let radius = r as f64 * unorm + err * c as f64;
                // Outward by more than f64 -> f32 rounding (2^-24 relative), and by the f64
                // products' own rounding.
                let margin = (centre.abs() + radius) * 1e-6 + 1e-30;
                *l = (centre - radius - margin) as f32;
                *u = (centre + radius + margin) as f32;
            }
            while skip_at < skip.len() && (skip[skip_at] as usize) < hi {
                let s = skip[skip_at] as usize;
                if s >= lo {
                    lower[s - lo] = f32::NEG_INFINITY;
                    upper[s - lo] = f32::NEG_INFINITY;
                }
                skip_at += 1;
            }
            lower_best.scan(&lower[..width], lo as u32);
            let threshold = lower_best.threshold();
            for (j, &u) in upper[..width].iter().enumerate() {
                if u >= threshold && u > f32::NEG_INFINITY {
                    candidates.push(((lo + j) as u32, u));
                }
            }
        }
        // Rows whose upper bound fell below the final threshold cannot be among the best.
        let threshold = lower_best.threshold();
        let mut best = TopN::new(n);
        for &(i, u) in &candidates {
            if u >= threshold {
                best.push(i, dot(query, &rows[i as usize * k..(i as usize + 1) * k]));
            }
        }
        best.into_sorted()
    }
}

/// `out[i] = <p, codes row i>` for rows of `kp` int8 codes (`kp` a multiple of 16).
fn int_dots(p: &[i16], codes: &[i8], kp: usize, out: &mut [i32]) {
    debug_assert!(kp.is_multiple_of(PAD) && p.len() == kp && codes.len() == out.len() * kp);
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: runs only where the CPU reports AVX2; the slices' lengths are checked
            // by the loop bounds below (every load stays inside `p` and its row).
            return unsafe { int_dots_avx2(p, codes, kp, out) };
        }
    }
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(kp)) {
        *o = row.iter().zip(p).map(|(&q, &v)| q as i32 * v as i32).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_dots_avx2(p: &[i16], codes: &[i8], kp: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let steps = kp / PAD;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(kp)) {
        // SAFETY: `row` holds `kp` = 16 * steps codes and `p` holds `kp` values, so each
        // 16-byte load of `row` and 32-byte load of `p` at step s < steps is in bounds.
        unsafe {
            let mut acc = _mm256_setzero_si256();
            for s in 0..steps {
                let q = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.as_ptr().add(PAD * s) as *const __m128i));
                let v = _mm256_loadu_si256(p.as_ptr().add(PAD * s) as *const __m256i);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(q, v));
            }
            let half = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
            let quarter = _mm_add_epi32(half, _mm_shuffle_epi32::<0b01_00_11_10>(half));
            let one = _mm_add_epi32(quarter, _mm_shuffle_epi32::<0b10_11_00_01>(quarter));
            *o = _mm_cvtsi128_si32(one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(query: &[f32], rows: &[f32], k: usize, n: usize, skip: &[i32]) -> Vec<(u32, f32)> {
        let mut best = TopN::new(n);
        for (i, row) in rows.chunks_exact(k).enumerate() {
            if skip.binary_search(&(i as i32)).is_err() {
                best.push(i as u32, dot(query, row));
            }
        }
        best.into_sorted()
    }

    fn rows(n: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n * k)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3
            })
            .collect()
    }

    #[test]
    fn equals_the_exact_scan_bit_for_bit() {
        for &(n_rows, k, n) in &[
            (3000, 100, 10),
            (1000, 7, 50),
            (513, 33, 1),
            (20, 16, 30),
            (5000, 64, 100),
        ] {
            let items = rows(n_rows, k, n_rows as u64);
            let screen = Screened::new(&items, k);
            for q in 0..5 {
                let query = rows(1, k, 1000 + q);
                let skip: Vec<i32> = (0..n_rows as i32).filter(|i| i % (7 + q as i32) == 3).collect();
                assert_eq!(
                    screen.top_n(&query, &items, n, &skip),
                    exact(&query, &items, k, n, &skip)
                );
                assert_eq!(screen.top_n(&query, &items, n, &[]), exact(&query, &items, k, n, &[]));
            }
        }
    }

    #[test]
    fn ties_zero_rows_and_added_rows_rank_as_the_exact_scan() {
        let k = 24;
        let mut items = rows(400, k, 5);
        // Duplicated rows tie exactly; zero rows and a zero query score 0.
        let copy: Vec<f32> = items[..10 * k].to_vec();
        items.extend_from_slice(&copy);
        items.extend(std::iter::repeat_n(0.0, 5 * k));
        let mut screen = Screened::new(&items[..300 * k], k);
        screen.push_rows(&items[300 * k..]);
        assert_eq!(screen.len(), 415);
        for query in [rows(1, k, 9), items[3 * k..4 * k].to_vec(), vec![0.0; k]] {
            for n in [1, 5, 12, 415, 1000] {
                assert_eq!(screen.top_n(&query, &items, n, &[]), exact(&query, &items, k, n, &[]));
            }
        }
    }

    #[test]
    fn large_and_tiny_magnitudes_keep_the_bound() {
        let k = 50;
        for scale in [1e-20f32, 1e-6, 1.0, 1e6, 1e15] {
            let items: Vec<f32> = rows(2000, k, 3).iter().map(|v| v * scale).collect();
            let screen = Screened::new(&items, k);
            let query: Vec<f32> = rows(1, k, 4).iter().map(|v| v * scale).collect();
            assert_eq!(screen.top_n(&query, &items, 10, &[]), exact(&query, &items, k, 10, &[]));
        }
    }

    #[test]
    fn the_portable_path_equals_avx2() {
        let k = 100;
        let screen = Screened::new(&rows(300, k, 8), k);
        let p: Vec<i16> = (0..screen.padded as i16).map(|i| (i * 37 % 255) - 127).collect();
        let mut fast = vec![0i32; 300];
        int_dots(&p, &screen.codes, screen.padded, &mut fast);
        let slow: Vec<i32> = screen
            .codes
            .chunks_exact(screen.padded)
            .map(|row| row.iter().zip(&p).map(|(&q, &v)| q as i32 * v as i32).sum())
            .collect();
        assert_eq!(fast, slow);
    }
}
