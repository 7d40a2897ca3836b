//! Ranking metrics of a recommender on a held-out split: precision, recall, F1, NDCG, MAP
//! and AUC at a cut-off N, for factor models and score-only baselines (popularity) alike.
//!
//! Definitions (per evaluated user `u`, with `T_u` the user's test items that are not also
//! train items, `R_u` the top-N ranking of all items outside the user's train items, best
//! first, ranks `r = 0, 1, ...`, and `hits = |R_u ∩ T_u|`):
//!
//! - precision@N = hits / N (a user with fewer than N rankable items still divides by N);
//! - recall@N = hits / |T_u|;
//! - NDCG@N = DCG / IDCG, binary relevance, DCG = Σ_{r: R_u[r] ∈ T_u} 1 / log2(r + 2),
//!   IDCG = the DCG of min(|T_u|, N) hits at the top;
//! - AP@N = (1 / min(|T_u|, N)) Σ_{r: R_u[r] ∈ T_u} (hits in ranks 0..=r) / (r + 1);
//! - AUC = the fraction of (test item, negative item) pairs ranked correctly, ties counting
//!   1/2, over ALL negatives (items in neither the user's train nor test set), not just
//!   the top N; undefined (skipped) for a user with no negatives.
//!
//! The reported numbers are means over the evaluated users (users with at least one item
//! in `T_u`), except that F1 is the harmonic mean of the mean precision and the mean
//! recall (0 when both are 0), and AUC is the mean over the users that have negatives.
//!
//! implicit's `precision_at_k` divides hits by min(K, |T_u|): that is neither precision
//! (which divides by K) nor recall (which divides by |T_u|) — it equals recall for users
//! with at most K test items and precision for the others. We report both true ones.

use crate::ensure;
use crate::error::Result;
use crate::kernels::gemm_abt;
use crate::sparse::CsrRef;
use crate::topk::TopN;
use rayon::prelude::*;
use std::ops::Range;

/// Scores held at once per task: 2^20 f32 = 4 MiB.
const SCORE_BUDGET: usize = 1 << 20;
/// Users scored together in one GEMM, at most and at least.
const MAX_USER_BLOCK: usize = 64;
const MIN_USER_BLOCK: usize = 8;

/// How the users x items score matrix is cut into tasks.
#[derive(Clone, Copy, Debug)]
struct Layout {
    user_block: usize,
    item_chunk: usize,
}

impl Layout {
    /// Fewer users per block before cutting the items: a single item chunk spares pass 2
    /// its second GEMM, so chunking only starts past SCORE_BUDGET / MIN_USER_BLOCK items.
    /// Depends on the catalog size only, never on the thread count (determinism).
    fn for_items(n_items: usize) -> Self {
        let user_block = (SCORE_BUDGET / n_items.max(1)).clamp(MIN_USER_BLOCK, MAX_USER_BLOCK);
        Layout {
            user_block,
            item_chunk: SCORE_BUDGET / user_block,
        }
    }
}

/// Ranking quality at a cut-off N, averaged over the evaluated users (see the module
/// documentation for the exact definitions).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RankingMetrics {
    /// Mean of hits / N.
    pub precision: f64,
    /// Mean of hits / |test items|.
    pub recall: f64,
    /// Harmonic mean of `precision` and `recall` (of the means, not a mean of per-user F1).
    pub f1: f64,
    /// Mean NDCG@N with binary relevance.
    pub ndcg: f64,
    /// Mean average precision at N, normalised by min(|test items|, N).
    pub map: f64,
    /// Mean per-user AUC over all non-train items (NaN when no user has a negative item).
    pub auc: f64,
    /// Users with at least one test item outside their train items.
    pub users_evaluated: usize,
}

