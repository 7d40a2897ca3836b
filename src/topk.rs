//! Top-N selection by inner product: recommend, similar items and the ranking metrics all go
//! through here. Scores are computed block by block with a GEMM (queries x item chunk) and
//! scanned against a bounded min-heap, so memory stays at one chunk per thread.

mod screened;
pub use screened::Screened;
use screened::TILE;

use crate::ensure;
use crate::error::Result;
use crate::kernels::{dot, dot4, gemm_ab_strided, gemm_abt, gemv_rows, transpose};
use crate::sparse::CsrRef;
use rayon::prelude::*;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Queries scored together in one GEMM.
const QUERY_BLOCK: usize = 256;
/// Items scored together; 256 x 1024 f32 scores is 1 MiB, cache-friendly per thread.
const ITEM_CHUNK: usize = 1024;

/// A (score, id) pair ordered so that greater = better: higher score, then lower id.
/// The tie-break makes selections independent of scan and merge order (determinism).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ranked {
    score: f32,
    id: u32,
}

impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.id.cmp(&self.id))
    }
}

/// The best `n` (id, score) pairs seen so far.
#[derive(Clone, Debug)]
pub struct TopN {
    n: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
    /// No score below this enters, and the threshold is never below it.
    floor: f32,
}

impl TopN {
    pub fn new(n: usize) -> Self {
        // The heap grows as needed: an absurd `n` must not allocate up front.
        TopN::with_floor(n, f32::NEG_INFINITY)
    }

    /// A selection that only keeps scores at or above `floor`: for a scan that knows
    /// beforehand a score its `n`-th best will reach (see `Sample`).
    pub fn with_floor(n: usize, floor: f32) -> Self {
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024) + 1),
            floor,
        }
    }

    #[inline]
    pub fn push(&mut self, id: u32, score: f32) {
        if score < self.floor {
            return;
        }
        let cand = Ranked { score, id };
        if self.heap.len() < self.n {
            self.heap.push(Reverse(cand));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && cand > worst.0
        {
            // One sift down where pop + push took two; the heap holds the same set.
            *worst = Reverse(cand);
        }
    }

    /// Lowest score that could still enter (the floor, NEG_INFINITY unless set, while not
    /// full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.n {
            self.floor
        } else {
            self.heap.peek().map_or(self.floor, |r| r.0.score.max(self.floor))
        }
    }

    /// Push every finite score of `scores` (item ids start at `first_id`); excluded items
    /// must already be set to NEG_INFINITY.
    #[inline]
    pub fn scan(&mut self, scores: &[f32], first_id: u32) {
        // The threshold only changes on a push, so the hot loop is one compare per score.
        let mut threshold = self.threshold();
        // Once the heap is full almost no score enters: test 16 at a time without branches
        // (vectorises) and only walk a group that holds a candidate.
        const GROUP: usize = 16;
        for (g, group) in scores.chunks(GROUP).enumerate() {
            let mut hits = at_least(group, threshold);
            while hits != 0 {
                let j = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                let s = group[j];
                // `>=` keeps ties for the heap's id tie-break; NEG_INFINITY never enters.
                if s >= threshold && s > f32::NEG_INFINITY {
                    self.push(first_id + (g * GROUP + j) as u32, s);
                    threshold = self.threshold();
                }
            }
        }
    }

    pub fn merge(mut self, other: TopN) -> TopN {
        for Reverse(r) in other.heap {
            self.push(r.id, r.score);
        }
        self
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|r| (r.id, r.score)).collect()
    }
}

/// Bit `j` set where `group[j] >= threshold` (`group` at most 32 long): one vector compare
/// where the caller is compiled for it, and the caller walks only the set bits.
#[inline(always)]
pub(crate) fn at_least(group: &[f32], threshold: f32) -> u32 {
    group
        .iter()
        .enumerate()
        .fold(0u32, |m, (j, &s)| m | (((s >= threshold) as u32) << j))
}

/// Each row of the row-major `values` (rows of `k`) scaled to unit length, zero rows left
/// zero: what cosine similarity ranks by inner product over (`WMF.similar_items`, the
/// serving catalogue's similar songs).
pub fn unit_rows(values: &[f32], k: usize) -> Vec<f32> {
    let mut out = values.to_vec();
    if k == 0 {
        return out;
    }
    for row in out.chunks_exact_mut(k) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// What to leave out of a query's ranking.
#[derive(Clone, Copy, Default)]
pub struct Exclusions<'a> {
    /// Row q lists (sorted) the items to skip for query q, e.g. what a user already played.
    pub per_query: Option<CsrRef<'a>>,
    /// Items (sorted) skipped for every query.
    pub global: &'a [i32],
}

/// Top-`n` items for each query by inner product, best first, as row-major
/// (n_queries x n) id and score arrays; rows with fewer than `n` eligible items are padded
/// with id -1 and score -inf; `n` is capped at the number of candidate items. `candidates`,
/// if given, restricts ranking to those item ids.
pub fn top_n(
    queries: &[f32],
    items: &[f32],
    dim: usize,
    n: usize,
    exclusions: Exclusions<'_>,
    candidates: Option<&[i32]>,
) -> Result<(Vec<i32>, Vec<f32>)> {
    ensure!(dim > 0, "factor dimension must be positive");
    ensure!(queries.len().is_multiple_of(dim), "queries do not have {dim} columns");
    ensure!(
        items.len().is_multiple_of(dim),
        "item factors do not have {dim} columns"
    );
    let n_queries = queries.len() / dim;
    let n_items = items.len() / dim;
    if let Some(ex) = exclusions.per_query {
        ensure!(
            ex.n_rows == n_queries,
            "exclusion matrix has {} rows for {} queries",
            ex.n_rows,
            n_queries
        );
        ensure!(
            ex.n_cols == n_items,
            "exclusion matrix has {} columns but there are {} items; is the matrix users x items?",
            ex.n_cols,
            n_items
        );
    }
    for &g in exclusions.global {
        ensure!(
            g >= 0 && (g as usize) < n_items,
            "filtered item id {g} out of range 0..{n_items}"
        );
    }
    ensure!(
        exclusions.global.windows(2).all(|w| w[0] < w[1]),
        "filtered item ids must be sorted and unique"
    );

    // With a candidate list, rank a gathered copy of those rows and map positions back.
    let gathered;
    let (pool, pool_ids): (&[f32], Option<&[i32]>) = match candidates {
        Some(ids) => {
            let mut buf = Vec::with_capacity(ids.len() * dim);
            for &id in ids {
                ensure!(
                    id >= 0 && (id as usize) < n_items,
                    "candidate item id {id} out of range 0..{n_items}"
                );
                buf.extend_from_slice(&items[id as usize * dim..(id as usize + 1) * dim]);
            }
            gathered = buf;
            (&gathered, Some(ids))
        }
        None => (items, None),
    };
    let pool_len = pool.len() / dim;
    // No row can hold more than every candidate.
    let n = n.min(pool_len.max(1));

    // A short list per query (the usual Top-10 of a recommendation or a metric) is chosen by
    // bounds and its scores computed by `dot`; a long one from the GEMM's scores directly.
    let pool = Pool {
        rows: pool,
        dim,
        ids: pool_ids,
    };
    let heaps = if n_queries == 1 || n.saturating_mul(BOUNDED_RATIO) > pool_len {
        scan_scores(queries, &pool, n, exclusions)
    } else {
        scan_bounds(queries, &pool, n, exclusions)
    };
    let mut ids = vec![-1i32; n_queries * n];
    let mut scores = vec![f32::NEG_INFINITY; n_queries * n];
    for (q, heap) in heaps.into_iter().enumerate() {
        for (j, (pos, s)) in heap.into_sorted().into_iter().enumerate() {
            ids[q * n + j] = pool.id(pos);
            scores[q * n + j] = s;
        }
    }
    Ok((ids, scores))
}

