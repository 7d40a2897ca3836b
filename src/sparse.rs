//! Compressed sparse rows, laid out as scipy.sparse.csr_matrix lays them out (int64 indptr,
//! int32 indices, float32 data) so Python arrays cross into Rust without copies.

use crate::ensure;
use crate::error::Result;
use rayon::slice::ParallelSliceMut;

/// A borrowed CSR matrix. Construct with [`CsrRef::new`], which validates the structure;
/// every other function may then index without bounds surprises.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a> {
    pub n_rows: usize,
    pub n_cols: usize,
    pub indptr: &'a [i64],
    pub indices: &'a [i32],
    pub data: &'a [f32],
}

/// An owned CSR matrix with the same layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    pub n_rows: usize,
    pub n_cols: usize,
    pub indptr: Vec<i64>,
    pub indices: Vec<i32>,
    pub data: Vec<f32>,
}

impl<'a> CsrRef<'a> {
    /// Check the structure: indptr monotone from 0 to nnz, column indices in range and
    /// strictly increasing within each row (scipy's canonical format).
    pub fn new(n_rows: usize, n_cols: usize, indptr: &'a [i64], indices: &'a [i32], data: &'a [f32]) -> Result<Self> {
        ensure!(
            indptr.len() == n_rows + 1,
            "indptr has length {} but the matrix has {} rows (expected {})",
            indptr.len(),
            n_rows,
            n_rows + 1
        );
        ensure!(
            indices.len() == data.len(),
            "indices ({}) and data ({}) differ in length",
            indices.len(),
            data.len()
        );
        ensure!(indptr[0] == 0, "indptr must start at 0, found {}", indptr[0]);
        ensure!(
            indptr[n_rows] as usize == indices.len() && indptr[n_rows] >= 0,
            "indptr ends at {} but there are {} stored values",
            indptr[n_rows],
            indices.len()
        );
        ensure!(n_cols <= i32::MAX as usize, "too many columns: {n_cols}");
        for row in 0..n_rows {
            let (lo, hi) = (indptr[row], indptr[row + 1]);
            ensure!(lo <= hi, "indptr decreases at row {row} ({lo} > {hi})");
            ensure!(
                hi as usize <= indices.len(),
                "indptr[{}] = {hi} points past the {} stored values",
                row + 1,
                indices.len()
            );
            let cols = &indices[lo as usize..hi as usize];
            let mut prev = -1i64;
            for &c in cols {
                ensure!(
                    c >= 0 && (c as usize) < n_cols,
                    "column index {c} in row {row} is out of range for {n_cols} columns"
                );
                ensure!(
                    c as i64 > prev,
                    "column indices of row {row} are not sorted and unique; \
                     call sum_duplicates() / sort_indices() on the scipy matrix"
                );
                prev = c as i64;
            }
        }
        Ok(CsrRef {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    #[inline]
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    #[inline]
    pub fn row_range(&self, row: usize) -> std::ops::Range<usize> {
        self.indptr[row] as usize..self.indptr[row + 1] as usize
    }

    #[inline]
    pub fn row(&self, row: usize) -> (&'a [i32], &'a [f32]) {
        let r = self.row_range(row);
        (&self.indices[r.clone()], &self.data[r])
    }

    #[inline]
    pub fn row_nnz(&self, row: usize) -> usize {
        (self.indptr[row + 1] - self.indptr[row]) as usize
    }

    /// Transpose by counting sort; the result's rows stay sorted.
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0i64; self.n_cols + 1];
        for &c in self.indices {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.n_cols {
            counts[i + 1] += counts[i];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0i32; self.nnz()];
        let mut data = vec![0f32; self.nnz()];
        for row in 0..self.n_rows {
            let (cols, vals) = self.row(row);
            for (&c, &v) in cols.iter().zip(vals) {
                let slot = next[c as usize] as usize;
                indices[slot] = row as i32;
                data[slot] = v;
                next[c as usize] += 1;
            }
        }
        Csr {
            n_rows: self.n_cols,
            n_cols: self.n_rows,
            indptr,
            indices,
            data,
        }
    }

    pub fn to_owned(&self) -> Csr {
        Csr {
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            indptr: self.indptr.to_vec(),
            indices: self.indices.to_vec(),
            data: self.data.to_vec(),
        }
    }
}

impl Csr {
    pub fn view(&self) -> CsrRef<'_> {
        CsrRef {
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            indptr: &self.indptr,
            indices: &self.indices,
            data: &self.data,
        }
    }

    /// A matrix with `n_cols` columns and no rows yet, to be filled by [`Csr::push_row`].
    pub fn with_capacity(n_cols: usize, rows: usize, nnz: usize) -> Self {
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0);
        Csr {
            n_rows: 0,
            n_cols,
            indptr,
            indices: Vec::with_capacity(nnz),
            data: Vec::with_capacity(nnz),
        }
    }

