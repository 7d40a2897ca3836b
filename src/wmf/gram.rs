//! The Gram matrix Y^T Y + reg I of factors spread over shards, equal bit for bit to the one
//! [`super::fold_in_gram`] computes from all rows in one place.
//!
//! The local sum runs over consecutive chunks of [`GRAM_CHUNK_ROWS`] rows, in order. A shard
//! (a contiguous range of rows) computes the product of every chunk that lies inside it and
//! hands over its rows of the chunks it shares with its neighbours (at most one at each end),
//! so what travels is `chunks x k x k` values plus fewer than `2 GRAM_CHUNK_ROWS` rows per
//! shard, not the factors themselves; [`gram_from_parts`] finishes the shared chunks and sums.

use super::WmfParams;
use super::sweep::{GRAM_CHUNK, chunk_grams, sum_chunk_grams};
use crate::ensure;
use crate::error::Result;
use crate::kernels::gram;

/// Rows per partial Gram product: [`super::fold_in_gram`] sums consecutive chunks of this many
/// rows, in order.
pub const GRAM_CHUNK_ROWS: usize = GRAM_CHUNK;

/// One shard's share of a Gram matrix: the rows `first_row..first_row + n_rows` of the factors.
#[derive(Clone, Debug, PartialEq)]
pub struct GramPart {
    pub first_row: usize,
    pub n_rows: usize,
    /// The Gram matrices of the chunks inside the range (chunks x k x k), in order.
    pub chunks: Vec<f32>,
    /// The rows before the first chunk boundary in the range (the end of a chunk begun in an
    /// earlier shard, or all the rows when the range lies inside one chunk).
    pub head: Vec<f32>,
    /// The rows after the last chunk boundary in the range (the start of a chunk that ends in a
    /// later shard, or the last, shorter chunk of all).
    pub tail: Vec<f32>,
}

impl GramPart {
    /// The share of the `rows` (n x `factors`, row-major) that start at row `first_row`.
    pub fn new(factors: usize, first_row: usize, rows: &[f32]) -> Result<GramPart> {
        ensure!(factors >= 1, "factors must be at least 1");
        ensure!(
            rows.len().is_multiple_of(factors),
            "the rows hold {} values, not a multiple of {factors} factors",
            rows.len()
        );
        let n = rows.len() / factors;
        let (lo, hi) = (first_row, first_row + n);
        let a = lo.next_multiple_of(GRAM_CHUNK).min(hi);
        let b = (hi / GRAM_CHUNK * GRAM_CHUNK).max(a);
        let at = |row: usize| (row - lo) * factors;
        Ok(GramPart {
            first_row,
            n_rows: n,
            chunks: chunk_grams(&rows[at(a)..at(b)], factors),
            head: rows[..at(a)].to_vec(),
            tail: rows[at(b)..].to_vec(),
        })
    }
}

/// Y^T Y + regularization I of `n_rows` rows from the shares of contiguous shards covering
/// them in order: [`super::fold_in_gram`] of all the rows, bit for bit.
pub fn gram_from_parts(params: &WmfParams, n_rows: usize, parts: &[GramPart]) -> Result<Vec<f32>> {
    let k = params.factors;
    let mut chunks = Vec::with_capacity(n_rows.div_ceil(GRAM_CHUNK) * k * k);
    // Rows of the chunk being assembled from heads and tails, and the row it starts at.
    let mut pending: Vec<f32> = Vec::new();
    let flush = |pending: &mut Vec<f32>, chunks: &mut Vec<f32>, last: bool| -> Result<()> {
        let rows = pending.len() / k;
        if rows == 0 {
            return Ok(());
        }
        ensure!(
            rows == GRAM_CHUNK || last,
            "the Gram parts leave a chunk of {rows} rows, not {GRAM_CHUNK}"
        );
        let mut g = vec![0f32; k * k];
        gram(rows, k, pending, &mut g);
        chunks.extend_from_slice(&g);
        pending.clear();
        Ok(())
    };
    let mut next = 0;
    for p in parts {
        ensure!(
            p.first_row == next,
            "the Gram parts are not contiguous: one starts at row {} after row {next}",
            p.first_row
        );
        let hi = p.first_row + p.n_rows;
        ensure!(hi <= n_rows, "a Gram part ends at row {hi}, beyond the {n_rows} rows");
        let a = p.first_row.next_multiple_of(GRAM_CHUNK).min(hi);
        let b = (hi / GRAM_CHUNK * GRAM_CHUNK).max(a);
        ensure!(
            p.head.len() == (a - p.first_row) * k
                && p.tail.len() == (hi - b) * k
                && p.chunks.len() == (b - a).div_ceil(GRAM_CHUNK) * k * k,
            "a Gram part of rows {}..{hi} has arrays of the wrong sizes",
            p.first_row
        );
        pending.extend_from_slice(&p.head);
        if a.is_multiple_of(GRAM_CHUNK) || a == n_rows {
            flush(&mut pending, &mut chunks, a == n_rows)?;
        }
        chunks.extend_from_slice(&p.chunks);
        pending.extend_from_slice(&p.tail);
        next = hi;
    }
    ensure!(next == n_rows, "the Gram parts cover {next} of the {n_rows} rows");
    flush(&mut pending, &mut chunks, true)?;
    Ok(sum_chunk_grams(&chunks, k, params.regularization))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_give_the_local_gram_bit_for_bit() {
        let k = 7;
        let n = 2 * GRAM_CHUNK + 1000;
        let y: Vec<f32> = (0..n * k)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 0.1)
            .collect();
        let params = WmfParams {
            factors: k,
            regularization: 0.3,
            ..WmfParams::default()
        };
        let local = super::super::fold_in_gram(&params, &y);
        let cuts_list: [&[usize]; 5] = [
            &[0, n],
            &[0, 3000, 3001, 3001, 9000, n],
            &[0, GRAM_CHUNK, 2 * GRAM_CHUNK, n],
            &[0, 100, 200, 5000, n - 1, n],
            &[0, n, n],
        ];
        for cuts in cuts_list {
            let parts: Vec<GramPart> = cuts
                .windows(2)
                .map(|w| GramPart::new(k, w[0], &y[w[0] * k..w[1] * k]).unwrap())
                .collect();
            assert_eq!(gram_from_parts(&params, n, &parts).unwrap(), local, "cuts {cuts:?}");
        }
        // Inside one chunk, a part is all head.
        let p = GramPart::new(k, 10, &y[10 * k..50 * k]).unwrap();
        assert_eq!((p.head.len(), p.chunks.len(), p.tail.len()), (40 * k, 0, 0));
    }

    #[test]
    fn parts_that_do_not_cover_the_rows_are_an_error() {
        let k = 3;
        let y = vec![0.5f32; 10 * k];
        let params = WmfParams {
            factors: k,
            ..WmfParams::default()
        };
        let part = |lo: usize, hi: usize| GramPart::new(k, lo, &y[lo * k..hi * k]).unwrap();
        let gap = gram_from_parts(&params, 10, &[part(0, 4), part(5, 10)]).unwrap_err();
        assert!(gap.to_string().contains("not contiguous"), "{gap}");
        let short = gram_from_parts(&params, 10, &[part(0, 4)]).unwrap_err();
        assert!(short.to_string().contains("cover 4 of the 10"), "{short}");
        let mut bad = part(0, 10);
        bad.tail.pop();
        assert!(gram_from_parts(&params, 10, &[bad]).is_err());
        assert!(GramPart::new(k, 0, &y[..7]).is_err());
    }
}
