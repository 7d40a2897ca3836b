//! Top-N selection by inner product: recommend, similar items and the ranking metrics all go
//! through here. Scores are computed block by block with a GEMM (queries x item chunk) and
//! scanned against a bounded min-heap, so memory stays at one chunk per thread.

mod screened;
pub use screened::Screened;

use crate::ensure;
use crate::error::Result;
use crate::kernels::{gemm_ab_strided, gemm_abt, gemv_rows, transpose};
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
}

impl TopN {
    pub fn new(n: usize) -> Self {
        // The heap grows as needed: an absurd `n` must not allocate up front.
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024) + 1),
        }
    }

    #[inline]
    pub fn push(&mut self, id: u32, score: f32) {
        let cand = Ranked { score, id };
        if self.heap.len() < self.n {
            self.heap.push(Reverse(cand));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && cand > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(cand));
        }
    }

    /// Lowest score that could still enter (NEG_INFINITY while not full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.n {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.score)
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
            if !group.iter().fold(false, |any, &s| any | (s >= threshold)) {
                continue;
            }
            for (j, &s) in group.iter().enumerate() {
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

    // Many queries: score against Y^T (one transposed copy) so that the GEMM packs contiguous
    // runs; packing the strided B^T view cost twice the multiply itself (perf, issue 14).
    // Same kernel and summation order either way, so the scores are bit-identical.
    let pool_t = (n_queries > QUERY_BLOCK).then(|| transpose(pool_len, dim, pool));
    let blocks: Vec<(usize, usize)> = (0..n_queries)
        .step_by(QUERY_BLOCK)
        .map(|lo| (lo, (lo + QUERY_BLOCK).min(n_queries)))
        .collect();
    let chunks: Vec<usize> = (0..pool_len).step_by(ITEM_CHUNK).collect();
    let per_block: Vec<Vec<TopN>> = blocks
        .par_iter()
        .map(|&(qlo, qhi)| {
            let rows = qhi - qlo;
            let fresh = || (0..rows).map(|_| TopN::new(n)).collect::<Vec<TopN>>();
            // fold: each rayon split scans its chunks in turn into one score buffer and one
            // heap per row; only stolen splits are merged. TopN's total order makes the result
            // independent of how the chunks were split.
            chunks
                .par_iter()
                .fold(
                    || (fresh(), Vec::new()),
                    |(mut heaps, mut scores): (Vec<TopN>, Vec<f32>), &ilo| {
                        let ihi = (ilo + ITEM_CHUNK).min(pool_len);
                        let width = ihi - ilo;
                        scores.resize(rows * width, 0.0);
                        let block = &mut scores[..rows * width];
                        let q = &queries[qlo * dim..qhi * dim];
                        match &pool_t {
                            Some(t) => gemm_ab_strided(rows, width, dim, q, &t[ilo..], pool_len, block),
                            None if n_queries == 1 => gemv_rows(q, &pool[ilo * dim..ihi * dim], dim, block),
                            None => gemm_abt(rows, width, dim, q, &pool[ilo * dim..ihi * dim], block),
                        }
                        for (r, heap) in heaps.iter_mut().enumerate() {
                            let row = &mut block[r * width..(r + 1) * width];
                            mask(row, ilo, pool_ids, exclusions, qlo + r);
                            heap.scan(row, ilo as u32);
                        }
                        (heaps, scores)
                    },
                )
                .map(|(heaps, _)| heaps)
                .reduce(fresh, |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect())
        })
        .collect();

    let mut ids = vec![-1i32; n_queries * n];
    let mut scores = vec![f32::NEG_INFINITY; n_queries * n];
    for (q, heap) in per_block.into_iter().flatten().enumerate() {
        for (j, (pos, s)) in heap.into_sorted().into_iter().enumerate() {
            ids[q * n + j] = match pool_ids {
                Some(map) => map[pos as usize],
                None => pos as i32,
            };
            scores[q * n + j] = s;
        }
    }
    Ok((ids, scores))
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
