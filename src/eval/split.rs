//! Random per-user hold-out of interactions: the train/test split the ranking metrics
//! evaluate on.

use crate::ensure;
use crate::error::Result;
use crate::sparse::{Csr, CsrRef};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows per parallel task: big enough to amortise scheduling, small enough to balance.
const ROW_BLOCK: usize = 1024;

/// Split each user's (row's) interactions at random into a train and a test matrix.
///
/// A user with `nnz_u >= 2` interactions holds out `round(test_fraction * nnz_u)` of them,
/// clamped to `[1, nnz_u - 1]` so that every such user keeps at least one interaction on
/// each side; a user with 0 or 1 interaction keeps everything in train. Both outputs have
/// `m`'s shape, canonical (sorted) rows, and the stored values (play counts) of `m`.
///
/// Row `u` draws from its own ChaCha8 stream (`seed`, stream `u`), so the split depends
/// only on `seed`, never on the number of threads.
pub fn train_test_split(m: CsrRef<'_>, test_fraction: f64, seed: u64) -> Result<(Csr, Csr)> {
    ensure!(
        test_fraction > 0.0 && test_fraction < 1.0,
        "test_fraction must be strictly between 0 and 1, got {test_fraction}"
    );
    let starts: Vec<usize> = (0..m.n_rows).step_by(ROW_BLOCK).collect();
    let blocks: Vec<(Part, Part)> = starts
        .par_iter()
        .map(|&lo| split_rows(m, lo, (lo + ROW_BLOCK).min(m.n_rows), test_fraction, seed))
        .collect();
    let (train, test): (Vec<Part>, Vec<Part>) = blocks.into_iter().unzip();
    Ok((assemble(m, train), assemble(m, test)))
}

/// How many of a row's `nnz` interactions go to test.
fn held_out_count(nnz: usize, test_fraction: f64) -> usize {
    if nnz < 2 {
        return 0;
    }
    ((test_fraction * nnz as f64).round() as usize).clamp(1, nnz - 1)
}

/// The rows of one block of one side of the split.
#[derive(Default)]
struct Part {
    row_nnz: Vec<i64>,
    indices: Vec<i32>,
    data: Vec<f32>,
}

impl Part {
    fn push(&mut self, col: i32, value: f32) {
        self.indices.push(col);
        self.data.push(value);
    }
}

fn split_rows(m: CsrRef<'_>, lo: usize, hi: usize, test_fraction: f64, seed: u64) -> (Part, Part) {
    let (mut train, mut test) = (Part::default(), Part::default());
    // Scratch reused across the block's rows.
    let mut order: Vec<u32> = Vec::new();
    let mut is_test: Vec<bool> = Vec::new();
    for row in lo..hi {
        let (cols, vals) = m.row(row);
        let k = held_out_count(cols.len(), test_fraction);
        is_test.clear();
        is_test.resize(cols.len(), false);
        if k > 0 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(row as u64);
            order.clear();
            order.extend(0..cols.len() as u32);
            let (chosen, _) = order.partial_shuffle(&mut rng, k);
            for &p in chosen.iter() {
                is_test[p as usize] = true;
            }
        }
        // Walking the row in order keeps both outputs sorted.
        for ((&c, &v), &t) in cols.iter().zip(vals).zip(&is_test) {
            if t { test.push(c, v) } else { train.push(c, v) }
        }
        test.row_nnz.push(k as i64);
        train.row_nnz.push((cols.len() - k) as i64);
    }
    (train, test)
}

