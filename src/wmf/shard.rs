//! One worker's share of an ALS fit spread over several processes (musrec.distributed):
//! a range of rows of one side with their confidences, solved against the other side's
//! factors and Gram matrix that the coordinator sends once per half-sweep.
//!
//! A row's solution depends only on its own plays, the fixed factors, the Gram matrix and its
//! warm start, never on which other rows share its block or thread, so the rows solved shard
//! by shard are bit for bit those of [`super::fit`].

use super::{WmfParams, check_counts, drop_zeros, random_factors, sweep, to_confidences};
use crate::ensure;
use crate::error::Result;
use crate::parallel::Threads;
use crate::sparse::{Csr, CsrRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Rows of one side (users x items, or items x users) prepared as [`super::fit`] prepares them.
pub struct Shard {
    params: WmfParams,
    /// The confidences in place of the play counts (all the solver reads).
    rows: Csr,
}

impl Shard {
    /// `rows` holds play counts: stored zeros are dropped, confidences precomputed.
    pub fn new(params: &WmfParams, rows: CsrRef<'_>) -> Result<Shard> {
        params.validate()?;
        check_counts(rows)?;
        let mut rows = drop_zeros(rows);
        to_confidences(params, &mut rows.data);
        Ok(Shard {
            params: params.clone(),
            rows,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.rows.n_rows
    }

    pub fn nnz(&self) -> usize {
        self.rows.data.len()
    }

    /// Overwrite `x` (the shard's rows x factors, also the conjugate-gradient warm start)
    /// with the half-step solution against `fixed` and `gram` = [`super::fold_in_gram`]`(fixed)`.
    pub fn solve(&self, x: &mut [f32], fixed: &[f32], gram: &[f32], threads: &Threads) -> Result<()> {
        let k = self.params.factors;
        ensure!(
            x.len() == self.rows.n_rows * k,
            "the shard has {} rows of {k} factors but {} values were given",
            self.rows.n_rows,
            x.len()
        );
        ensure!(
            fixed.len() == self.rows.n_cols * k,
            "the shard's rows have {} columns but the fixed factors have {} rows",
            self.rows.n_cols,
            fixed.len() / k
        );
        ensure!(gram.len() == k * k, "the Gram matrix is not {k} x {k}");
        super::half_sweep(threads, || {
            let rows = (self.rows.view(), &self.rows.data[..]);
            sweep::solve_side_with_gram(x, (fixed, gram, k), rows, &self.params, &mut Vec::new())
        })
    }
}

/// The factors [`super::fit`] starts from without a warm start: users, then items, uniform
/// in [0, 0.01) from ChaCha8 seeded by `params.seed`.
pub fn initial_factors(params: &WmfParams, n_users: usize, n_items: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let x = random_factors(n_users, params.factors, &mut rng);
    (x, random_factors(n_items, params.factors, &mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::ignore_progress;

    fn rows(m: CsrRef<'_>, range: std::ops::Range<usize>) -> Csr {
        let mut out = Csr::with_capacity(m.n_cols, range.len(), m.nnz());
        for row in range {
            let (cols, vals) = m.row(row);
            out.push_row(cols.iter().copied().zip(vals.iter().copied()));
        }
        out
    }

    #[test]
    fn shards_reproduce_the_local_fit_bit_for_bit() {
        let triplets: Vec<(u32, u32, f32)> = (0..40u32)
            .flat_map(|u| {
                (0..25u32)
                    .filter(move |i| (u * 7 + i * 3) % 5 == 0)
                    .map(move |i| (u, i, (1 + (u + i) % 4) as f32))
            })
            .collect();
        let m = Csr::from_triplets(40, 25, &triplets).unwrap();
        let params = WmfParams {
            factors: 6,
            iterations: 3,
            seed: 7,
            ..WmfParams::default()
        };
        let threads = Threads::new(2).unwrap();
        let (local, _) = super::super::fit(&params, m.view(), None, &threads, &mut ignore_progress).unwrap();

        let items = m.view().transpose();
        let shard = |side: CsrRef<'_>, r: std::ops::Range<usize>| {
            (r.clone(), Shard::new(&params, rows(side, r).view()).unwrap())
        };
        let user_shards = [shard(m.view(), 0..17), shard(m.view(), 17..40)];
        let item_shards = [shard(items.view(), 0..9), shard(items.view(), 9..25)];
        let k = params.factors;
        let one = Threads::new(1).unwrap();
        let (mut x, mut y) = initial_factors(&params, 40, 25);
        for _ in 0..params.iterations {
            let gram = super::super::fold_in_gram(&params, &y);
            for (r, s) in &user_shards {
                s.solve(&mut x[r.start * k..r.end * k], &y, &gram, &one).unwrap();
            }
            let gram = super::super::fold_in_gram(&params, &x);
            for (r, s) in &item_shards {
                s.solve(&mut y[r.start * k..r.end * k], &x, &gram, &one).unwrap();
            }
        }
        assert_eq!(x, local.user_factors);
        assert_eq!(y, local.item_factors);
    }

    /// `rows` with its columns renumbered to the ones it uses (in order), and those columns.
    fn compact(m: &Csr) -> (Csr, Vec<usize>) {
        let mut used: Vec<usize> = m.indices.iter().map(|&c| c as usize).collect();
        used.sort_unstable();
        used.dedup();
        let mut out = Csr::with_capacity(used.len(), m.n_rows, m.data.len());
        for row in 0..m.n_rows {
            let (cols, vals) = m.view().row(row);
            let local = cols.iter().map(|&c| used.binary_search(&(c as usize)).unwrap() as i32);
            out.push_row(local.zip(vals.iter().copied()));
        }
        (out, used)
    }

    #[test]
    fn compacted_shards_with_gram_parts_reproduce_the_local_fit() {
        // What musrec.distributed does: each shard holds only the columns its rows use and is
        // sent only those rows of the fixed side; the Gram matrix comes from the owners' parts.
        let (n_users, n_items) = (40usize, 25usize);
        let triplets: Vec<(u32, u32, f32)> = (0..n_users as u32)
            .flat_map(|u| {
                (0..n_items as u32)
                    .filter(move |i| (u * 7 + i * 3) % 5 == 0 || (u < 10 && i % 2 == 0))
                    .map(move |i| (u, i, (1 + (u + i) % 4) as f32))
            })
            .collect();
        let m = Csr::from_triplets(n_users, n_items, &triplets).unwrap();
        let params = WmfParams {
            factors: 6,
            iterations: 3,
            seed: 11,
            ..WmfParams::default()
        };
        let threads = Threads::new(2).unwrap();
        let (local, _) = super::super::fit(&params, m.view(), None, &threads, &mut ignore_progress).unwrap();
        let items = m.view().transpose();
        let user_cuts = [0, 13, 13, 40];
        let item_cuts = [0, 9, 20, 25];
        let shards = |side: CsrRef<'_>, cuts: &[usize]| -> Vec<(std::ops::Range<usize>, Shard, Vec<usize>)> {
            cuts.windows(2)
                .map(|w| {
                    let (local, used) = compact(&rows(side, w[0]..w[1]));
                    (w[0]..w[1], Shard::new(&params, local.view()).unwrap(), used)
                })
                .collect()
        };
        let user_shards = shards(m.view(), &user_cuts);
        let item_shards = shards(items.view(), &item_cuts);
        assert!(user_shards.iter().any(|(_, _, used)| used.len() < n_items));
        let k = params.factors;
        let one = Threads::new(1).unwrap();
        let half = |x: &mut [f32],
                    fixed: &[f32],
                    n_fixed: usize,
                    fixed_cuts: &[usize],
                    shards: &[(std::ops::Range<usize>, Shard, Vec<usize>)]| {
            let parts: Vec<super::super::GramPart> = fixed_cuts
                .windows(2)
                .map(|w| super::super::GramPart::new(k, w[0], &fixed[w[0] * k..w[1] * k]).unwrap())
                .collect();
            let gram = super::super::gram_from_parts(&params, n_fixed, &parts).unwrap();
            assert_eq!(gram, super::super::fold_in_gram(&params, fixed));
            for (r, s, used) in shards {
                let gathered: Vec<f32> = used
                    .iter()
                    .flat_map(|&c| fixed[c * k..(c + 1) * k].iter().copied())
                    .collect();
                s.solve(&mut x[r.start * k..r.end * k], &gathered, &gram, &one).unwrap();
            }
        };
        let (mut x, mut y) = initial_factors(&params, n_users, n_items);
        for _ in 0..params.iterations {
            half(&mut x, &y, n_items, &item_cuts, &user_shards);
            half(&mut y, &x, n_users, &user_cuts, &item_shards);
        }
        assert_eq!(x, local.user_factors);
        assert_eq!(y, local.item_factors);
    }
}