/// The rows a call ranks: the item factors, or a gathered copy of its candidates.
struct Pool<'a> {
    rows: &'a [f32],
    dim: usize,
    /// The item id of each row (None: row `i` is item `i`).
    ids: Option<&'a [i32]>,
}

impl Pool<'_> {
    fn len(&self) -> usize {
        self.rows.len() / self.dim
    }

    fn row(&self, pos: u32) -> &[f32] {
        &self.rows[pos as usize * self.dim..(pos as usize + 1) * self.dim]
    }

    fn id(&self, pos: u32) -> i32 {
        self.ids.map_or(pos as i32, |map| map[pos as usize])
    }
}

/// Each query's best `n` pool rows (positions), scanned from the GEMM's scores directly: a
/// long list per query, or a single query.
fn scan_scores(queries: &[f32], pool: &Pool<'_>, n: usize, exclusions: Exclusions<'_>) -> Vec<TopN> {
    let (dim, pool_len) = (pool.dim, pool.len());
    let n_queries = queries.len() / dim;
    // Many queries: score against Y^T (one transposed copy) so that the GEMM packs contiguous
    // runs; packing the strided B^T view cost twice the multiply itself (perf, issue 14).
    // Same kernel and summation order either way, so the scores are bit-identical.
    let pool_t = (n_queries > QUERY_BLOCK).then(|| transpose(pool_len, dim, pool.rows));
    let chunks: Vec<usize> = (0..pool_len).step_by(ITEM_CHUNK).collect();
    let blocks: Vec<usize> = (0..n_queries).step_by(QUERY_BLOCK).collect();
    blocks
        .par_iter()
        .flat_map_iter(|&qlo| {
            let qhi = (qlo + QUERY_BLOCK).min(n_queries);
            let rows = qhi - qlo;
            let q = &queries[qlo * dim..qhi * dim];
            let fresh = || (vec![TopN::new(n); rows], Vec::new());
            // fold: each rayon split scans its chunks in turn into one buffer and one heap
            // per row; only stolen splits are merged. TopN's total order makes the result
            // independent of how the chunks were split.
            let (heaps, _) = chunks
                .par_iter()
                .fold(fresh, |(mut heaps, mut scores): (Vec<TopN>, Vec<f32>), &ilo| {
                    let ihi = (ilo + ITEM_CHUNK).min(pool_len);
                    let width = ihi - ilo;
                    scores.resize(rows * width, 0.0);
                    let block = &mut scores[..rows * width];
                    match &pool_t {
                        Some(t) => gemm_ab_strided(rows, width, dim, q, &t[ilo..], pool_len, block),
                        None if n_queries == 1 => gemv_rows(q, &pool.rows[ilo * dim..ihi * dim], dim, block),
                        None => gemm_abt(rows, width, dim, q, &pool.rows[ilo * dim..ihi * dim], block),
                    }
                    for (r, heap) in heaps.iter_mut().enumerate() {
                        let row = &mut block[r * width..(r + 1) * width];
                        mask(row, ilo, pool.ids, exclusions, qlo + r);
                        heap.scan(row, ilo as u32);
                    }
                    (heaps, scores)
                })
                .reduce(fresh, |(a, s), (b, _)| {
                    (a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect(), s)
                });
            heaps
        })
        .collect()
}