/// Ranking metrics of the factor model `score(u, i) = user_factors[u] · item_factors[i]`.
///
/// `user_factors` is `n_users x dim` and `item_factors` `n_items x dim`, both row-major,
/// where `train` and `test` are `n_users x n_items` (users x items). Each user's train
/// items are left out of their ranking. Results do not depend on the number of threads.
pub fn ranking_metrics(
    user_factors: &[f32],
    item_factors: &[f32],
    dim: usize,
    train: CsrRef<'_>,
    test: CsrRef<'_>,
    n: usize,
) -> Result<RankingMetrics> {
    ensure!(dim > 0, "the factor dimension must be positive");
    ensure!(
        user_factors.len() == train.n_rows * dim,
        "user_factors has {} values but train has {} rows (users) x {dim} factors = {}; \
         train must be users x items",
        user_factors.len(),
        train.n_rows,
        train.n_rows * dim
    );
    ensure!(
        item_factors.len() == train.n_cols * dim,
        "item_factors has {} values but train has {} columns (items) x {dim} factors = {}; \
         train must be users x items",
        item_factors.len(),
        train.n_cols,
        train.n_cols * dim
    );
    ensure!(
        user_factors.iter().all(|x| x.is_finite()),
        "user_factors contain NaN or infinite values"
    );
    ensure!(
        item_factors.iter().all(|x| x.is_finite()),
        "item_factors contain NaN or infinite values"
    );
    ranking_metrics_with(train.n_rows, train.n_cols, train, test, n, |users, items, out| {
        gemm_abt(
            users.len(),
            items.len(),
            dim,
            &user_factors[users.start * dim..users.end * dim],
            &item_factors[items.start * dim..items.end * dim],
            out,
        );
    })
}

/// The evaluation loop shared by every scorer.
///
/// `score_block(users, items, out)` must fill `out` (row-major, `users.len() x items.len()`)
/// with the score of each user of the range for each item of the range. It must be
/// deterministic (on large catalogs the same block is scored twice, once for top-N, once
/// for AUC) and its scores must not be NaN. Users are processed in blocks of 8 to 64 and items in chunks, so `out` stays at
/// most 4 MiB; blocks run in parallel and are reduced in user order, so the result is the
/// same for any number of threads.
pub fn ranking_metrics_with<F>(
    n_users: usize,
    n_items: usize,
    train: CsrRef<'_>,
    test: CsrRef<'_>,
    n: usize,
    score_block: F,
) -> Result<RankingMetrics>
where
    F: Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync,
{
    evaluate(
        n_users,
        n_items,
        train,
        test,
        n,
        &score_block,
        Layout::for_items(n_items),
    )
}

/// [`ranking_metrics_with`] with the layout as a parameter, so tests can force the
/// multi-chunk path on small catalogs.
fn evaluate<F>(
    n_users: usize,
    n_items: usize,
    train: CsrRef<'_>,
    test: CsrRef<'_>,
    n: usize,
    score_block: &F,
    layout: Layout,
) -> Result<RankingMetrics>
where
    F: Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync,
{
    ensure!(n >= 1, "the cut-off N must be at least 1");
    ensure!(
        train.n_rows == n_users && train.n_cols == n_items,
        "train is {} x {} but the scores cover {n_users} users x {n_items} items; \
         train must be users x items",
        train.n_rows,
        train.n_cols
    );
    ensure!(
        test.n_rows == train.n_rows && test.n_cols == train.n_cols,
        "test is {} x {} but train is {} x {}; both must be users x items over the same ids",
        test.n_rows,
        test.n_cols,
        train.n_rows,
        train.n_cols
    );
    let blocks: Vec<usize> = (0..n_users).step_by(layout.user_block).collect();
    let per_block: Vec<Vec<UserMetrics>> = blocks
        .par_iter()
        .map(|&lo| {
            let users = lo..(lo + layout.user_block).min(n_users);
            evaluate_block(users, n_items, train, test, n, score_block, layout.item_chunk)
        })
        .collect();
    let summary = summarise(per_block.iter().flatten());
    ensure!(
        summary.users_evaluated > 0,
        "no user has a test item outside their train items: nothing to evaluate \
         (is test empty, or transposed relative to users x items?)"
    );
    Ok(summary)
}

/// One user's values; `auc` is None for a user with no negative item.
struct UserMetrics {
    precision: f64,
    recall: f64,
    ndcg: f64,
    ap: f64,
    auc: Option<f64>,
}

