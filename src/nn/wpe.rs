//! The weighted prediction error (WPE) objective of van den Oord, Dieleman and Schrauwen
//! (2013): a network predicting song `i`'s vector `ŷ` is scored by WMF's own loss for that
//! song, `Σ_u c_ui (p_ui - x_uᵀ ŷ)²`, instead of the squared distance to the fitted vector.
//!
//! Up to a constant (and WMF's tiny ridge term) that loss is the Mahalanobis distance
//! `(ŷ - y_i)ᵀ A_i (ŷ - y_i)` with `A_i = XᵀX + Σ_{u plays i} (c_ui - 1) x_u x_uᵀ`, the
//! Hessian of the song's half-step. A song heard by few listeners has a target fitted from
//! little evidence: WPE lets the network miss it in the directions no listener pins down,
//! and holds it to the directions its listeners do. Stored low-rank, as the users' vectors
//! and each song's listeners with their weights `c - 1`, so memory grows with the plays,
//! not with songs x factors².
//!
//! Measured on the real-sound world (new artists, seed 0; `benchmarks/cold_start_probe.py`
//! in numpy before this module): an MLP on the whole song's descriptors reached recall@10
//! 0.160 with MSE and 0.215 with WPE; on the excerpts' descriptors 0.143 and 0.170. A linear
//! model gains nothing (WPE in closed form 0.158 against ridge's 0.160).

use crate::ensure;
use crate::error::Result;
use crate::sparse::CsrRef;
use crate::wmf::WmfParams;
use candle_core::{Device, Tensor};

/// Each song's WPE metric, normalised so that its trace averages `n_factors` over the songs:
/// the loss then reads in the units of the plain MSE (so learning rates and clipping carry
/// over).
#[derive(Clone, Debug, PartialEq)]
pub struct SongMetric {
    pub n_factors: usize,
    /// XᵀX over all users, divided by the normalisation (k x k, row-major).
    gram: Vec<f32>,
    /// The users' vectors divided by the square root of the normalisation.
    users: Vec<f32>,
    /// Per song (row), its listeners and their weights c_ui - 1 (CSR).
    indptr: Vec<usize>,
    listeners: Vec<u32>,
    weights: Vec<f32>,
}

impl SongMetric {
    /// From the WMF user vectors (`n_users x k`, row-major), each song's play counts per user
    /// (`songs`: one row per song, columns are users) and the WMF settings that turned counts
    /// into confidences.
    pub fn new(users: &[f32], n_factors: usize, songs: CsrRef, params: &WmfParams) -> Result<Self> {
        let k = n_factors;
        ensure!(
            k > 0 && users.len().is_multiple_of(k),
            "the users' vectors are not a (users x {k}) array"
        );
        ensure!(
            users.iter().all(|v| v.is_finite()),
            "the users' vectors contain NaN or infinite values"
        );
        let n_users = users.len() / k;
        ensure!(
            songs.n_cols == n_users,
            "plays cover {} users but {n_users} user vectors were given",
            songs.n_cols
        );
        ensure!(songs.n_rows > 0, "plays cover no songs");
        params.validate()?;
        let mut gram = vec![0.0f64; k * k];
        for x in users.chunks_exact(k) {
            for (a, &xa) in x.iter().enumerate() {
                let row = &mut gram[a * k..(a + 1) * k];
                row.iter_mut().zip(x).for_each(|(g, &xb)| *g += (xa * xb) as f64);
            }
        }
        let norms: Vec<f64> = users
            .chunks_exact(k)
            .map(|x| x.iter().map(|&v| (v * v) as f64).sum())
            .collect();
        let mut indptr = vec![0usize];
        let (mut listeners, mut weights) = (Vec::new(), Vec::new());
        let mut extra = 0.0f64;
        for song in 0..songs.n_rows {
            let (users_of, counts) = songs.row(song);
            for (&u, &r) in users_of.iter().zip(counts) {
                ensure!(
                    r.is_finite() && r >= 0.0,
                    "song {song}: play count {r} of user {u} is not a finite number >= 0"
                );
                if r == 0.0 {
                    continue;
                }
                let w = params.confidence_of(r) - 1.0;
                listeners.push(u as u32);
                weights.push(w);
                extra += w as f64 * norms[u as usize];
            }
            indptr.push(listeners.len());
        }
        let trace: f64 = (0..k).map(|a| gram[a * k + a]).sum();
        let scale = (trace + extra / songs.n_rows as f64) / k as f64;
        ensure!(
            scale > 0.0 && scale.is_finite(),
            "the users' vectors are all zero: WPE has no metric"
        );
        let root = scale.sqrt() as f32;
        Ok(SongMetric {
            n_factors: k,
            gram: gram.iter().map(|&g| (g / scale) as f32).collect(),
            users: users.iter().map(|&v| v / root).collect(),
            indptr,
            listeners,
            weights,
        })
    }

    pub fn n_songs(&self) -> usize {
        self.indptr.len() - 1
    }