/// Each query's best `n` pool rows (positions), chosen by bounds on their scores and scored
/// by `dot`: the exact scan's selection, bit for bit.
///
/// The pool is ranked in descending norm (see [`ByNorm`]), and the queries in blocks of like
/// need: `|<u, y>| <= |u| |y|`, so once a block's thresholds exceed what the norm of a chunk's
/// first row allows, that chunk and every later one are left out. The bounds come from an
/// int8 copy of the pool where the CPU has VNNI ([`Screened`]), else from an f32 GEMM widened
/// by its error bound.
fn scan_bounds(queries: &[f32], pool: &Pool<'_>, n: usize, exclusions: Exclusions<'_>) -> Vec<TopN> {
    let (dim, pool_len) = (pool.dim, pool.len());
    let n_queries = queries.len() / dim;
    let order = ByNorm::new(pool);
    let screen = (n_queries >= SCREEN_MIN_QUERIES && Screened::batches_here()).then(|| order.screen(pool));
    // Many queries: score against Y^T (one transposed copy, in the pool's norm order) so that
    // the GEMM packs contiguous runs; packing the strided B^T view cost twice the multiply
    // itself (perf, issue 14). Fewer: each chunk's rows are gathered as it is scored.
    let pool_t = (screen.is_none() && n_queries > QUERY_BLOCK).then(|| order.transposed(pool));
    let excluded = Excluded::new(&order, pool, exclusions, n_queries);
    let gamma = gemm_error(dim);
    let sample = Sample::new(&order, pool, n);
    let norms: Vec<f32> = queries.chunks_exact(dim).map(norm_up).collect();
    // Each query's floor, then the queries in descending floor / |u|: the norm a row needs to
    // reach the floor, so a block's queries leave out chunks together.
    let floors: Vec<f32> = (0..n_queries)
        .into_par_iter()
        .step_by(QUERY_BLOCK)
        .flat_map_iter(|lo| {
            let hi = (lo + QUERY_BLOCK).min(n_queries);
            sample.floors(&queries[lo * dim..hi * dim], n, |r, pos| excluded.at(lo + r, pos))
        })
        .collect();
    let need = |q: usize| {
        let need = floors[q] / norms[q];
        if need.is_nan() { f32::NEG_INFINITY } else { need }
    };
    let mut by_need: Vec<usize> = (0..n_queries).collect();
    by_need.sort_by(|&a, &b| need(b).total_cmp(&need(a)).then(a.cmp(&b)));
    let chunks: Vec<usize> = (0..pool_len).step_by(ITEM_CHUNK).collect();
    let blocks: Vec<&[usize]> = by_need.chunks(QUERY_BLOCK).collect();
    // With blocks enough for every thread, each block scans its chunks in order, so that its
    // thresholds have risen by the time the chunks of small norm come.
    let in_order = if blocks.len() >= 2 * rayon::current_num_threads() {
        chunks.len()
    } else {
        1
    };
    let per_block: Vec<Vec<TopN>> = blocks
        .par_iter()
        .map(|&block| {
            let rows = block.len();
            let q: Vec<f32> = block
                .iter()
                .flat_map(|&i| &queries[i * dim..(i + 1) * dim])
                .copied()
                .collect();
            let batch = screen.as_ref().map(|s| s.quantise(&q));
            // Per query: twice the GEMM's and `dot`'s error bound over |u| |y|.
            let radius: Vec<f32> = block.iter().map(|&i| up_f32(2.0 * gamma * norms[i] as f64)).collect();
            // No computed `dot(u, y)` exceeds `reach |y|` (|u| (1 + gamma), with as much again
            // to spare).
            let reach: Vec<f64> = block.iter().map(|&i| norms[i] as f64 * (1.0 + 2.0 * gamma)).collect();
            let block_floors: Vec<f32> = block.iter().map(|&i| floors[i]).collect();
            let fresh = || Scan::new(rows, n, &block_floors);
            // Whether a query of rows `range` may still rank a row of norm at most `top`.
            let open = |heaps: &[TopN], range: std::ops::Range<usize>, top: f32| {
                range
                    .into_iter()
                    .any(|r| reach[r] * top as f64 + 1e-37 >= heaps[r].threshold() as f64)
            };
            // fold: each rayon split scans its chunks in turn into one set of buffers and one
            // heap per row; only stolen splits are merged. TopN's total order and the final
            // filter by the last threshold make the result independent of how the chunks
            // were split, and of which were left out.
            let scan = chunks
                .par_iter()
                .with_min_len(in_order)
                .fold(fresh, |mut st: Scan, &ilo| {
                    let ihi = (ilo + ITEM_CHUNK).min(pool_len);
                    let width = ihi - ilo;
                    let top = order.norms[ilo];
                    if !open(&st.heaps, 0..rows, top) {
                        return st;
                    }
                    if let (Some(screen), Some(batch)) = (&screen, &batch) {
                        for t0 in (0..rows).step_by(TILE) {
                            let tile = t0..(t0 + TILE).min(rows);
                            if !open(&st.heaps, tile.clone(), top) {
                                continue;
                            }
                            screen.select_many(
                                batch,
                                t0,
                                (ilo, ihi),
                                &mut st.dots,
                                &mut st.heaps[tile.clone()],
                                &mut st.candidates[tile],
                                |j, pos| excluded.at(block[t0 + j], pos),
                            );
                        }
                        return st;
                    }
                    // Only the queries still open for this chunk are scored: the block's
                    // rows, or a gathered copy of those open.
                    st.open.clear();
                    st.open.extend((0..rows).filter(|&r| open(&st.heaps, r..r + 1, top)));
                    let m = st.open.len();
                    let qs = if m == rows {
                        &q[..]
                    } else {
                        st.queries.clear();
                        for &r in &st.open {
                            st.queries.extend_from_slice(&q[r * dim..(r + 1) * dim]);
                        }
                        &st.queries[..]
                    };
                    st.scores.resize(m * width, 0.0);
                    let scores = &mut st.scores[..m * width];
                    match &pool_t {
                        Some(t) => gemm_ab_strided(m, width, dim, qs, &t[ilo..], pool_len, scores),
                        None => {
                            order.gather(pool, ilo..ihi, &mut st.rows);
                            gemm_abt(m, width, dim, qs, &st.rows, scores)
                        }
                    }
                    let row_norms = &order.norms[ilo..ihi];
                    for (i, &r) in st.open.iter().enumerate() {
                        let scores = &mut scores[i * width..(i + 1) * width];
                        excluded.mask(block[r], scores, ilo);
                        let (heap, out) = (&mut st.heaps[r], &mut st.candidates[r]);
                        select_widened(heap, scores, row_norms, radius[r], ilo as u32, out);
                    }
                    st
                })
                .reduce(fresh, Scan::merge);
            // Every row of the true Top-n has an upper bound at or above the n-th best lower
            // bound: score those by `dot`, the exact scan's score.
            let thresholds: Vec<f32> = scan.heaps.iter().map(TopN::threshold).collect();
            rescore(&q, pool, &order.positions, scan.candidates, &thresholds, n)
        })
        .collect();
    let mut heaps = vec![TopN::new(0); n_queries];
    for (block, found) in blocks.iter().zip(per_block) {
        for (&q, heap) in block.iter().zip(found) {
            heaps[q] = heap;
        }
    }
    heaps
}

/// The bounded scorings apply while `n` is at most this fraction of the pool.
const BOUNDED_RATIO: usize = 16;
/// Queries from which quantising the pool to int8 pays for itself.
const SCREEN_MIN_QUERIES: usize = 64;

/// The pool's rows in descending norm (then ascending position), as [`scan_bounds`] ranks
/// them: rank `i` is pool row `positions[i]`, whose norm, rounded up, is `norms[i]`.
struct ByNorm {
    positions: Vec<u32>,
    norms: Vec<f32>,
}

impl ByNorm {
    fn new(pool: &Pool<'_>) -> ByNorm {
        // A row with a NaN (which never ranks) comes last: a chunk then starts with one only
        // if it holds nothing else, and is left out whole.
        let by_position: Vec<f32> = pool
            .rows
            .par_chunks_exact(pool.dim)
            .map(|y| {
                let norm = norm_up(y);
                if norm.is_nan() { f32::NEG_INFINITY } else { norm }
            })
            .collect();
        let mut positions: Vec<u32> = (0..pool.len() as u32).collect();
        positions.par_sort_unstable_by(|&a, &b| {
            by_position[b as usize]
                .total_cmp(&by_position[a as usize])
                .then(a.cmp(&b))
        });
        let norms = positions.iter().map(|&p| by_position[p as usize]).collect();
        ByNorm { positions, norms }
    }

    /// The rows of ranks `range`, gathered into `out` (resized).
    fn gather(&self, pool: &Pool<'_>, range: std::ops::Range<usize>, out: &mut Vec<f32>) {
        out.clear();
        for &p in &self.positions[range] {
            out.extend_from_slice(pool.row(p));
        }
    }

