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
//! The integer dots run on AVX-512 VNNI where the CPU has it (`vpdpbusd`: the rows are stored
//! interleaved, 16 rows to a 64-byte step of 4 codes each, so one instruction advances 16 rows
//! and no horizontal sum is needed), else on AVX2 over row-major codes, else portably: every
//! path gives the same integers, so the same result.
//!
//! A row left out has an f32 score below `T`, and `n` rows score at least `T`, so the result
//! is the exact scan's, scores bit for bit and ties broken the same way (higher score, then
//! lower id): the int8 copy only decides which rows need their f32 score, never the order.

use super::TopN;
use crate::kernels::dot;

/// Row-major rows are padded to a multiple of this many int8 codes (one 256-bit AVX2 step).
const PAD: usize = 16;
/// Rows of one interleaved VNNI group (one i32 lane each in a 512-bit register).
const GROUP: usize = 16;
/// Rows screened per block (a multiple of `GROUP`): the block's bounds live in small stack arrays.
const BLOCK: usize = 256;
/// Largest code magnitude (symmetric, so negation never overflows).
const QMAX: f64 = 127.0;

/// An int8 copy of row-major f32 rows (`k` per row) with what bounds its error.
#[derive(Clone, Debug)]
pub struct Screened {
    k: usize,
    kernel: Kernel,
    /// Codes per row as stored: `k` rounded up to 16 (row-major) or to 4 (interleaved).
    padded: usize,
    /// Portable and AVX2: row-major int8 codes, `padded` per row.
    codes: Vec<i8>,
    /// VNNI: groups of 16 rows; in a group, for each 4 codes of a row, 64 bytes that hold
    /// those 4 codes of each of the 16 rows, offset by 128 to u8 (missing rows and codes 128).
    packed: Vec<u8>,
    /// Per row: `s_i`, the code scale (`y_i ~ s_i q_i`).
    scale: Vec<f32>,
    /// Per row: an upper bound on `|<u, y_i - s_i q_i>| / |u|` plus the f32 rounding of the
    /// exact score (`gamma_k |y_i|`), so that `resid_i |u|` bounds both.
    resid: Vec<f32>,
    /// Per row: an upper bound on `|s_i q_i|`, which meets the query's own quantisation error.
    code_norm: Vec<f32>,
}

impl Default for Screened {
    fn default() -> Self {
        Screened::with_kernel(&[], 1, Kernel::Portable)
    }
}

/// `x` as f32, rounded up (f64 -> f32 rounds to nearest, which may be below `x`).
fn up(x: f64) -> f32 {
    let y = x as f32;
    if (y as f64) < x { y.next_up() } else { y }
}

impl Screened {
    /// The screen of `rows` (row-major, `k` per row; `k` > 0), for the fastest kernel the CPU
    /// runs.
    pub fn new(rows: &[f32], k: usize) -> Self {
        Screened::with_kernel(rows, k, Kernel::detect())
    }