/// Means in user order, so the floating-point sums do not depend on scheduling.
fn summarise<'a>(users: impl Iterator<Item = &'a UserMetrics>) -> RankingMetrics {
    let (mut p, mut r, mut ndcg, mut map, mut auc) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let (mut count, mut auc_count) = (0usize, 0usize);
    for u in users {
        p += u.precision;
        r += u.recall;
        ndcg += u.ndcg;
        map += u.ap;
        if let Some(a) = u.auc {
            auc += a;
            auc_count += 1;
        }
        count += 1;
    }
    let mean = |sum: f64| if count > 0 { sum / count as f64 } else { 0.0 };
    let (precision, recall) = (mean(p), mean(r));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RankingMetrics {
        precision,
        recall,
        f1,
        ndcg: mean(ndcg),
        map: mean(map),
        auc: if auc_count > 0 {
            auc / auc_count as f64
        } else {
            f64::NAN
        },
        users_evaluated: count,
    }
}

fn evaluate_block<F>(
    users: Range<usize>,
    n_items: usize,
    train: CsrRef<'_>,
    test: CsrRef<'_>,
    n: usize,
    score_block: &F,
    item_chunk: usize,
) -> Vec<UserMetrics>
where
    F: Fn(Range<usize>, Range<usize>, &mut [f32]) + Sync,
{
    let mut states: Vec<Option<UserState>> = users
        .clone()
        .map(|u| UserState::new(train.row(u).0, test.row(u).0, n))
        .collect();
    if states.iter().all(Option::is_none) {
        return Vec::new();
    }
    let chunks: Vec<Range<usize>> = (0..n_items)
        .step_by(item_chunk)
        .map(|lo| lo..(lo + item_chunk).min(n_items))
        .collect();
    let mut buf = vec![0f32; users.len() * item_chunk.min(n_items)];

    // Pass 1: top-N and the test items' scores, which AUC needs sorted before it can
    // place any negative.
    for items in &chunks {
        let out = &mut buf[..users.len() * items.len()];
        score_block(users.clone(), items.clone(), out);
        for (row, state) in out.chunks_exact_mut(items.len()).zip(&mut states) {
            if let Some(s) = state {
                s.rank_chunk(row, items.start);
            }
        }
    }
    for s in states.iter_mut().flatten() {
        s.positive_scores.sort_unstable_by(f32::total_cmp);
    }
    // Pass 2: place every negative among the sorted test scores. With one chunk the buffer
    // still holds its scores (pass 1 only masked train items, which are not negatives);
    // with several, rescoring costs one more GEMM instead of n_items floats per user.
    for items in &chunks {
        let out = &mut buf[..users.len() * items.len()];
        if chunks.len() > 1 {
            score_block(users.clone(), items.clone(), out);
        }
        for (row, state) in out.chunks_exact(items.len()).zip(&mut states) {
            if let Some(s) = state {
                s.count_negatives(row, items.start);
            }
        }
    }
    states.into_iter().flatten().map(|s| s.finish(n_items, n)).collect()
}

/// What one user accumulates over the item chunks.
struct UserState<'a> {
    train: &'a [i32],
    /// Test items that are not train items, sorted: the relevant set.
    positives: Vec<i32>,
    /// Train ∪ test, sorted: the items that are not negatives.
    seen: Vec<i32>,
    positive_scores: Vec<f32>,
    top: TopN,
    /// Twice the AUC numerator (ties count 1), kept integral so sums are exact.
    wins2: u64,
}

impl<'a> UserState<'a> {
    /// None when the user has no test item outside train (not evaluated).
    fn new(train: &'a [i32], test: &[i32], n: usize) -> Option<Self> {
        let positives: Vec<i32> = test
            .iter()
            .copied()
            .filter(|t| train.binary_search(t).is_err())
            .collect();
        if positives.is_empty() {
            return None;
        }
        let mut seen = [train, &positives].concat();
        seen.sort_unstable();
        Some(UserState {
            train,
            positive_scores: Vec::with_capacity(positives.len()),
            positives,
            seen,
            top: TopN::new(n),
            wins2: 0,
        })
    }