    /// The int8 screen of the rows in rank order.
    fn screen(&self, pool: &Pool<'_>) -> Screened {
        let mut screen = Screened::new(&[], pool.dim);
        let mut rows = Vec::new();
        for lo in (0..self.positions.len()).step_by(ITEM_CHUNK) {
            self.gather(pool, lo..(lo + ITEM_CHUNK).min(self.positions.len()), &mut rows);
            screen.push_rows(&rows);
        }
        screen
    }

    /// The rows in rank order, transposed (dim x len, row-major).
    fn transposed(&self, pool: &Pool<'_>) -> Vec<f32> {
        let (len, dim) = (self.positions.len(), pool.dim);
        let mut t = vec![0f32; len * dim];
        // Tiles of 64 rows keep both sides' cache lines live.
        for lo in (0..len).step_by(64) {
            let hi = (lo + 64).min(len);
            for c in 0..dim {
                for (d, &p) in t[c * len + lo..c * len + hi].iter_mut().zip(&self.positions[lo..hi]) {
                    *d = pool.rows[p as usize * dim + c];
                }
            }
        }
        t
    }
}

/// Each query's excluded rows as ranks of a [`ByNorm`] order, sorted: a chunk of scores
/// masks its few by a binary search, and a single rank is looked up the same way.
struct Excluded {
    /// Ranks excluded for every query.
    global: Vec<u32>,
    /// Per query, its own (CSR layout; empty without per-query exclusions).
    indptr: Vec<usize>,
    ranks: Vec<u32>,
}

impl Excluded {
    fn new(order: &ByNorm, pool: &Pool<'_>, ex: Exclusions<'_>, n_queries: usize) -> Excluded {
        // Item id -> the ranks of the rows that hold it: row `id`'s rank, or for a candidate
        // list (which may repeat an id) every match among (id, rank) pairs sorted by id.
        let mut rank_of = vec![0u32; if pool.ids.is_none() { pool.len() } else { 0 }];
        for (rank, &p) in order.positions.iter().enumerate() {
            if let Some(r) = rank_of.get_mut(p as usize) {
                *r = rank as u32;
            }
        }
        let mut by_id: Vec<(i32, u32)> = match pool.ids {
            Some(_) => order
                .positions
                .iter()
                .enumerate()
                .map(|(rank, &p)| (pool.id(p), rank as u32))
                .collect(),
            None => Vec::new(),
        };
        by_id.par_sort_unstable();
        let ranks_of = |ids: &[i32], out: &mut Vec<u32>| {
            let start = out.len();
            if pool.ids.is_none() {
                out.extend(ids.iter().map(|&id| rank_of[id as usize]));
            } else {
                for &id in ids {
                    let lo = by_id.partition_point(|&(i, _)| i < id);
                    out.extend(by_id[lo..].iter().take_while(|&&(i, _)| i == id).map(|&(_, r)| r));
                }
            }
            out[start..].sort_unstable();
        };
        let mut global = Vec::new();
        ranks_of(ex.global, &mut global);
        let (mut indptr, mut ranks) = (vec![0], Vec::new());
        if let Some(m) = ex.per_query {
            let parts: Vec<(Vec<usize>, Vec<u32>)> = (0..n_queries)
                .into_par_iter()
                .step_by(QUERY_BLOCK)
                .map(|lo| {
                    let (mut lens, mut out) = (Vec::new(), Vec::new());
                    for q in lo..(lo + QUERY_BLOCK).min(n_queries) {
                        let before = out.len();
                        ranks_of(m.row(q).0, &mut out);
                        lens.push(out.len() - before);
                    }
                    (lens, out)
                })
                .collect();
            for (lens, out) in parts {
                for len in lens {
                    indptr.push(indptr.last().copied().unwrap_or(0) + len);
                }
                ranks.extend(out);
            }
        }
        Excluded { global, indptr, ranks }
    }

    fn lists(&self, query: usize) -> [&[u32]; 2] {
        let own = match self.indptr.get(query + 1) {
            Some(&hi) => &self.ranks[self.indptr[query]..hi],
            None => &[],
        };
        [own, &self.global]
    }

    /// Whether rank `rank` is excluded from `query`'s ranking.
    fn at(&self, query: usize, rank: u32) -> bool {
        self.lists(query).iter().any(|l| l.binary_search(&rank).is_ok())
    }

    /// Set the scores of `query`'s excluded rows among ranks `lo..lo + row.len()` to -inf.
    fn mask(&self, query: usize, row: &mut [f32], lo: usize) {
        let hi = lo + row.len();
        for list in self.lists(query) {
            let start = list.partition_point(|&r| (r as usize) < lo);
            for &r in list[start..].iter().take_while(|&&r| (r as usize) < hi) {
                row[r as usize - lo] = f32::NEG_INFINITY;
            }
        }
    }
}

/// One rayon split's state in [`scan_bounds`]: per query a heap of lower bounds and the
/// candidates whose upper bound reached its threshold; and scratch buffers.
struct Scan {
    heaps: Vec<TopN>,
    candidates: Vec<Vec<(u32, f32)>>,
    scores: Vec<f32>,
    dots: Vec<i32>,
    rows: Vec<f32>,
    /// The block's queries open for a chunk, and their rows when not all are.
    open: Vec<usize>,
    queries: Vec<f32>,
}

impl Scan {
    /// `floors`: per query, a floor for its heap's threshold.
    fn new(rows: usize, n: usize, floors: &[f32]) -> Self {
        Scan {
            heaps: floors.iter().map(|&f| TopN::with_floor(n, f)).collect(),
            candidates: vec![Vec::new(); rows],
            scores: Vec::new(),
            dots: Vec::new(),
            rows: Vec::new(),
            open: Vec::new(),
            queries: Vec::new(),
        }
    }

    fn merge(mut self, other: Scan) -> Scan {
        self.heaps = self
            .heaps
            .into_iter()
            .zip(other.heaps)
            .map(|(a, b)| a.merge(b))
            .collect();
        for (a, b) in self.candidates.iter_mut().zip(other.candidates) {
            a.extend(b);
        }
        self
    }
}