    fn with_kernel(rows: &[f32], k: usize, kernel: Kernel) -> Self {
        let padded = if kernel.interleaved() {
            k.div_ceil(4) * 4
        } else {
            k.div_ceil(PAD) * PAD
        };
        let mut s = Screened {
            k,
            kernel,
            padded,
            codes: Vec::new(),
            packed: Vec::new(),
            scale: Vec::new(),
            resid: Vec::new(),
            code_norm: Vec::new(),
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

    /// Bytes of one interleaved group.
    fn group_bytes(&self) -> usize {
        self.padded / 4 * 64
    }

    /// Append rows (the catalogue's added songs), `k` values each.
    pub fn push_rows(&mut self, rows: &[f32]) {
        let k = self.k;
        // f32 rounding of the exact score `dot(u, y)`: 16 lane sums of k/16 terms, a fold of
        // 4 levels and a tail, each step within one rounding of 2^-24 relative; (k + 8) such
        // steps bound it, doubled for margin.
        let gamma = 2.0 * (k as f64 + 8.0) * f64::powi(2.0, -24);
        let interleaved = self.kernel.interleaved();
        let group_bytes = self.group_bytes();
        let mut q = vec![0i8; k];
        for row in rows.chunks_exact(k) {
            let amax = row.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
            let scale = if amax > 0.0 { up(amax / QMAX) } else { 0.0 };
            let (mut res, mut code, mut norm) = (0f64, 0f64, 0f64);
            for (c, &v) in q.iter_mut().zip(row) {
                let code_value = if scale > 0.0 {
                    (v as f64 / scale as f64).round().clamp(-QMAX, QMAX)
                } else {
                    0.0
                };
                *c = code_value as i8;
                let approx = code_value * scale as f64;
                res += (v as f64 - approx).powi(2);
                code += approx * approx;
                norm += (v as f64).powi(2);
            }
            if interleaved {
                let (group, lane) = (self.len() / GROUP, self.len() % GROUP);
                if lane == 0 {
                    self.packed.resize((group + 1) * group_bytes, 128);
                }
                let base = group * group_bytes + lane * 4;
                for (d, &c) in q.iter().enumerate() {
                    self.packed[base + d / 4 * 64 + d % 4] = (c as i16 + 128) as u8;
                }
            } else {
                let start = self.codes.len();
                self.codes.resize(start + self.padded, 0);
                self.codes[start..start + k].copy_from_slice(&q);
            }
            // The sums above are f64 over at most a few thousand terms: a relative 1e-12
            // covers their rounding.
            let slack = 1.0 + 1e-12;
            self.scale.push(scale);
            self.resid.push(up((res.sqrt() + gamma * norm.sqrt()) * slack));
            self.code_norm.push(up(code.sqrt() * slack));
        }
    }

    /// `out[i - lo] = <p, codes of row i>` for the rows `lo..hi` (`lo` a multiple of
    /// `GROUP`); `out` has room for `hi - lo` rounded up to a whole group.
    fn dots(&self, query: &QueryCodes, lo: usize, hi: usize, out: &mut [i32]) {
        let kp = self.padded;
        match self.kernel {
            Kernel::Portable => {
                for (o, row) in out.iter_mut().zip(self.codes[lo * kp..hi * kp].chunks_exact(kp)) {
                    *o = row.iter().zip(&query.wide).map(|(&q, &v)| q as i32 * v as i32).sum();
                }
            }
            // SAFETY: `detect` chose AVX2 only where the CPU reports it; every load stays
            // inside `wide` and its row (see the function).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { int_dots_avx2(&query.wide, &self.codes[lo * kp..hi * kp], kp, out) },
            // SAFETY: `detect` chose VNNI only where the CPU reports AVX-512 F and VNNI; the
            // groups are whole (`push_rows` pads the last) and `out` holds 16 per group.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe {
                let gb = self.group_bytes();
                let groups = (lo / GROUP)..hi.div_ceil(GROUP);
                let packed = &self.packed[groups.start * gb..groups.end * gb];
                int_dots_vnni(&query.words, packed, query.correction, &mut out[..groups.len() * GROUP])
            },
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
        let (p, (su, unorm, err)) = quantise_query(query, kp);
        let codes = QueryCodes::new(p);
        let kernel = self.kernel;

        let mut lower_best = TopN::new(n);
        let mut candidates: Vec<(u32, f32)> = Vec::new();
        let mut skip_at = 0usize;
        let mut dots = [0i32; BLOCK];
        let mut lower = [0f32; BLOCK];
        let mut upper = [0f32; BLOCK];
        for lo in (0..n_rows).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(n_rows);
            let width = hi - lo;
            self.dots(&codes, lo, hi, &mut dots);
            let block = Block {
                dots: &dots[..width],
                scale: &self.scale[lo..hi],
                resid: &self.resid[lo..hi],
                code_norm: &self.code_norm[lo..hi],
            };
            kernel.bounds(&block, (su, unorm, err), &mut lower[..width], &mut upper[..width]);
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
            kernel.candidates(&upper[..width], threshold, lo as u32, &mut candidates);
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

/// A query's int8 codes `p` (`kp` of them, zero-padded) and `(s_u, |u|, |u - s_u p|)`, the
/// norms rounded up.
fn quantise_query(query: &[f32], kp: usize) -> (Vec<i16>, (f64, f64, f64)) {
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
    (p, (su, unorm.sqrt() * slack, err.sqrt() * slack))
}

/// Queries scored together by one pass of [`Screened::select_many`] over a group of rows.
pub(super) const TILE: usize = 8;

/// Many queries' codes for [`Screened::select_many`] (VNNI screens only).
pub(super) struct QueryBatch {
    /// `chunks` words per query.
    words: Vec<i32>,
    chunks: usize,
    correction: Vec<i32>,
    /// Per query: `s_u`, `|u|` and `|u - s_u p|` as f32 (the norms rounded up).
    consts: Vec<[f32; 3]>,
}

impl Screened {
    /// Whether [`Screened::select_many`] runs on this screen: its integer dots for many
    /// queries at once pay only with VNNI, where one instruction multiplies 64 codes.
    pub(super) fn batches(&self) -> bool {
        self.kernel.interleaved()
    }

    /// Whether a screen built on this CPU would batch (see [`Screened::batches`]).
    pub(super) fn batches_here() -> bool {
        Kernel::detect().interleaved()
    }

    /// The codes of `queries` (row-major, `k` each) for [`Screened::select_many`].
    pub(super) fn quantise(&self, queries: &[f32]) -> QueryBatch {
        let chunks = self.padded / 4;
        let mut batch = QueryBatch {
            words: Vec::with_capacity(queries.len() / self.k * chunks),
            chunks,
            correction: Vec::new(),
            consts: Vec::new(),
        };
        for query in queries.chunks_exact(self.k) {
            let (p, (su, unorm, err)) = quantise_query(query, self.padded);
            let codes = QueryCodes::new(p);
            batch.words.extend_from_slice(&codes.words);
            batch.correction.push(codes.correction);
            batch.consts.push([su as f32, up(unorm), up(err)]);
        }
        batch
    }

    /// For the queries `q0..q0 + q` of `batch` (`q <= TILE`) and the rows `lo..hi` (`lo` a
    /// multiple of 16): [`super::select`] over each row's guaranteed bounds `lower <=
    /// dot(query, row) <= upper`, computed in f32 from the exact integer dots and never
    /// stored: a row enters `candidates[j]` (with its upper bound) when the upper bound
    /// reaches query `j`'s heap threshold, and `heaps[j]` with its lower bound when that does
    /// too; rows for which `excluded(j, row)` holds are left out. `dots` is scratch.
    ///
    /// The bound is [`Screened::top_n`]'s, with a margin of 1e-6 relative that covers the f32
    /// arithmetic's rounding (at most a few 2^-24) instead of f64's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select_many(
        &self,
        batch: &QueryBatch,
        q0: usize,
        (lo, hi): (usize, usize),
        dots: &mut Vec<i32>,
        heaps: &mut [TopN],
        candidates: &mut [Vec<(u32, f32)>],
        excluded: impl Fn(usize, u32) -> bool,
    ) {
        let q = heaps.len();
        debug_assert!(self.batches() && q <= TILE && candidates.len() == q && lo.is_multiple_of(GROUP));
        let width = hi - lo;
        let stride = width.div_ceil(GROUP) * GROUP;
        dots.resize(TILE * stride, 0);
        let gb = self.group_bytes();
        let packed = &self.packed[lo / GROUP * gb..hi.div_ceil(GROUP) * gb];
        let chunks = batch.chunks;
        let words = &batch.words[q0 * chunks..(q0 + q) * chunks];
        let correction = &batch.correction[q0..q0 + q];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `batches` holds only where `detect` found AVX-512 F and VNNI; the groups
        // are whole (`push_rows` pads the last) and `dots` holds `stride` per query.
        unsafe {
            if q == TILE {
                int_dots_vnni_tile::<TILE>(words, correction, packed, dots, stride)
            } else {
                for j in 0..q {
                    let out = &mut dots[j * stride..(j + 1) * stride];
                    int_dots_vnni_tile::<1>(
                        &words[j * chunks..(j + 1) * chunks],
                        &correction[j..j + 1],
                        packed,
                        out,
                        stride,
                    )
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (words, correction, packed);
        for (j, (heap, out)) in heaps.iter_mut().zip(candidates.iter_mut()).enumerate() {
            let block = Block {
                dots: &dots[j * stride..j * stride + width],
                scale: &self.scale[lo..hi],
                resid: &self.resid[lo..hi],
                code_norm: &self.code_norm[lo..hi],
            };
            let excluded = |row: u32| excluded(j, row);
            let query = batch.consts[q0 + j];
            // SAFETY: as above, AVX-512 F is there.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                select_bounds_avx512(&block, query, lo as u32, heap, out, excluded)
            }
            #[cfg(not(target_arch = "x86_64"))]
            select_bounds(&block, query, lo as u32, heap, out, excluded, super::at_least);
        }
    }
}

/// [`Screened::select_many`] for one query over one block whose first row is `first`: per
/// 16 rows, `centre = d (s_i s_u)` and `radius = resid_i |u| + err code_norm_i` each take at
/// most three f32 roundings (2^-24 relative each), so a margin of 1e-6 of `|centre| + radius`
/// covers them and the subtraction's own rounding (1e-30 covers underflow); the upper bounds
/// are compared with the threshold 16 at a time, and only the rows that pass (few, once the
/// heap is full) are looked at. (Upper bounds alone in explicit registers, each passing row's
/// bounds computed again: 6% slower.)
#[inline(always)]
fn select_bounds(
    block: &Block<'_>,
    [su, unorm, err]: [f32; 3],
    first: u32,
    heap: &mut TopN,
    out: &mut Vec<(u32, f32)>,
    excluded: impl Fn(u32) -> bool,
    hits: impl Fn(&[f32], f32) -> u32,
) {
    let mut threshold = heap.threshold();
    // One group's bounds, over arrays of a fixed length so that it vectorises.
    let bounds = |d: &[i32; GROUP], s: &[f32; GROUP], r: &[f32; GROUP], c: &[f32; GROUP]| {
        let (mut centre, mut radius, mut upper) = ([0f32; GROUP], [0f32; GROUP], [0f32; GROUP]);
        for l in 0..GROUP {
            centre[l] = d[l] as f32 * (s[l] * su);
            radius[l] = r[l] * unorm + err * c[l];
            radius[l] += (centre[l].abs() + radius[l]) * 1e-6 + 1e-30;
            upper[l] = centre[l] + radius[l];
        }
        (centre, radius, upper)
    };
    let spans = block.dots.chunks(GROUP).zip(block.scale.chunks(GROUP));
    let consts = block.resid.chunks(GROUP).zip(block.code_norm.chunks(GROUP));
    for (g, ((d, s), (r, c))) in spans.zip(consts).enumerate() {
        let (centre, radius, upper) = match (d.try_into(), s.try_into(), r.try_into(), c.try_into()) {
            (Ok(d), Ok(s), Ok(r), Ok(c)) => bounds(d, s, r, c),
            _ => {
                // The block's last, partial group, zero-padded (the padding is not tested).
                let pad_i = |v: &[i32]| std::array::from_fn(|l| v.get(l).copied().unwrap_or(0));
                let pad = |v: &[f32]| std::array::from_fn(|l| v.get(l).copied().unwrap_or(0.0));
                bounds(&pad_i(d), &pad(s), &pad(r), &pad(c))
            }
        };
        let mut m = hits(&upper[..d.len()], threshold);
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            let id = first + (g * GROUP + l) as u32;
            if excluded(id) {
                continue;
            }
            out.push((id, upper[l]));
            let lower = centre[l] - radius[l];
            if lower >= threshold {
                heap.push(id, lower);
                threshold = heap.threshold();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn select_bounds_avx512(
    block: &Block<'_>,
    query: [f32; 3],
    first: u32,
    heap: &mut TopN,
    out: &mut Vec<(u32, f32)>,
    excluded: impl Fn(u32) -> bool,
) {
    use std::arch::x86_64::*;
    let hits = |upper: &[f32], t: f32| {
        if upper.len() == GROUP {
            // SAFETY: 16 floats are read from a span of 16; AVX-512 F is enabled here.
            // Ordered compare: NaN fails, as `>=` does.
            unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(upper.as_ptr()), _mm512_set1_ps(t)) as u32 }
        } else {
            super::at_least(upper, t)
        }
    };
    select_bounds(block, query, first, heap, out, excluded, hits)
}

/// The SIMD level a screen runs at, detected once (std caches the CPUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 with VNNI over interleaved codes.
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                return Kernel::Vnni;
            }
            if is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    fn interleaved(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self == Kernel::Vnni
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every row's guaranteed interval around its f32 score; `query` is `(s_u, |u|, |u - s_u p|)`.
    fn bounds(self, block: &Block<'_>, query: (f64, f64, f64), lower: &mut [f32], upper: &mut [f32]) {
        match self {
            Kernel::Portable => bounds(block, query, lower, upper),
            // SAFETY: `detect` chose these only where the CPU reports AVX2 (which every
            // AVX-512 CPU has); the body is the portable code, compiled for AVX2.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Vnni => unsafe { bounds_avx2(block, query, lower, upper) },
        }
    }

    /// Push `(first + j, upper[j])` for every row whose upper bound reaches `threshold`.
    fn candidates(self, upper: &[f32], threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) {
        match self {
            Kernel::Portable => candidates(upper, threshold, first, out),
            // SAFETY: as in `bounds`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Vnni => unsafe { candidates_avx2(upper, threshold, first, out) },
        }
    }
}

/// One block's integer dots and per-row constants.
struct Block<'a> {
    dots: &'a [i32],
    scale: &'a [f32],
    resid: &'a [f32],
    code_norm: &'a [f32],
}

#[inline(always)]
fn bounds(block: &Block<'_>, (su, unorm, err): (f64, f64, f64), lower: &mut [f32], upper: &mut [f32]) {
    // Zipped slices of one length: no bounds checks, so the loop vectorises.
    let rows = block
        .dots
        .iter()
        .zip(block.scale)
        .zip(block.resid.iter().zip(block.code_norm));
    for ((l, u), ((&d, &s), (&r, &c))) in lower.iter_mut().zip(upper.iter_mut()).zip(rows) {
        let centre = d as f64 * (s as f64 * su);
        let radius = r as f64 * unorm + err * c as f64;
        // Outward by more than f64 -> f32 rounding (2^-24 relative), and by the f64
        // products' own rounding.
        let margin = (centre.abs() + radius) * 1e-6 + 1e-30;
        *l = (centre - radius - margin) as f32;
        *u = (centre + radius + margin) as f32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bounds_avx2(block: &Block<'_>, query: (f64, f64, f64), lower: &mut [f32], upper: &mut [f32]) {
    // The same operations in the same order (Rust never contracts to FMA): the same bits.
    bounds(block, query, lower, upper)
}

#[inline(always)]
fn candidates(upper: &[f32], threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) {
    // Almost every row fails: test 16 at a time without branches (vectorises) and visit only
    // the rows that pass.
    const SPAN: usize = 16;
    for (g, span) in upper.chunks(SPAN).enumerate() {
        let mut hits = super::at_least(span, threshold);
        while hits != 0 {
            let j = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            if span[j] > f32::NEG_INFINITY {
                out.push((first + (g * SPAN + j) as u32, span[j]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn candidates_avx2(upper: &[f32], threshold: f32, first: u32, out: &mut Vec<(u32, f32)>) {
    candidates(upper, threshold, first, out)
}

/// The query's int8 codes in the forms the kernels multiply: widened to i16 (portable,
/// AVX2), and as one i32 word per 4 codes with the correction `128 sum(p)` that undoes the
/// rows' offset (VNNI: `<q + 128, p> - 128 sum(p) = <q, p>`).
struct QueryCodes {
    wide: Vec<i16>,
    words: Vec<i32>,
    correction: i32,
}

impl QueryCodes {
    fn new(p: Vec<i16>) -> Self {
        let words = p
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                for (b, &v) in b.iter_mut().zip(c) {
                    *b = v as i8 as u8;
                }
                i32::from_le_bytes(b)
            })
            .collect();
        let correction = 128 * p.iter().map(|&v| v as i32).sum::<i32>();
        QueryCodes {
            wide: p,
            words,
            correction,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int_dots_avx2(p: &[i16], codes: &[i8], kp: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    debug_assert!(kp.is_multiple_of(PAD) && p.len() == kp);
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

/// 16 rows a group: for each 4 codes, one `vpdpbusd` multiplies those codes of all 16 rows
/// (u8, offset by 128) by the query's 4 (i8, broadcast) and adds them into each row's i32
/// lane; exact (at most 255 * 127 per product). `out` holds 16 per group of `packed`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn int_dots_vnni(words: &[i32], packed: &[u8], correction: i32, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let chunks = words.len();
    debug_assert_eq!(packed.len() / (chunks * 64) * GROUP, out.len());
    for (group, o) in packed.chunks_exact(chunks * 64).zip(out.chunks_exact_mut(GROUP)) {
        // SAFETY: `group` holds `chunks` 64-byte steps, and `o` 16 i32 lanes.
        unsafe {
            let at = |c: usize| _mm512_loadu_si512(group.as_ptr().add(64 * c) as *const _);
            // Four accumulators, so the adds do not wait on each other's latency.
            let mut acc = [_mm512_setzero_si512(); 4];
            let mut c = 0;
            while c + 4 <= chunks {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_dpbusd_epi32(*a, at(c + j), _mm512_set1_epi32(words[c + j]));
                }
                c += 4;
            }
            while c < chunks {
                acc[0] = _mm512_dpbusd_epi32(acc[0], at(c), _mm512_set1_epi32(words[c]));
                c += 1;
            }
            let sum = _mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3]));
            let dots = _mm512_sub_epi32(sum, _mm512_set1_epi32(correction));
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, dots);
        }
    }
}

/// [`int_dots_vnni`] for `Q` queries at once: each 64-byte step of a group is loaded once
/// and multiplied by every query's 4 codes, `Q` independent accumulators. `words` holds
/// `chunks` words per query; query `j`'s 16 dots of group `g` go to `out[j * stride + 16 g..]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn int_dots_vnni_tile<const Q: usize>(
    words: &[i32],
    correction: &[i32],
    packed: &[u8],
    out: &mut [i32],
    stride: usize,
) {
    use std::arch::x86_64::*;
    let chunks = words.len() / Q;
    debug_assert!(correction.len() == Q && out.len() >= (Q - 1) * stride + packed.len() / (chunks * 64) * GROUP);
    for (g, group) in packed.chunks_exact(chunks * 64).enumerate() {
        // SAFETY: `group` holds `chunks` 64-byte steps, `words` `chunks` per query, and
        // `out` 16 lanes at `j * stride + 16 g` for each query `j` (the assertion above).
        unsafe {
            let mut acc = [_mm512_setzero_si512(); Q];
            for c in 0..chunks {
                let v = _mm512_loadu_si512(group.as_ptr().add(64 * c) as *const _);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_dpbusd_epi32(*a, v, _mm512_set1_epi32(*words.get_unchecked(j * chunks + c)));
                }
            }
            for (j, a) in acc.iter().enumerate() {
                let dots = _mm512_sub_epi32(*a, _mm512_set1_epi32(correction[j]));
                _mm512_storeu_si512(out.as_mut_ptr().add(j * stride + g * GROUP) as *mut _, dots);
            }
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

    /// Every kernel this CPU runs, the portable one first.
    fn kernels() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
            if Kernel::detect() == Kernel::Vnni {
                all.push(Kernel::Vnni);
            }
        }
        all
    }

    #[test]
    fn every_simd_path_equals_the_portable_one() {
        for k in [100, 7, 64, 130] {
            let items = rows(300, k, 8);
            let screens: Vec<Screened> = kernels()
                .into_iter()
                .map(|kn| Screened::with_kernel(&items, k, kn))
                .collect();
            let portable = &screens[0];
            let kp = portable.padded;
            let p: Vec<i16> = (0..kp as i16)
                .map(|i| if (i as usize) < k { (i * 37 % 255) - 127 } else { 0 })
                .collect();
            let reference: Vec<i32> = portable
                .codes
                .chunks_exact(kp)
                .map(|row| row.iter().zip(&p).map(|(&q, &v)| q as i32 * v as i32).sum())
                .collect();
            let query = rows(1, k, 77);
            for screen in &screens {
                let mut wide = p[..k].to_vec();
                wide.resize(screen.padded, 0);
                let codes = QueryCodes::new(wide);
                let mut out = vec![0i32; 320];
                for lo in (0..300).step_by(BLOCK) {
                    let hi = (lo + BLOCK).min(300);
                    screen.dots(&codes, lo, hi, &mut out[lo..]);
                }
                assert_eq!(out[..300], reference[..], "{:?}, k = {k}", screen.kernel);
                assert_eq!(
                    screen.top_n(&query, &items, 10, &[3, 9]),
                    exact(&query, &items, k, 10, &[3, 9])
                );
            }
        }
        // The bounds and the candidate selection: the same bits on every path.
        let dots: Vec<i32> = (0..200).map(|i| (i * 7919 % 40000) - 20000).collect();
        let scale: Vec<f32> = (0..200).map(|i| 1e-3 * (1.0 + i as f32 / 50.0)).collect();
        let resid: Vec<f32> = (0..200).map(|i| 1e-4 * (i % 13) as f32).collect();
        let block = Block {
            dots: &dots,
            scale: &scale,
            resid: &resid,
            code_norm: &scale,
        };
        let run = |kernel: Kernel| {
            let (mut lower, mut upper) = (vec![0f32; 200], vec![0f32; 200]);
            kernel.bounds(&block, (0.01, 1.3, 0.002), &mut lower, &mut upper);
            let mut picked = Vec::new();
            kernel.candidates(&upper, 0.05, 1000, &mut picked);
            (lower, upper, picked)
        };
        let slow = run(Kernel::Portable);
        assert!(!slow.2.is_empty() && slow.2.len() < 200);
        for kernel in kernels() {
            assert_eq!(run(kernel), slow);
        }
    }

    #[test]
    fn rows_added_one_by_one_fill_the_interleaved_groups() {
        let k = 10;
        let items = rows(70, k, 2);
        for kernel in kernels() {
            let mut screen = Screened::with_kernel(&items[..5 * k], k, kernel);
            for row in items[5 * k..].chunks_exact(k) {
                screen.push_rows(row);
            }
            let query = rows(1, k, 3);
            assert_eq!(screen.top_n(&query, &items, 70, &[]), exact(&query, &items, k, 70, &[]));
        }
    }
}