    /// Append a row; its columns must be sorted, unique and below `n_cols`.
    pub fn push_row(&mut self, entries: impl IntoIterator<Item = (i32, f32)>) {
        for (c, v) in entries {
            debug_assert!(c >= 0 && (c as usize) < self.n_cols);
            self.indices.push(c);
            self.data.push(v);
        }
        self.indptr.push(self.indices.len() as i64);
        self.n_rows += 1;
    }

    /// Build from (row, col, value) triplets; duplicates are summed, rows come out sorted.
    pub fn from_triplets(n_rows: usize, n_cols: usize, triplets: &[(u32, u32, f32)]) -> Result<Self> {
        Self::from_triplet_vec(n_rows, n_cols, triplets.to_vec())
    }

    /// [`Csr::from_triplets`] consuming its input, which it sorts in place: the loader of the
    /// 48M-line Taste Profile cannot afford a second copy of the triplets.
    pub fn from_triplet_vec(n_rows: usize, n_cols: usize, mut sorted: Vec<(u32, u32, f32)>) -> Result<Self> {
        for &(r, c, _) in &sorted {
            ensure!(
                (r as usize) < n_rows && (c as usize) < n_cols,
                "triplet ({r}, {c}) out of range for a {n_rows} x {n_cols} matrix"
            );
        }
        sorted.par_sort_unstable_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0i64; n_rows + 1];
        let mut indices = Vec::with_capacity(sorted.len());
        let mut data: Vec<f32> = Vec::with_capacity(sorted.len());
        let mut last: Option<(u32, u32)> = None;
        for (r, c, v) in sorted {
            if last == Some((r, c))
                && let Some(previous) = data.last_mut()
            {
                *previous += v; // a duplicate of the entry just pushed: sum them
                continue;
            }
            last = Some((r, c));
            indices.push(c as i32);
            data.push(v);
            indptr[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            indptr[i + 1] += indptr[i];
        }
        Ok(Csr {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_round_trips() {
        let m = Csr::from_triplets(3, 4, &[(0, 1, 1.0), (0, 3, 2.0), (2, 0, 3.0), (2, 1, 4.0), (0, 1, 1.0)]).unwrap();
        assert_eq!(m.data, vec![2.0, 2.0, 3.0, 4.0]);
        let t = m.view().transpose();
        assert_eq!(t.indptr, vec![0, 1, 3, 3, 4]);
        assert_eq!(t.view().transpose(), m);
    }

    #[test]
    fn rejects_bad_structure() {
        assert!(CsrRef::new(1, 2, &[0, 2], &[1, 0], &[1.0, 1.0]).is_err()); // unsorted
        assert!(CsrRef::new(1, 2, &[0, 1], &[2], &[1.0]).is_err()); // out of range
        assert!(CsrRef::new(2, 2, &[0, 1], &[0], &[1.0]).is_err()); // indptr length
        assert!(CsrRef::new(1, 2, &[0, 2], &[0, 0], &[1.0, 1.0]).is_err()); // duplicate
        assert!(CsrRef::new(2, 2, &[0, 5, 1], &[0], &[1.0]).is_err()); // past the end, then back
        assert!(CsrRef::new(1, 2, &[0, 1], &[1], &[1.0]).is_ok());
    }
}