/// One pass over a row of GEMM scores (excluded rows at -inf), widened by [`widen`]'s
/// radius as it goes: every row whose upper bound reaches the heap's threshold becomes a
/// candidate, and its lower bound enters the heap if it reaches it too. A lower bound below
/// the threshold could never enter later (the threshold only rises), so this is a full scan
/// of the lower bounds; candidates taken at an earlier, lower threshold are a superset,
/// filtered at the end. The bounds of 16 rows at a time are computed over fixed-length
/// arrays and compared with the threshold by one AVX-512 or two AVX2 compares where the CPU
/// has them (the same result either way); only the rows that pass (few, once the heap is
/// full) are looked at.
fn select_widened(heap: &mut TopN, scores: &[f32], norms: &[f32], g: f32, first: u32, out: &mut Vec<(u32, f32)>) {
    const SPAN: usize = 16;
    #[inline(always)]
    fn body(
        (heap, out): (&mut TopN, &mut Vec<(u32, f32)>),
        scores: &[f32],
        norms: &[f32],
        (g, first): (f32, u32),
        hits: impl Fn(&[f32; SPAN], f32) -> u32,
    ) {
        let mut threshold = heap.threshold();
        let (mut radius, mut upper) = ([0f32; SPAN], [0f32; SPAN]);
        for (k, (s, y)) in scores.chunks(SPAN).zip(norms.chunks(SPAN)).enumerate() {
            let tail: ([f32; SPAN], [f32; SPAN]);
            let (s, y): (&[f32; SPAN], &[f32; SPAN]) = match (s.try_into(), y.try_into()) {
                (Ok(s), Ok(y)) => (s, y),
                // The last, partial span, padded with NaN scores (which never pass).
                _ => {
                    tail = (
                        std::array::from_fn(|l| s.get(l).copied().unwrap_or(f32::NAN)),
                        std::array::from_fn(|l| y.get(l).copied().unwrap_or(0.0)),
                    );
                    (&tail.0, &tail.1)
                }
            };
            for l in 0..SPAN {
                radius[l] = g * y[l] + s[l].abs() * WIDEN_REL + WIDEN_FLOOR;
                upper[l] = s[l] + radius[l];
            }
            let mut m = hits(&upper, threshold);
            while m != 0 {
                let l = m.trailing_zeros() as usize;
                m &= m - 1;
                // An excluded row's upper bound is NaN (-inf plus an infinite radius): it fails.
                if upper[l] > f32::NEG_INFINITY {
                    let id = first + (k * SPAN + l) as u32;
                    out.push((id, upper[l]));
                    let lower = s[l] - radius[l];
                    if lower >= threshold && lower > f32::NEG_INFINITY {
                        heap.push(id, lower);
                        threshold = heap.threshold();
                    }
                }
            }
        }
    }
    // Ordered compares: NaN fails, as `>=` does.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn body_avx512(state: (&mut TopN, &mut Vec<(u32, f32)>), scores: &[f32], norms: &[f32], c: (f32, u32)) {
        use std::arch::x86_64::*;
        // SAFETY: 16 floats are read from an array of 16; AVX-512 F is enabled here.
        let hits = |u: &[f32; SPAN], t: f32| unsafe {
            _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(u.as_ptr()), _mm512_set1_ps(t)) as u32
        };
        body(state, scores, norms, c, hits)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body_avx2(state: (&mut TopN, &mut Vec<(u32, f32)>), scores: &[f32], norms: &[f32], c: (f32, u32)) {
        use std::arch::x86_64::*;
        // SAFETY: 2 x 8 floats are read from an array of 16; AVX2 is enabled here.
        let hits = |u: &[f32; SPAN], t: f32| unsafe {
            let t = _mm256_set1_ps(t);
            let lo = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_loadu_ps(u.as_ptr()), t);
            let hi = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_loadu_ps(u.as_ptr().add(8)), t);
            _mm256_movemask_ps(lo) as u32 | (_mm256_movemask_ps(hi) as u32) << 8
        };
        body(state, scores, norms, c, hits)
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU reports AVX-512 F.
            return unsafe { body_avx512((heap, out), scores, norms, (g, first)) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU reports AVX2 and FMA.
            return unsafe { body_avx2((heap, out), scores, norms, (g, first)) };
        }
    }
    body((heap, out), scores, norms, (g, first), |u, t| at_least(u, t))
}

/// The pool rows of largest norm (the first ranks of [`ByNorm`]), scored against each query
/// before its scan: the `n`-th best lower bound of those scores (eligible rows only) is at
/// most the `n`-th best `dot` score over the whole pool, so it is a valid floor for the scan's
/// threshold from its first row on. Without it the threshold starts at -inf in every rayon
/// split and rises slowly: at paper size 580 rows per query passed the upper-bound test, of
/// which 24 survived the final threshold (50 with the floor, 1.3x faster overall).
struct Sample {
    /// The rows of ranks `0..len`, gathered, and their norms rounded up.
    rows: Vec<f32>,
    norms: Vec<f32>,
}

impl Sample {
    /// Rows sampled per call: one small GEMM per block of queries.
    const ROWS: usize = 256;

    fn new(order: &ByNorm, pool: &Pool<'_>, n: usize) -> Sample {
        let size = Sample::ROWS.max(n).min(pool.len());
        let mut rows = Vec::new();
        order.gather(pool, 0..size, &mut rows);
        Sample {
            rows,
            norms: order.norms[..size].to_vec(),
        }
    }

    /// Per query of `queries`: the `n`-th best lower bound on the `dot` scores of the
    /// sample's rows it may rank (the GEMM's scores, widened by their error bound), where
    /// `excluded(r, rank)` says whether query `r` may not; -inf when fewer than `n` of them
    /// are eligible.
    fn floors(&self, queries: &[f32], n: usize, excluded: impl Fn(usize, u32) -> bool) -> Vec<f32> {
        let width = self.norms.len();
        let dim = self.rows.len() / width.max(1);
        let rows = queries.len() / dim;
        let mut lower = vec![0f32; rows * width];
        gemm_abt(rows, width, dim, queries, &self.rows, &mut lower);
        let mut upper = vec![0f32; width];
        let gamma = gemm_error(dim);
        (0..rows)
            .map(|r| {
                let u = &queries[r * dim..(r + 1) * dim];
                let lower = &mut lower[r * width..(r + 1) * width];
                widen(lower, &mut upper, &self.norms, up_f32(2.0 * gamma * norm_up(u) as f64));
                let mut best = TopN::new(n);
                for (rank, &l) in lower.iter().enumerate() {
                    if !excluded(r, rank as u32) {
                        best.push(rank as u32, l);
                    }
                }
                best.threshold()
            })
            .collect()
    }
}