    /// Record the test items' scores in `row` (items `lo..lo + row.len()`), mask the train
    /// items and offer the rest to the top-N.
    fn rank_chunk(&mut self, row: &mut [f32], lo: usize) {
        let hi = lo + row.len();
        for &p in in_range(&self.positives, lo, hi) {
            self.positive_scores.push(row[p as usize - lo]);
        }
        for &t in in_range(self.train, lo, hi) {
            row[t as usize - lo] = f32::NEG_INFINITY;
        }
        self.top.scan(row, lo as u32);
    }

    /// Add the AUC wins of the negatives in `row`: the runs between consecutive seen items.
    fn count_negatives(&mut self, row: &[f32], lo: usize) {
        let mut next = lo;
        let mut wins2 = 0;
        for &c in in_range(&self.seen, lo, lo + row.len()) {
            wins2 += auc_wins2(&self.positive_scores, &row[next - lo..c as usize - lo]);
            next = c as usize + 1;
        }
        self.wins2 += wins2 + auc_wins2(&self.positive_scores, &row[next - lo..]);
    }

    fn finish(self, n_items: usize, n: usize) -> UserMetrics {
        let (mut hits, mut dcg, mut ap_sum) = (0usize, 0f64, 0f64);
        for (r, (id, _)) in self.top.into_sorted().into_iter().enumerate() {
            if self.positives.binary_search(&(id as i32)).is_ok() {
                hits += 1;
                dcg += discount(r);
                ap_sum += hits as f64 / (r + 1) as f64;
            }
        }
        let ideal = self.positives.len().min(n);
        let idcg: f64 = (0..ideal).map(discount).sum();
        let n_negatives = (n_items - self.seen.len()) as u64;
        let pairs = self.positives.len() as u64 * n_negatives;
        UserMetrics {
            precision: hits as f64 / n as f64,
            recall: hits as f64 / self.positives.len() as f64,
            ndcg: dcg / idcg,
            ap: ap_sum / ideal as f64,
            auc: (pairs > 0).then(|| self.wins2 as f64 / (2 * pairs) as f64),
        }
    }
}

/// Test sets up to this size are counted by a branch-free scan, which beats a binary
/// search's mispredicted branches for the handful of test items most users have.
const LINEAR_AUC_MAX: usize = 32;

/// Twice the (test, negative) pairs won by the test item, ties counting 1, given the test
/// scores sorted ascending. Above `LINEAR_AUC_MAX` test items, a binary search per negative
/// costs O(log |T_u|) instead of a comparison with every test item.
fn auc_wins2(sorted_positives: &[f32], negatives: &[f32]) -> u64 {
    if sorted_positives.len() <= LINEAR_AUC_MAX {
        return negatives
            .iter()
            .map(|&s| {
                sorted_positives
                    .iter()
                    .map(|&t| 2 * (t > s) as u32 + (t == s) as u32)
                    .sum::<u32>() as u64
            })
            .sum();
    }
    let total = sorted_positives.len() as u64;
    let mut wins2 = 0;
    for &s in negatives {
        let below = sorted_positives.partition_point(|&t| t < s);
        let tied = sorted_positives[below..].iter().take_while(|&&t| t <= s).count();
        wins2 += 2 * (total - (below + tied) as u64) + tied as u64;
    }
    wins2
}

/// The DCG weight of rank `r` (0-based).
fn discount(r: usize) -> f64 {
    1.0 / ((r + 2) as f64).log2()
}