/// Concatenate the blocks (in row order) into one matrix of `m`'s shape.
fn assemble(m: CsrRef<'_>, parts: Vec<Part>) -> Csr {
    let nnz: usize = parts.iter().map(|p| p.indices.len()).sum();
    let mut out = Csr::with_capacity(m.n_cols, m.n_rows, nnz);
    out.n_rows = m.n_rows;
    let mut end = 0i64;
    for part in parts {
        for n in part.row_nnz {
            end += n;
            out.indptr.push(end);
        }
        out.indices.extend_from_slice(&part.indices);
        out.data.extend_from_slice(&part.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::with_threads;

    /// A matrix whose rows have 0, 1, 2, ... interactions (mod 13), values = a unique code
    /// of (row, col) so we can check that values travel with their entries.
    fn ladder(n_rows: usize, n_cols: usize) -> Csr {
        let mut t = Vec::new();
        for r in 0..n_rows {
            let len = r % 13;
            for j in 0..len {
                let c = (r * 7 + j * 31) % n_cols;
                t.push((r as u32, c as u32, (r * n_cols + c) as f32));
            }
        }
        Csr::from_triplets(n_rows, n_cols, &t).unwrap()
    }

    fn entries(m: &Csr, row: usize) -> Vec<(i32, f32)> {
        let (c, v) = m.view().row(row);
        c.iter().copied().zip(v.iter().copied()).collect()
    }

    #[test]
    fn disjoint_union_is_original_and_canonical() {
        let m = ladder(3000, 500);
        let (train, test) = train_test_split(m.view(), 0.2, 7).unwrap();
        for out in [&train, &test] {
            assert_eq!((out.n_rows, out.n_cols), (m.n_rows, m.n_cols));
            // CsrRef::new checks sortedness, uniqueness and ranges.
            CsrRef::new(out.n_rows, out.n_cols, &out.indptr, &out.indices, &out.data).unwrap();
        }
        for r in 0..m.n_rows {
            let (a, b) = (entries(&train, r), entries(&test, r));
            assert!(a.iter().all(|x| !b.iter().any(|y| y.0 == x.0)), "row {r} overlaps");
            let mut union = [a, b].concat();
            union.sort_by_key(|e| e.0);
            assert_eq!(union, entries(&m, r), "row {r}");
        }
        assert_eq!(train.indices.len() + test.indices.len(), m.indices.len());
    }

    #[test]
    fn holds_out_the_rounded_clamped_fraction() {
        let m = ladder(500, 300);
        for frac in [0.01, 0.2, 0.5, 0.99] {
            let (train, test) = train_test_split(m.view(), frac, 1).unwrap();
            for r in 0..m.n_rows {
                let nnz = m.view().row_nnz(r);
                let want = match nnz {
                    0 | 1 => 0,
                    _ => ((frac * nnz as f64).round() as usize).clamp(1, nnz - 1),
                };
                assert_eq!(test.view().row_nnz(r), want, "frac {frac} row {r} nnz {nnz}");
                assert_eq!(train.view().row_nnz(r), nnz - want);
            }
        }
        // Spot values of the rule itself.
        assert_eq!(held_out_count(10, 0.2), 2);
        assert_eq!(held_out_count(2, 0.01), 1);
        assert_eq!(held_out_count(2, 0.99), 1);
        assert_eq!(held_out_count(1, 0.5), 0);
        assert_eq!(held_out_count(5, 0.5), 3); // round half away from zero
    }

    #[test]
    fn deterministic_for_a_seed_and_thread_count() {
        let m = ladder(5000, 400);
        let one = with_threads(1, || train_test_split(m.view(), 0.3, 99).unwrap()).unwrap();
        let two = with_threads(2, || train_test_split(m.view(), 0.3, 99).unwrap()).unwrap();
        let again = train_test_split(m.view(), 0.3, 99).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, again);
    }

    #[test]
    fn seed_changes_the_split() {
        let m = ladder(1000, 400);
        let (_, a) = train_test_split(m.view(), 0.3, 1).unwrap();
        let (_, b) = train_test_split(m.view(), 0.3, 2).unwrap();
        // Same counts per row by construction, different choices.
        assert_eq!(a.indptr, b.indptr);
        assert_ne!(a.indices, b.indices);
    }

    #[test]
    fn rejects_bad_fractions() {
        let m = ladder(10, 10);
        for bad in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let err = train_test_split(m.view(), bad, 0).unwrap_err();
            assert!(err.to_string().contains("test_fraction"), "{bad}: {err}");
        }
    }

    #[test]
    fn empty_matrix_splits_into_empties() {
        let m = Csr::from_triplets(0, 5, &[]).unwrap();
        let (train, test) = train_test_split(m.view(), 0.5, 0).unwrap();
        assert_eq!(train.indptr, vec![0]);
        assert_eq!(test.n_cols, 5);
    }
}