/// Each query's best `n` of its candidates (rank in the [`ByNorm`] order, upper bound of its
/// score) by their
/// `dot` scores, where query `r`'s `n`-th best lower bound is `thresholds[r]`: the exact
/// scan's selection, since every row of it has an upper bound at or above that threshold.
///
/// A query's candidates are scored best upper bound first, so once its heap is full a
/// candidate whose upper bound is below the heap's threshold ends the loop (its score, and
/// every later one's, cannot enter; an equal one could, by the id tie-break, so `<`
/// strictly). The rows are scattered over the pool (larger than L2): the next query's are
/// prefetched into L2 while one query is scored, so their misses overlap. Compiled per SIMD
/// level for `dot`, whose fixed 16-lane order gives the same bits at every level.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn rescore(
    queries: &[f32],
    pool: &Pool<'_>,
    positions: &[u32],
    mut candidates: Vec<Vec<(u32, f32)>>,
    thresholds: &[f32],
    n: usize,
) -> Vec<TopN> {
    /// Rows of the next query prefetched (the usual Top-10 keeps about 25 candidates).
    const AHEAD: usize = 48;
    let dim = pool.dim;
    // Candidates are ranks; the heaps hold pool positions, whose order breaks ties.
    for cands in candidates.iter_mut() {
        cands.iter_mut().for_each(|c| c.0 = positions[c.0 as usize]);
    }
    let row = |i: u32| pool.row(i);
    for (cands, &threshold) in candidates.iter_mut().zip(thresholds) {
        cands.retain(|&(_, upper)| upper >= threshold);
        // Upper bounds are finite here (excluded rows carry -inf and fail the test above).
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    }
    let prefetch = |cands: &[(u32, f32)]| {
        for &(i, _) in cands.iter().take(AHEAD) {
            crate::kernels::prefetch_l2(row(i));
        }
    };
    if let Some(first) = candidates.first() {
        prefetch(first);
    }
    let mut out = Vec::with_capacity(candidates.len());
    for (r, cands) in candidates.iter().enumerate() {
        if let Some(next) = candidates.get(r + 1) {
            prefetch(next);
        }
        let u = &queries[r * dim..(r + 1) * dim];
        let mut best = TopN::new(n);
        let mut t = 0;
        // Four at a time by `dot4` (`dot`'s bits): a score whose upper bound fell below the
        // threshold meanwhile cannot enter the heap, so computing it changes nothing.
        while t < cands.len() && cands[t].1 >= best.threshold() {
            if let Some(four) = cands.get(t..t + 4) {
                let ids = [four[0].0, four[1].0, four[2].0, four[3].0];
                let scores = dot4(u, ids.map(row));
                for (&i, s) in ids.iter().zip(scores) {
                    best.push(i, s);
                }
                t += 4;
            } else {
                best.push(cands[t].0, dot(u, row(cands[t].0)));
                t += 1;
            }
        }
        out.push(best);
    }
    out
}

/// |x| as f32, rounded up.
fn norm_up(x: &[f32]) -> f32 {
    up_f32(x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() * (1.0 + 1e-12))
}

/// `x` as f32, rounded up.
fn up_f32(x: f64) -> f32 {
    let y = x as f32;
    if (y as f64) < x { y.next_up() } else { y }
}

/// A bound on `|s - <u, y>| / (|u| |y|)` for an f32 inner product `s` of `k` terms summed in
/// any order, with or without FMA: `k 2^-24 / (1 - k 2^-24)`, with 8 steps to spare.
fn gemm_error(k: usize) -> f64 {
    let e = (k as f64 + 8.0) * f64::powi(2.0, -24);
    e / (1.0 - e)
}

/// [`widen`]'s relative term and subnormal floor.
const WIDEN_REL: f32 = 1.0 / (1u32 << 22) as f32;
const WIDEN_FLOOR: f32 = 1e-37;

/// Turn GEMM scores into guaranteed bounds on `dot`'s: `radius_j = g |y_j| + 2^-22 |s_j|`
/// (+ the subnormal floor), where `g = 2 gamma |u|` covers both products' rounding and the
/// relative term the f32 arithmetic here; `row` becomes the lower bounds, `upper` the upper.
#[inline]
fn widen(row: &mut [f32], upper: &mut [f32], norms: &[f32], g: f32) {
    for ((s, u), &y) in row.iter_mut().zip(upper.iter_mut()).zip(norms) {
        let radius = g * y + s.abs() * WIDEN_REL + WIDEN_FLOOR;
        *u = *s + radius;
        *s -= radius;
    }
}