/// The items of a sorted id list that fall in `lo..hi`.
fn in_range(sorted: &[i32], lo: usize, hi: usize) -> &[i32] {
    let start = sorted.partition_point(|&c| (c as usize) < lo);
    let end = sorted.partition_point(|&c| (c as usize) < hi);
    &sorted[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::baselines::{popularity_ranking_metrics, popularity_scores, random_ranking_metrics};
    use crate::parallel::with_threads;
    use crate::sparse::Csr;

    fn csr(n_rows: usize, n_cols: usize, rows: &[&[u32]]) -> Csr {
        let t: Vec<(u32, u32, f32)> = rows
            .iter()
            .enumerate()
            .flat_map(|(r, cols)| cols.iter().map(move |&c| (r as u32, c, 1.0)))
            .collect();
        Csr::from_triplets(n_rows, n_cols, &t).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// A small deterministic pseudo-random sequence in [-0.5, 0.5).
    fn noise(len: usize, salt: u64) -> Vec<f32> {
        let mut x = salt.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Every metric by its definition, O(n_items * |T_u|) AUC, for cross-checking.
    fn naive(scores: &[f32], n_items: usize, train: &Csr, test: &Csr, n: usize) -> RankingMetrics {
        let mut per_user = Vec::new();
        for u in 0..train.n_rows {
            let tr = train.view().row(u).0;
            let pos: Vec<i32> = test
                .view()
                .row(u)
                .0
                .iter()
                .copied()
                .filter(|t| !tr.contains(t))
                .collect();
            if pos.is_empty() {
                continue;
            }
            let s = &scores[u * n_items..(u + 1) * n_items];
            let mut ranked: Vec<usize> = (0..n_items).filter(|&i| !tr.contains(&(i as i32))).collect();
            ranked.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            ranked.truncate(n);
            let (mut hits, mut dcg, mut ap) = (0, 0.0, 0.0);
            for (r, &i) in ranked.iter().enumerate() {
                if pos.contains(&(i as i32)) {
                    hits += 1;
                    dcg += 1.0 / ((r + 2) as f64).log2();
                    ap += hits as f64 / (r + 1) as f64;
                }
            }
            let ideal = pos.len().min(n);
            let idcg: f64 = (0..ideal).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
            let negs: Vec<usize> = (0..n_items)
                .filter(|&i| !tr.contains(&(i as i32)) && !pos.contains(&(i as i32)))
                .collect();
            let mut wins = 0.0;
            for &p in &pos {
                for &j in &negs {
                    let (a, b) = (s[p as usize], s[j]);
                    wins += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            let auc = (!negs.is_empty()).then(|| wins / (pos.len() * negs.len()) as f64);
            per_user.push(UserMetrics {
                precision: hits as f64 / n as f64,
                recall: hits as f64 / pos.len() as f64,
                ndcg: dcg / idcg,
                ap: ap / ideal as f64,
                auc,
            });
        }
        summarise(per_user.iter())
    }

    #[test]
    fn hand_worked_example() {
        // dim 1: item i scores 0.9 - 0.1 i for user 0 (factor 1), the reverse for user 1
        // (factor -1), 0 everywhere for user 3 (factor 0: all ties). User 2 has no test.
        let items: Vec<f32> = (0..8).map(|i| 0.9 - 0.1 * i as f32).collect();
        let users = [1.0, -1.0, 1.0, 0.0];
        let train = csr(4, 8, &[&[1], &[], &[0, 1], &[]]);
        let test = csr(4, 8, &[&[2, 5, 7], &[0, 7], &[], &[3]]);
        let m = ranking_metrics(&users, &items, 1, train.view(), test.view(), 3).unwrap();

        let l3 = 1.0 / 3f64.log2(); // discount of rank 1
        // User 0: ranking without item 1 is 0, 2, 3 | 4, 5, 6, 7. One hit (item 2, rank 1).
        //   negatives 0, 3, 4, 6 vs test 2 (beats 3, 4, 6), 5 (beats 6), 7 (none): 4 / 12.
        let u0 = (
            1.0 / 3.0,
            1.0 / 3.0,
            l3 / (1.0 + l3 + 0.5),
            (1.0 / 2.0) / 3.0,
            4.0 / 12.0,
        );
        // User 1: ranking 7, 6, 5. One hit (item 7, rank 0).
        //   negatives 1..=6 vs test 7 (beats all 6), 0 (none): 6 / 12.
        let u1 = (1.0 / 3.0, 1.0 / 2.0, 1.0 / (1.0 + l3), 1.0 / 2.0, 6.0 / 12.0);
        // User 3: all scores tie, ranking 0, 1, 2 (lower id first): no hit; AUC 7 ties / 7 = 1/2.
        let u3 = (0.0, 0.0, 0.0, 0.0, 0.5);
        let mean = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| (f(&u0) + f(&u1) + f(&u3)) / 3.0;

        assert_eq!(m.users_evaluated, 3);
        assert!(close(m.precision, mean(|u| u.0)) && close(m.precision, 2.0 / 9.0));
        assert!(close(m.recall, mean(|u| u.1)) && close(m.recall, 5.0 / 18.0));
        assert!(close(m.f1, 20.0 / 81.0)); // 2 (2/9)(5/18) / (2/9 + 5/18)
        assert!(close(m.ndcg, mean(|u| u.2)), "{m:?}");
        assert!(close(m.map, mean(|u| u.3)) && close(m.map, 2.0 / 9.0));
        assert!(close(m.auc, mean(|u| u.4)) && close(m.auc, 4.0 / 9.0));
    }

    /// Random factors; each user's test items are the `k` best (or worst) non-train items.
    fn planted(best: bool) -> (Vec<f32>, Vec<f32>, Csr, Csr) {
        let (n_users, n_items, dim, k) = (150, 300, 4, 5);
        let uf = noise(n_users * dim, 1);
        let itf = noise(n_items * dim, 2);
        let (mut tr, mut te) = (Vec::new(), Vec::new());
        for u in 0..n_users {
            let score = |i: usize| (0..dim).map(|d| uf[u * dim + d] * itf[i * dim + d]).sum::<f32>();
            let train_items = [(u * 7) % n_items, (u * 13 + 5) % n_items];
            let mut order: Vec<usize> = (0..n_items).filter(|i| !train_items.contains(i)).collect();
            order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            if !best {
                order.reverse();
            }
            tr.extend(train_items.iter().map(|&i| (u as u32, i as u32, 1.0)));
            te.extend(order[..k].iter().map(|&i| (u as u32, i as u32, 1.0)));
        }
        let train = Csr::from_triplets(n_users, n_items, &tr).unwrap();
        let test = Csr::from_triplets(n_users, n_items, &te).unwrap();
        (uf, itf, train, test)
    }

    #[test]
    fn perfect_ranking_scores_one_and_reversed_scores_zero() {
        let (uf, itf, train, test) = planted(true);
        let m = ranking_metrics(&uf, &itf, 4, train.view(), test.view(), 5).unwrap();
        assert_eq!(m.users_evaluated, 150);
        for v in [m.precision, m.recall, m.f1, m.ndcg, m.map, m.auc] {
            assert!(close(v, 1.0), "{m:?}");
        }
        // N larger than |T_u|: recall, NDCG, MAP stay 1, precision is 5/10.
        let m = ranking_metrics(&uf, &itf, 4, train.view(), test.view(), 10).unwrap();
        assert!(close(m.precision, 0.5) && close(m.recall, 1.0) && close(m.ndcg, 1.0) && close(m.map, 1.0));

        let (uf, itf, train, test) = planted(false);
        let m = ranking_metrics(&uf, &itf, 4, train.view(), test.view(), 5).unwrap();
        for v in [m.precision, m.recall, m.f1, m.ndcg, m.map, m.auc] {
            assert!(close(v, 0.0), "{m:?}");
        }
    }

    #[test]
    fn train_items_are_excluded_and_not_counted_as_test() {
        // Scores fall with the item id; items 0 and 1 are train, so item 2 is ranked first.
        let items: Vec<f32> = (0..6).map(|i| 10.0 - i as f32).collect();
        let train = csr(1, 6, &[&[0, 1]]);
        let test = csr(1, 6, &[&[2]]);
        let m = ranking_metrics(&[1.0], &items, 1, train.view(), test.view(), 1).unwrap();
        assert!(close(m.precision, 1.0) && close(m.auc, 1.0));
        // Item 0 in both train and test is not a positive: only item 2 counts.
        let test = csr(1, 6, &[&[0, 2]]);
        let m = ranking_metrics(&[1.0], &items, 1, train.view(), test.view(), 1).unwrap();
        assert!(close(m.recall, 1.0) && close(m.precision, 1.0));
        // A user whose only test item is a train item is not evaluated at all.
        let test = csr(1, 6, &[&[1]]);
        let err = ranking_metrics(&[1.0], &items, 1, train.view(), test.view(), 1).unwrap_err();
        assert!(err.to_string().contains("no user has a test item"), "{err}");
    }

    #[test]
    fn matches_definitions_with_ties_and_item_chunks() {
        // Integer-valued scores force many ties; scores[u][i] is a pure function of (u, i).
        let (n_users, n_items) = (130, 97);
        let raw = noise(n_users * n_items, 3);
        let scores: Vec<f32> = raw.iter().map(|x| (x * 8.0).round()).collect();
        let pick = noise(n_users * n_items, 4);
        let (mut tr, mut te) = (Vec::new(), Vec::new());
        for u in 0..n_users {
            for i in 0..n_items {
                let p = pick[u * n_items + i];
                if p < -0.4 {
                    tr.push((u as u32, i as u32, 1.0));
                } else if p > 0.42 || (u == 5 && p > -0.4) {
                    te.push((u as u32, i as u32, 1.0)); // user 5: no negatives -> no AUC
                }
            }
        }
        let train = Csr::from_triplets(n_users, n_items, &tr).unwrap();
        let test = Csr::from_triplets(n_users, n_items, &te).unwrap();
        let score_block = |users: Range<usize>, items: Range<usize>, out: &mut [f32]| {
            for (r, u) in users.enumerate() {
                let w = items.len();
                out[r * w..(r + 1) * w].copy_from_slice(&scores[u * n_items + items.start..u * n_items + items.end]);
            }
        };
        let want = naive(&scores, n_items, &train, &test, 7);
        for (user_block, item_chunk) in [(64, n_items), (64, 10), (7, 1), (1, 1000)] {
            let layout = Layout { user_block, item_chunk };
            let got = evaluate(n_users, n_items, train.view(), test.view(), 7, &score_block, layout).unwrap();
            assert_eq!(got.users_evaluated, want.users_evaluated);
            for (a, b) in [
                (got.precision, want.precision),
                (got.recall, want.recall),
                (got.f1, want.f1),
                (got.ndcg, want.ndcg),
                (got.map, want.map),
                (got.auc, want.auc),
            ] {
                assert!((a - b).abs() < 1e-9, "{layout:?}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn layout_keeps_the_buffer_within_budget() {
        for n_items in [0, 1, 5000, 16_384, 50_000, 131_072, 384_546, 10_000_000] {
            let l = Layout::for_items(n_items);
            assert!(l.user_block * l.item_chunk <= SCORE_BUDGET, "{n_items}: {l:?}");
            assert!((MIN_USER_BLOCK..=MAX_USER_BLOCK).contains(&l.user_block));
            // The paper's 50,000 songs fit one chunk: no second scoring pass.
            if n_items <= 50_000 {
                assert!(l.item_chunk >= n_items, "{n_items}: {l:?}");
            }
        }
    }

    #[test]
    fn identical_for_any_thread_count() {
        let (n_users, n_items, dim) = (300, 500, 8);
        let uf = noise(n_users * dim, 5);
        let itf = noise(n_items * dim, 6);
        let pick = noise(n_users * n_items, 7);
        let (mut tr, mut te) = (Vec::new(), Vec::new());
        for (k, &p) in pick.iter().enumerate() {
            let (u, i) = ((k / n_items) as u32, (k % n_items) as u32);
            if p > 0.45 {
                tr.push((u, i, 1.0));
            } else if p < -0.47 {
                te.push((u, i, 1.0));
            }
        }
        let train = Csr::from_triplets(n_users, n_items, &tr).unwrap();
        let test = Csr::from_triplets(n_users, n_items, &te).unwrap();
        let run = || ranking_metrics(&uf, &itf, dim, train.view(), test.view(), 10).unwrap();
        let one = with_threads(1, run).unwrap();
        let two = with_threads(2, run).unwrap();
        assert_eq!(one, two);
        assert!(one.users_evaluated > 250);
    }

    #[test]
    fn popularity_baseline_ranks_by_train_counts() {
        let train = csr(4, 5, &[&[0, 1], &[1, 2], &[1], &[0, 1, 3]]);
        assert_eq!(popularity_scores(train.view()), vec![2.0, 4.0, 1.0, 1.0, 0.0]);
        // User 2 (train {1}) ranks 0 (2 plays), then 2 and 3 tie (lower id first).
        let test = csr(4, 5, &[&[], &[], &[0, 3], &[]]);
        let m = popularity_ranking_metrics(train.view(), test.view(), 2).unwrap();
        assert_eq!(m.users_evaluated, 1);
        assert!(close(m.precision, 0.5) && close(m.recall, 0.5));
        // Same as a one-factor model whose item factor is the popularity.
        let pop = popularity_scores(train.view());
        let f = ranking_metrics(&[1.0; 4], &pop, 1, train.view(), test.view(), 2).unwrap();
        assert_eq!(m, f);
        // Negatives 2 (tie) and 4 (below) vs test 0 (beats both) and 3 (ties 2, beats 4).
        assert!(close(m.auc, 3.5 / 4.0));
    }

    #[test]
    fn rejects_bad_shapes() {
        let train = csr(2, 3, &[&[0], &[1]]);
        let test = csr(2, 3, &[&[1], &[2]]);
        let (u, i) = (vec![0.1f32; 4], vec![0.1f32; 6]);
        let check = |r: Result<RankingMetrics>, needle: &str| {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        };
        // Factors of a transposed problem: 3 users x 2 items.
        check(
            ranking_metrics(&i, &u, 2, train.view(), test.view(), 1),
            "users x items",
        );
        check(ranking_metrics(&u, &u, 2, train.view(), test.view(), 1), "item_factors");
        let test_t = test.view().transpose();
        check(
            ranking_metrics(&u, &i, 2, train.view(), test_t.view(), 1),
            "test is 3 x 2",
        );
        check(ranking_metrics(&u, &i, 2, train.view(), test.view(), 0), "at least 1");
        check(ranking_metrics(&[], &[], 0, train.view(), test.view(), 1), "dimension");
        let nan = vec![f32::NAN; 4];
        check(ranking_metrics(&nan, &i, 2, train.view(), test.view(), 1), "NaN");
        check(
            ranking_metrics_with(2, 4, train.view(), test.view(), 1, |_, _, _| {}),
            "users x items",
        );
        let empty = csr(2, 3, &[]);
        check(
            ranking_metrics(&u, &i, 2, train.view(), empty.view(), 1),
            "no user has a test item",
        );
    }

    #[test]
    fn random_baseline_is_chance_and_deterministic() {
        let rows: Vec<Vec<u32>> = (0..200u32)
            .map(|u| (0..10).map(|j| (u * 7 + j * 13) % 500).collect())
            .collect();
        let train_rows: Vec<&[u32]> = rows.iter().map(|r| &r[..5]).collect();
        let test_rows: Vec<&[u32]> = rows.iter().map(|r| &r[5..]).collect();
        let (train, test) = (csr(200, 500, &train_rows), csr(200, 500, &test_rows));
        let a = random_ranking_metrics(train.view(), test.view(), 10, 3).unwrap();
        let b = with_threads(1, || random_ranking_metrics(train.view(), test.view(), 10, 3).unwrap()).unwrap();
        assert_eq!(a, b);
        assert!((a.auc - 0.5).abs() < 0.03, "{a:?}");
        // Expected recall@10 of a random ranking over ~495 candidates is about 10/495.
        assert!(a.recall < 0.06, "{a:?}");
        assert_ne!(a, random_ranking_metrics(train.view(), test.view(), 10, 4).unwrap());
    }
}