    /// The batch's share: the Gram matrix (k, k), and for every (song, listener) pair of
    /// `rows` the listener's vector times sqrt(c - 1) (pairs, k) with the song's position in
    /// the batch (pairs,); None for the pairs when no song of the batch has a listener.
    pub fn batch(&self, rows: &[usize]) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let k = self.n_factors;
        let dev = &Device::Cpu;
        let gram = Tensor::from_vec(self.gram.clone(), (k, k), dev)?;
        let mut vectors = Vec::new();
        let mut positions = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            ensure!(
                r < self.n_songs(),
                "song {r} has no WPE metric ({} songs)",
                self.n_songs()
            );
            for p in self.indptr[r]..self.indptr[r + 1] {
                let u = self.listeners[p] as usize;
                let s = self.weights[p].sqrt();
                vectors.extend(self.users[u * k..(u + 1) * k].iter().map(|v| v * s));
                positions.push(i as u32);
            }
        }
        if positions.is_empty() {
            return Ok((gram, None));
        }
        let n = positions.len();
        Ok((
            gram,
            Some((
                Tensor::from_vec(vectors, (n, k), dev)?,
                Tensor::from_vec(positions, n, dev)?,
            )),
        ))
    }

    /// Σ over the rows of `errors` (batch, k) of eᵀ A e, divided by batch x k: the batch's
    /// WPE in the units of the MSE.
    pub fn loss(gram: &Tensor, pairs: Option<&(Tensor, Tensor)>, errors: &Tensor) -> Result<Tensor> {
        let (b, k) = errors.dims2()?;
        let mut total = (errors.matmul(gram)? * errors)?.sum_all()?;
        if let Some((vectors, positions)) = pairs {
            let picked = errors.index_select(positions, 0)?;
            let dots = (picked * vectors)?.sum(1)?;
            total = (total + dots.sqr()?.sum_all()?)?;
        }
        Ok((total / (b * k) as f64)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::Csr;

    /// The metric's loss equals WMF's per-song loss Σ_u c (p - xᵀŷ)² minus its value at the
    /// half-step's own solution, up to the normalisation, computed densely.
    #[test]
    fn the_loss_is_wmf_loss_around_the_fitted_vector() {
        let (n_users, k) = (7, 3);
        let users: Vec<f32> = (0..n_users * k).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let params = WmfParams {
            alpha: 2.0,
            ..WmfParams::default()
        };
        // Two songs: one with three listeners, one with none.
        let songs = Csr::from_triplets(2, n_users, &[(0, 1, 3.0), (0, 4, 1.0), (0, 6, 5.0)]).unwrap();
        let metric = SongMetric::new(&users, k, songs.view(), &params).unwrap();
        let c = |u: usize| match u {
            1 => 1.0 + 2.0 * 3.0,
            4 => 1.0 + 2.0,
            6 => 1.0 + 2.0 * 5.0,
            _ => 1.0,
        };
        let dense_a = |song: usize| {
            let mut a = vec![0.0f64; k * k];
            for u in 0..n_users {
                let w = if song == 0 { c(u) } else { 1.0 };
                for p in 0..k {
                    for q in 0..k {
                        a[p * k + q] += w * (users[u * k + p] * users[u * k + q]) as f64;
                    }
                }
            }
            a
        };
        let errors = [0.3f32, -0.2, 0.5, -0.1, 0.4, 0.25];
        let e = Tensor::from_vec(errors.to_vec(), (2, k), &Device::Cpu).unwrap();
        let (gram, pairs) = metric.batch(&[0, 1]).unwrap();
        let got = SongMetric::loss(&gram, pairs.as_ref(), &e)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let mut want = 0.0;
        let mut trace = 0.0;
        for song in 0..2 {
            let a = dense_a(song);
            trace += (0..k).map(|p| a[p * k + p]).sum::<f64>() / 2.0;
            for p in 0..k {
                for q in 0..k {
                    want += errors[song * k + p] as f64 * a[p * k + q] * errors[song * k + q] as f64;
                }
            }
        }
        let want = want / (trace / k as f64) / (2 * k) as f64;
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{got} vs {want}");
        // A batch of the listener-less song only has no pairs.
        assert!(metric.batch(&[1]).unwrap().1.is_none());
    }

    #[test]
    fn mismatched_or_bad_inputs_are_refused() {
        let users = vec![0.5f32; 6];
        let params = WmfParams::default();
        let songs = Csr::from_triplets(1, 4, &[(0, 1, 2.0)]).unwrap();
        assert!(SongMetric::new(&users, 2, songs.view(), &params).is_err());
        let songs = Csr::from_triplets(1, 3, &[(0, 1, f32::NAN)]).unwrap();
        assert!(SongMetric::new(&users, 2, songs.view(), &params).is_err());
        let zeros = vec![0.0f32; 6];
        let songs = Csr::from_triplets(1, 3, &[(0, 1, 2.0)]).unwrap();
        assert!(SongMetric::new(&zeros, 2, songs.view(), &params).is_err());
        let metric = SongMetric::new(&[0.5f32; 6], 2, songs.view(), &params).unwrap();
        assert!(metric.batch(&[1]).is_err());
    }
}