/// Set the scores of excluded items in `row` (pool positions `lo..lo+row.len()`) to -inf.
fn mask(row: &mut [f32], lo: usize, pool_ids: Option<&[i32]>, ex: Exclusions<'_>, query: usize) {
    let hi = lo + row.len();
    let mut kill = |sorted: &[i32]| match pool_ids {
        None => {
            let start = sorted.partition_point(|&i| (i as usize) < lo);
            for &i in &sorted[start..] {
                if i as usize >= hi {
                    break;
                }
                row[i as usize - lo] = f32::NEG_INFINITY;
            }
        }
        Some(map) => {
            for (j, &id) in map[lo..hi].iter().enumerate() {
                if sorted.binary_search(&id).is_ok() {
                    row[j] = f32::NEG_INFINITY;
                }
            }
        }
    };
    if let Some(per_query) = ex.per_query {
        kill(per_query.row(query).0);
    }
    if !ex.global.is_empty() {
        kill(ex.global);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_rows_have_unit_length_and_zero_rows_stay_zero() {
        let rows = super::unit_rows(&[3.0, 4.0, 0.0, 0.0, -1.0, 0.0], 2);
        assert_eq!(rows, vec![0.6, 0.8, 0.0, 0.0, -1.0, 0.0]);
    }

    use super::*;
    use crate::sparse::Csr;

    fn brute(q: &[f32], items: &[f32], dim: usize, n: usize, skip: &[i32]) -> Vec<(i32, f32)> {
        let mut all: Vec<(i32, f32)> = items
            .chunks(dim)
            .enumerate()
            .filter(|(i, _)| !skip.contains(&(*i as i32)))
            .map(|(i, y)| (i as i32, q.iter().zip(y).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    #[test]
    fn matches_brute_force_with_exclusions_and_padding() {
        let dim = 3;
        let n_items = 9000; // spans several item chunks
        let items: Vec<f32> = (0..n_items * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let queries: Vec<f32> = (0..70 * dim)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let ex = Csr::from_triplets(70, n_items, &[(0, 5, 1.0), (0, 8000, 1.0), (69, 1, 1.0)]).unwrap();
        let (ids, scores) = top_n(
            &queries,
            &items,
            dim,
            5,
            Exclusions {
                per_query: Some(ex.view()),
                global: &[3, 4097],
            },
            None,
        )
        .unwrap();
        for q in [0usize, 1, 63, 64, 69] {
            let mut skip = vec![3, 4097];
            skip.extend(ex.view().row(q).0);
            let want = brute(&queries[q * dim..(q + 1) * dim], &items, dim, 5, &skip);
            for (j, (id, s)) in want.iter().enumerate() {
                assert_eq!(ids[q * 5 + j], *id, "query {q} rank {j}");
                assert!((scores[q * 5 + j] - s).abs() < 1e-5);
            }
        }
        // Candidates: only 2 eligible after exclusion -> padded.
        let (ids, scores) = top_n(
            &queries[..dim],
            &items,
            dim,
            4,
            Exclusions {
                per_query: None,
                global: &[7],
            },
            Some(&[7, 2, 11]),
        )
        .unwrap();
        let want = brute(&queries[..dim], &items, dim, 9000, &[]);
        let rank = |id: i32| want.iter().position(|w| w.0 == id).unwrap();
        // N = 4 is capped at the 3 candidates; the filtered one leaves a padded slot.
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], -1);
        assert!(scores[2].is_infinite());
        assert_eq!(ids[0], if rank(2) < rank(11) { 2 } else { 11 });
    }

    /// `top_n` of `queries` over `items` (or over the `candidates` among them; rows of
    /// `dim`) equals [`exact_scan`] of the same rows, ids and score bits, where `skip(q)`
    /// lists the item ids query `q` may not rank.
    fn assert_exact(
        (queries, items, dim): (&[f32], &[f32], usize),
        (n, exclusions, candidates): (usize, Exclusions<'_>, Option<&[i32]>),
        skip: &dyn Fn(usize) -> Vec<i32>,
        what: &str,
    ) {
        let (ids, scores) = top_n(queries, items, dim, n, exclusions, candidates).unwrap();
        let (want, want_bits) = match candidates {
            None => exact_scan(queries, items, dim, n, skip),
            Some(pool) => {
                let gathered: Vec<f32> = pool
                    .iter()
                    .flat_map(|&i| items[i as usize * dim..(i as usize + 1) * dim].iter().copied())
                    .collect();
                let (want, bits) = exact_scan(queries, &gathered, dim, n, &|q| {
                    let s = skip(q);
                    (0..pool.len() as i32)
                        .filter(|&p| s.contains(&pool[p as usize]))
                        .collect()
                });
                (
                    want.iter().map(|&p| if p < 0 { p } else { pool[p as usize] }).collect(),
                    bits,
                )
            }
        };
        assert_eq!(ids, want, "{what}");
        assert_eq!(
            scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            want_bits,
            "{what}"
        );
    }

    /// The exact scan: every eligible item scored by `dot`, best `n` by [`TopN`].
    fn exact_scan(
        queries: &[f32],
        items: &[f32],
        dim: usize,
        n: usize,
        skip: &dyn Fn(usize) -> Vec<i32>,
    ) -> (Vec<i32>, Vec<u32>) {
        let n_items = items.len() / dim;
        let n = n.min(n_items);
        let (mut ids, mut bits) = (Vec::new(), Vec::new());
        for (q, u) in queries.chunks_exact(dim).enumerate() {
            let skip = skip(q);
            let mut best = TopN::new(n);
            for (i, y) in items.chunks_exact(dim).enumerate() {
                if !skip.contains(&(i as i32)) {
                    best.push(i as u32, dot(u, y));
                }
            }
            let sorted = best.into_sorted();
            for j in 0..n {
                let (id, s) = sorted.get(j).map_or((-1, f32::NEG_INFINITY), |&(i, s)| (i as i32, s));
                ids.push(id);
                bits.push(s.to_bits());
            }
        }
        (ids, bits)
    }

    #[test]
    fn short_lists_equal_the_exact_dot_scan_bit_for_bit() {
        // 2 queries take the f32 bounds, 70 and 300 the int8 screen where the CPU has VNNI
        // (else the f32 bounds); every path returns the exact scan's ids and score bits,
        // ties (duplicated items), exclusions, zero rows and extreme magnitudes included.
        let dim = 100;
        let n_items = 2 * ITEM_CHUNK + 300;
        let base: Vec<f32> = (0..n_items * dim)
            .map(|i| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5) * (1.0 + (i / dim % 7) as f32))
            .collect();
        for scale in [1.0f32, 1e-12, 1e12] {
            let mut items: Vec<f32> = base.iter().map(|v| v * scale).collect();
            items.copy_within(0..dim * 40, dim * 1500);
            items[dim * 30..dim * 33].fill(0.0);
            for n_queries in [2usize, 70, 300] {
                let mut queries: Vec<f32> = (0..n_queries * dim)
                    .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
                    .collect();
                queries[dim..2 * dim].fill(0.0);
                let played: Vec<(u32, u32, f32)> = (0..n_queries)
                    .flat_map(|q| [(q as u32, ((q * 31) % n_items) as u32, 1.0), (q as u32, 2, 1.0)])
                    .collect();
                let ex = Csr::from_triplets(n_queries, n_items, &played).unwrap();
                for n in [1usize, 10, 50] {
                    let exclusions = Exclusions {
                        per_query: Some(ex.view()),
                        global: &[5, 1501],
                    };
                    let (ids, scores) = top_n(&queries, &items, dim, n, exclusions, None).unwrap();
                    let skip = |q: usize| {
                        let mut s = vec![5, 1501];
                        s.extend(ex.view().row(q).0);
                        s
                    };
                    let (want_ids, want_bits) = exact_scan(&queries, &items, dim, n, &skip);
                    assert_eq!(ids, want_ids, "scale {scale}, {n_queries} queries, n {n}");
                    let bits: Vec<u32> = scores.iter().map(|s| s.to_bits()).collect();
                    assert_eq!(bits, want_bits, "scale {scale}, {n_queries} queries, n {n}");
                }
            }
        }
        // A candidate list: positions map back to item ids, the same bits as the scan of them.
        let queries: Vec<f32> = (0..80 * dim).map(|i| ((i * 31) % 101) as f32 / 101.0 - 0.5).collect();
        let pool: Vec<i32> = (0..n_items as i32).filter(|i| i % 3 == 1).collect();
        let gathered: Vec<f32> = pool
            .iter()
            .flat_map(|&i| base[i as usize * dim..(i as usize + 1) * dim].iter().copied())
            .collect();
        let (ids, scores) = top_n(&queries, &base, dim, 10, Exclusions::default(), Some(&pool)).unwrap();
        let (want, want_bits) = exact_scan(&queries, &gathered, dim, 10, &|_| Vec::new());
        let want: Vec<i32> = want.iter().map(|&p| pool[p as usize]).collect();
        assert_eq!(ids, want);
        assert_eq!(scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), want_bits);
    }

    #[test]
    fn the_sampled_floor_leaves_out_what_a_query_may_not_rank() {
        // The rows of largest norm (more than the sample holds) score best for every query:
        // excluded, by the query's own list or globally, they must not set its floor, and a
        // candidate list maps pool positions to item ids for the exclusions.
        let dim = 16;
        let n_items = 3 * ITEM_CHUNK;
        let big = Sample::ROWS + 40;
        let items: Vec<f32> = (0..n_items * dim)
            .map(|i| {
                let v = ((i * 7919) % 1000) as f32 / 1000.0 - 0.5;
                if (i / dim) % 9 == 4 && (i / dim) / 9 < big {
                    0.5 + v.abs() * 10.0
                } else {
                    v
                }
            })
            .collect();
        let n_queries = 130;
        let queries: Vec<f32> = (0..n_queries * dim)
            .map(|i| 0.2 + ((i * 104729) % 997) as f32 / 997.0)
            .collect();
        let bigs: Vec<u32> = (0..big).map(|b| (b * 9 + 4) as u32).collect();
        let played: Vec<(u32, u32, f32)> = (0..n_queries as u32)
            .filter(|q| q % 2 == 0)
            .flat_map(|q| bigs.iter().map(move |&b| (q, b, 1.0)))
            .collect();
        let ex = Csr::from_triplets(n_queries, n_items, &played).unwrap();
        let global: Vec<i32> = bigs.iter().take(100).map(|&b| b as i32).collect();
        for n in [1usize, 10, 40] {
            let exclusions = Exclusions {
                per_query: Some(ex.view()),
                global: &global,
            };
            let skip = |q: usize| {
                let mut s = global.clone();
                s.extend(ex.view().row(q).0);
                s
            };
            assert_exact((&queries, &items, dim), (n, exclusions, None), &skip, &format!("n {n}"));
            // The same through a candidate list (every third item, the big rows among them).
            let pool: Vec<i32> = (0..n_items as i32).filter(|i| i % 3 == 1).collect();
            let what = format!("candidates, n {n}");
            assert_exact((&queries, &items, dim), (n, exclusions, Some(&pool)), &skip, &what);
        }
    }

    #[test]
    fn chunks_left_out_by_norm_change_nothing() {
        // Norms spread over two orders of magnitude, in an order unlike the ids', so that
        // the norm ranking reorders the pool and most chunks fall below the blocks'
        // thresholds, and every row nearly parallel to every query (the bound |u| |y| is
        // then nearly tight, so a bound any lower would leave out rows that rank); enough blocks that each scans its chunks in order. The rows of largest
        // norm are excluded for half the queries, one is repeated far away (a tie), and a
        // candidate list ranks a subset: every result is the exact scan's, bit for bit.
        let dim = 16;
        let n_items = 8 * ITEM_CHUNK + 50;
        let scale = |i: usize| 8.0 / (1.0 + ((i * 37) % n_items) as f32 / 80.0);
        let mut items: Vec<f32> = (0..n_items * dim)
            .map(|i| (((i * 7919) % 1000) as f32 / 2500.0 + 0.6) * scale(i / dim))
            .collect();
        let loudest: Vec<usize> = (0..n_items).filter(|&i| (i * 37) % n_items < 30).collect();
        items.copy_within(loudest[0] * dim..(loudest[0] + 1) * dim, (n_items - 7) * dim);
        let n_queries = 4 * QUERY_BLOCK + 5;
        let queries: Vec<f32> = (0..n_queries * dim)
            .map(|i| ((i * 104729) % 997) as f32 / 2500.0 + 0.6)
            .collect();
        let played: Vec<(u32, u32, f32)> = (0..n_queries as u32)
            .filter(|q| q % 2 == 0)
            .flat_map(|q| loudest.iter().map(move |&b| (q, b as u32, 1.0)))
            .collect();
        let ex = Csr::from_triplets(n_queries, n_items, &played).unwrap();
        let mut global = [loudest[1] as i32, 11];
        global.sort_unstable();
        let skip = |q: usize| {
            let mut s = global.to_vec();
            s.extend(ex.view().row(q).0);
            s
        };
        let exclusions = Exclusions {
            per_query: Some(ex.view()),
            global: &global,
        };
        for n in [1usize, 10] {
            assert_exact((&queries, &items, dim), (n, exclusions, None), &skip, &format!("n {n}"));
        }
        let pool: Vec<i32> = (0..n_items as i32).filter(|i| i % 2 == 1).collect();
        assert_exact(
            (&queries, &items, dim),
            (10, exclusions, Some(&pool)),
            &skip,
            "candidates",
        );
    }

    #[test]
    fn many_queries_give_the_same_bits_as_small_batches() {
        // > QUERY_BLOCK queries take the transposed-items GEMM and the fold over chunks; small
        // batches take the direct path. Same kernel and summation order: bit-identical,
        // ties (duplicated items) included.
        let dim = 20;
        let n_items = 3 * ITEM_CHUNK + 17;
        let mut items: Vec<f32> = (0..n_items * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        items.copy_within(0..dim * 40, dim * 2000); // exact ties across chunks
        let n_queries = 2 * QUERY_BLOCK + 9;
        let queries: Vec<f32> = (0..n_queries * dim)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let played: Vec<(u32, u32, f32)> = (0..n_queries)
            .map(|q| (q as u32, ((q * 31) % n_items) as u32, 1.0))
            .collect();
        let ex = Csr::from_triplets(n_queries, n_items, &played).unwrap();
        fn exclusions(csr: &Csr) -> Exclusions<'_> {
            Exclusions {
                per_query: Some(csr.view()),
                global: &[5],
            }
        }
        let (ids, scores) = top_n(&queries, &items, dim, 10, exclusions(&ex), None).unwrap();
        for lo in (0..n_queries).step_by(50) {
            let hi = (lo + 50).min(n_queries);
            let part: Vec<(u32, u32, f32)> = (lo..hi)
                .map(|q| ((q - lo) as u32, ((q * 31) % n_items) as u32, 1.0))
                .collect();
            let ex_part = Csr::from_triplets(hi - lo, n_items, &part).unwrap();
            let (want_ids, want_scores) = top_n(
                &queries[lo * dim..hi * dim],
                &items,
                dim,
                10,
                exclusions(&ex_part),
                None,
            )
            .unwrap();
            assert_eq!(ids[lo * 10..hi * 10], want_ids[..], "queries {lo}..{hi}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&scores[lo * 10..hi * 10]), bits(&want_scores));
        }
        for q in [0usize, 255, 256, n_queries - 1] {
            let want = brute(
                &queries[q * dim..(q + 1) * dim],
                &items,
                dim,
                10,
                &[5, ((q * 31) % n_items) as i32],
            );
            let got: Vec<i32> = ids[q * 10..(q + 1) * 10].to_vec();
            assert_eq!(got, want.iter().map(|w| w.0).collect::<Vec<_>>(), "query {q}");
        }
    }

    #[test]
    fn ties_resolve_to_lower_id() {
        let mut a = TopN::new(2);
        a.push(9, 1.0);
        a.push(3, 1.0);
        a.push(5, 1.0);
        assert_eq!(a.into_sorted(), vec![(3, 1.0), (5, 1.0)]);
    }

    #[test]
    fn rejects_wrong_orientation() {
        let ex = Csr::from_triplets(1, 4, &[]).unwrap();
        let err = top_n(
            &[1.0, 1.0],
            &[1.0; 6],
            2,
            1,
            Exclusions {
                per_query: Some(ex.view()),
                global: &[],
            },
            None,
        );
        assert!(err.unwrap_err().to_string().contains("users x items"));
    }
}
