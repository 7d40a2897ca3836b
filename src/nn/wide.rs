//! The linear content model: ridge regression of the (scaled) WMF song vectors on per-band
//! log-Mel statistics (each band's mean and standard deviation over the excerpt) and one-hot
//! metadata (the song's tag weights, its artist, its year bucket), solved in closed form with
//! the penalties picked on validation songs.
//!
//! It is the `ridge*` kinds on its own, and the "wide" half of a wide & deep network, whose
//! deep branches then learn only what it misses. Either way its weights live in the network
//! as the `wide.*` parameters, so prediction, saving and loading are the network's.
//!
//! The solve: with Z the intercept, the standardised audio statistics, the tag weights and
//! the year one-hots, and A the artist one-hots, the normal equations
//! `[ZᵀZ+Λz, ZᵀA; AᵀZ, AᵀA+λI] [Wz; Wa] = [ZᵀY; AᵀY]` have a diagonal AᵀA (one artist per
//! song), so the artists are eliminated exactly: with D = AᵀA + λI and S = AᵀZ,
//! `(ZᵀZ + Λz - Sᵀ D⁻¹ S) Wz = ZᵀY - Sᵀ D⁻¹ AᵀY` and `Wa = D⁻¹ (AᵀY - S Wz)`. The system left
//! is as small as the audio statistics plus the tag and year vocabularies, whatever the
//! number of artists.

use super::data::{Inputs, Standardizer};
use crate::ensure;
use crate::error::Result;
use crate::linalg::{cholesky, cholesky_solve, gemm_atb};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Added inside the square root of a band's variance.
const STD_EPSILON: f32 = 1e-6;
/// The penalty grid: half-decades from 0.1 to 10^4 (features are standardised audio
/// statistics, which sum to about n per column, and one-hot columns, which sum to counts).
const GRID: [f64; 11] = [0.1, 0.316, 1.0, 3.16, 10.0, 31.6, 100.0, 316.0, 1e3, 3.16e3, 1e4];
/// Penalty on the intercept: effectively none, but keeps the system definite.
const INTERCEPT_PENALTY: f64 = 1e-8;
/// The penalty used when there are no validation songs to choose one.
pub const DEFAULT_PENALTY: f64 = 10.0;

/// The weights of the linear model, in the network's units (scaled targets, raw statistics).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WideWeights {
    /// (2 n_mels) x d: per-band means then per-band standard deviations (3 n_mels with
    /// fluxes after them, `NetConfig::wide_flux`).
    pub audio: Option<Vec<f32>>,
    /// The random features, in raw statistics: projection (statistics) x n, phases n, and
    /// their weights n x d (the amplitude folded in).
    pub random_projection: Option<Vec<f32>>,
    pub random_phase: Option<Vec<f32>>,
    pub random: Option<Vec<f32>>,
    /// n_tags x d, n_artists x d, n_years x d.
    pub tags: Option<Vec<f32>>,
    pub artists: Option<Vec<f32>>,
    pub years: Option<Vec<f32>>,
    /// d.
    pub bias: Vec<f32>,
}

/// How the penalties were chosen: each tried pair with its validation MSE.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RidgeReport {
    pub lambda_audio: f64,
    pub lambda_metadata: f64,
    /// Validation MSE (in units of the scaled targets) at the chosen penalties; None without
    /// validation songs.
    pub validation_mse: Option<f64>,
    /// (lambda_audio, lambda_metadata, validation MSE) of every pair tried, with the
    /// artists at the metadata penalty.
    pub path: Vec<(f64, f64, f64)>,
    /// The artists' own penalty, searched last at the chosen pair (None: the metadata
    /// penalty, as in models saved before it existed).
    #[serde(default)]
    pub lambda_artist: Option<f64>,
    /// (lambda_artist, validation MSE) of every artist penalty tried.
    #[serde(default)]
    pub artist_path: Vec<(f64, f64)>,
    /// The random features' own penalty (`NetConfig::random_features`), searched after the
    /// pair and before the artists; None without them.
    #[serde(default)]
    pub lambda_random: Option<f64>,
    /// (lambda_random, validation MSE) of every random-feature penalty tried.
    #[serde(default)]
    pub random_path: Vec<(f64, f64)>,
}

/// Which blocks the linear model reads, and their sizes.
#[derive(Clone, Copy, Debug)]
pub struct WideShape {
    pub audio: bool,
    pub metadata: bool,
    pub n_mels: usize,
    pub n_frames: usize,
    pub n_tags: usize,
    pub n_artists: usize,
    pub n_years: usize,
    pub d: usize,
    /// Random Fourier features of the statistics (`NetConfig::random_features`; 0 without
    /// audio), their kernel's scale, and the seed their projection is drawn from.
    pub random_features: usize,
    pub rff_scale: f64,
    /// Each band's flux beside its mean and spread (`NetConfig::wide_flux`).
    pub flux: bool,
    pub seed: u64,
}

impl WideShape {
    fn n_stats(&self) -> usize {
        match (self.audio, self.flux) {
            (false, _) => 0,
            (true, false) => 2 * self.n_mels,
            (true, true) => 3 * self.n_mels,
        }
    }

    fn n_random(&self) -> usize {
        if self.audio { self.random_features } else { 0 }
    }

    /// Columns of Z: intercept, statistics, random features, tags, years.
    fn n_z(&self) -> usize {
        1 + self.n_stats() + self.n_random() + if self.metadata { self.n_tags + self.n_years } else { 0 }
    }
}

/// The random features' projection of the standardised statistics: `W` (n_stats x n, N(0,
/// 2 gamma)) and the phases `b` (U(0, 2 pi)), gamma = rff_scale / n_stats.
struct Projection {
    w: Vec<f64>,
    b: Vec<f64>,
    n: usize,
}

impl Projection {
    fn draw(shape: &WideShape) -> Option<Projection> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal, Uniform};
        let (n_stats, n) = (shape.n_stats(), shape.n_random());
        if n == 0 || n_stats == 0 {
            return None;
        }
        // Its own stream, apart from the network's initial weights drawn from the same seed.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(shape.seed ^ 0x5246_465f_7769_6465);
        let sd = (2.0 * shape.rff_scale / n_stats as f64).sqrt();
        let w = (0..n_stats * n)
            .map(|_| sd * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
            .collect();
        let phase = Uniform::new(0.0, 2.0 * std::f64::consts::PI).expect("a valid range");
        let b = (0..n).map(|_| phase.sample(&mut rng)).collect();
        Some(Projection { w, b, n })
    }

    /// `out[i, j] = sqrt(2) cos(z_i . W_j + b_j)` for the rows of `z` (rows x n_stats): unit
    /// variance, like the standardised statistics, so that the penalty grid suits both
    /// (the kernel's own `sqrt(2 / n)` scaling only moves the penalty by a factor n).
    fn features(&self, z: &[f64], n_stats: usize) -> Vec<f64> {
        let rows = z.len() / n_stats.max(1);
        let mut zt = vec![0.0; z.len()];
        for (i, row) in z.chunks_exact(n_stats).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                zt[k * rows + i] = v;
            }
        }
        let mut out = vec![0.0; rows * self.n];
        gemm_atb(rows, self.n, n_stats, &zt, &self.w, &mut out);
        let amplitude = std::f64::consts::SQRT_2;
        for row in out.chunks_exact_mut(self.n) {
            for (v, b) in row.iter_mut().zip(&self.b) {
                *v = amplitude * (*v + b).cos();
            }
        }
        out
    }
}

/// Each song's per-band mean and standard deviation over time of the standardised
/// spectrogram and, with `flux`, its mean absolute change from frame to frame, averaged over
/// the song's excerpts (what the network's wide part reads): rows x 2 n_mels (means, then
/// spreads) or rows x 3 n_mels (then fluxes).
pub fn song_stats(
    spectrograms: &[f32],
    standardizer: &Standardizer,
    n_mels: usize,
    n_frames: usize,
    n_excerpts: usize,
    flux: bool,
    rows: &[usize],
) -> Vec<f64> {
    let per_clip = n_mels * n_frames;
    let width = if flux { 3 * n_mels } else { 2 * n_mels };
    let mut out = vec![0.0f64; rows.len() * width];
    out.par_chunks_exact_mut(width).zip(rows).for_each(|(dst, &r)| {
        let song = &spectrograms[r * n_excerpts * per_clip..(r + 1) * n_excerpts * per_clip];
        for clip in song.chunks_exact(per_clip) {
            for (band, row) in clip.chunks_exact(n_frames).enumerate() {
                let (mu, s) = (standardizer.mean[band], standardizer.scale[band]);
                let values = row.iter().map(|&v| ((v - mu) * s) as f64);
                let mean = values.clone().sum::<f64>() / n_frames as f64;
                let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n_frames as f64;
                dst[band] += mean / n_excerpts as f64;
                dst[n_mels + band] += (var + STD_EPSILON as f64).sqrt() / n_excerpts as f64;
                if flux && n_frames > 1 {
                    let change = row.windows(2).map(|w| (f64::from(w[1] - w[0]) * f64::from(s)).abs());
                    dst[2 * n_mels + band] += change.sum::<f64>() / ((n_frames - 1) * n_excerpts) as f64;
                }
            }
        }
    });
    out
}

/// [`song_stats`] of `rows` when the model reads audio and there are spectrograms; else none.
fn audio_stats(shape: &WideShape, inputs: &Inputs, standardizer: &Standardizer, rows: &[usize]) -> Vec<f64> {
    match inputs.spectrograms {
        Some(spec) if shape.audio => song_stats(
            spec,
            standardizer,
            shape.n_mels,
            shape.n_frames,
            inputs.n_excerpts,
            shape.flux,
            rows,
        ),
        _ => Vec::new(),
    }
}

/// The design of some songs: Z's dense part (intercept and standardised statistics), its
/// sparse part (tags then years, columns offset by the dense width) and the artist of each.
struct Design {
    rows: usize,
    dense_width: usize,
    dense: Vec<f64>,
    sparse: Vec<Vec<(usize, f64)>>,
    artist: Vec<usize>,
}

/// Column standardisation of the statistics (fitted on the training songs).
struct StatScaling {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

fn design(
    shape: &WideShape,
    inputs: &Inputs,
    standardizer: &Standardizer,
    scaling: &StatScaling,
    projection: Option<&Projection>,
    rows: &[usize],
) -> Design {
    let n_stats = shape.n_stats();
    let n_random = projection.map_or(0, |p| p.n);
    let dense_width = 1 + n_stats + n_random;
    let mut z = audio_stats(shape, inputs, standardizer, rows);
    for row in z.chunks_exact_mut(n_stats.max(1)) {
        for (k, v) in row.iter_mut().enumerate() {
            *v = (*v - scaling.mean[k]) * scaling.scale[k];
        }
    }
    let random = projection.map(|p| p.features(&z, n_stats));
    let mut dense = vec![0.0; rows.len() * dense_width];
    for (i, row) in dense.chunks_exact_mut(dense_width).enumerate() {
        row[0] = 1.0;
        row[1..1 + n_stats].copy_from_slice(&z[i * n_stats..(i + 1) * n_stats]);
        if let Some(f) = &random {
            row[1 + n_stats..].copy_from_slice(&f[i * n_random..(i + 1) * n_random]);
        }
    }
    let (mut sparse, mut artist) = (vec![Vec::new(); rows.len()], vec![0; rows.len()]);
    if let (true, Some(meta)) = (shape.metadata, inputs.metadata) {
        for (i, &r) in rows.iter().enumerate() {
            let entries = &mut sparse[i];
            for k in meta.tag_indptr[r]..meta.tag_indptr[r + 1] {
                let id = (meta.tag_ids[k] as usize).min(shape.n_tags - 1);
                entries.push((dense_width + id, meta.tag_weights[k] as f64));
            }
            let year = (meta.years[r] as usize).min(shape.n_years - 1);
            entries.push((dense_width + shape.n_tags + year, 1.0));
            artist[i] = (meta.artists[r] as usize).min(shape.n_artists - 1);
        }
    }
    Design {
        rows: rows.len(),
        dense_width,
        dense,
        sparse,
        artist,
    }
}

fn stat_scaling(shape: &WideShape, inputs: &Inputs, standardizer: &Standardizer, rows: &[usize]) -> StatScaling {
    let n_stats = shape.n_stats();
    let (mut mean, mut scale) = (vec![0.0; n_stats], vec![1.0; n_stats]);
    if n_stats > 0 {
        let stats = audio_stats(shape, inputs, standardizer, rows);
        let n = rows.len().max(1) as f64;
        for k in 0..n_stats {
            let m = stats.iter().skip(k).step_by(n_stats).sum::<f64>() / n;
            let v = stats
                .iter()
                .skip(k)
                .step_by(n_stats)
                .map(|x| (x - m) * (x - m))
                .sum::<f64>()
                / n;
            mean[k] = m;
            scale[k] = if v > 1e-12 { 1.0 / v.sqrt() } else { 1.0 };
        }
    }
    StatScaling { mean, scale }
}

/// The sufficient statistics of the normal equations for one set of songs.
struct Normal {
    p: usize,
    q: usize,
    d: usize,
    /// ZᵀZ (p x p), ZᵀY (p x d), S = AᵀZ (q x p), AᵀY (q x d), artist counts (q).
    zz: Vec<f64>,
    zy: Vec<f64>,
    s: Vec<f64>,
    ay: Vec<f64>,
    counts: Vec<f64>,
}

fn normal_equations(shape: &WideShape, x: &Design, y: &[f64]) -> Normal {
    let (p, d, w) = (shape.n_z(), shape.d, x.dense_width);
    let q = if shape.metadata { shape.n_artists } else { 0 };
    let mut zz = vec![0.0; p * p];
    // The dense block by one product; the sparse blocks song by song.
    let mut dd = vec![0.0; w * w];
    gemm_atb(w, w, x.rows, &x.dense, &x.dense, &mut dd);
    for i in 0..w {
        zz[i * p..i * p + w].copy_from_slice(&dd[i * w..(i + 1) * w]);
    }
    let mut zy = vec![0.0; p * d];
    let mut dy = vec![0.0; w * d];
    gemm_atb(w, d, x.rows, &x.dense, y, &mut dy);
    zy[..w * d].copy_from_slice(&dy);
    let (mut s, mut ay, mut counts) = (vec![0.0; q * p], vec![0.0; q * d], vec![0.0; q]);
    for i in 0..x.rows {
        let dense = &x.dense[i * w..(i + 1) * w];
        let target = &y[i * d..(i + 1) * d];
        for &(k, v) in &x.sparse[i] {
            for (j, &z) in dense.iter().enumerate() {
                zz[k * p + j] += v * z;
            }
            for &(l, u) in &x.sparse[i] {
                zz[k * p + l] += v * u;
            }
            zy[k * d..(k + 1) * d]
                .iter_mut()
                .zip(target)
                .for_each(|(a, t)| *a += v * t);
        }
        if q > 0 {
            let a = x.artist[i];
            counts[a] += 1.0;
            let row = &mut s[a * p..(a + 1) * p];
            row[..w].iter_mut().zip(dense).for_each(|(r, z)| *r += z);
            for &(k, v) in &x.sparse[i] {
                row[k] += v;
            }
            ay[a * d..(a + 1) * d].iter_mut().zip(target).for_each(|(r, t)| *r += t);
        }
    }
    // The dense x sparse block was filled below the diagonal only: mirror it.
    for k in w..p {
        for j in 0..w {
            zz[j * p + k] = zz[k * p + j];
        }
    }
    Normal {
        p,
        q,
        d,
        zz,
        zy,
        s,
        ay,
        counts,
    }
}

/// The penalties of the column blocks.
#[derive(Clone, Copy, Debug)]
struct Penalties {
    audio: f64,
    random: f64,
    metadata: f64,
    artist: f64,
}

/// The ridge solution (Wz: p x d, Wa: q x d) for the penalties, in standardised coordinates.
fn solve(shape: &WideShape, ne: &Normal, lambdas: Penalties) -> Result<(Vec<f64>, Vec<f64>)> {
    let (p, q, d) = (ne.p, ne.q, ne.d);
    let (n_stats, n_random) = (shape.n_stats(), shape.n_random());
    let Penalties {
        audio: lambda_audio,
        random: lambda_random,
        metadata: lambda_meta,
        artist: lambda_artist,
    } = lambdas;
    let mut m = ne.zz.clone();
    let mut rhs = ne.zy.clone();
    for k in 0..p {
        m[k * p + k] += match k {
            0 => INTERCEPT_PENALTY,
            k if k <= n_stats => lambda_audio,
            k if k <= n_stats + n_random => lambda_random,
            _ => lambda_meta,
        };
    }
    // Eliminate the artists: M -= Sᵀ D⁻¹ S, rhs -= Sᵀ D⁻¹ AᵀY.
    let inv: Vec<f64> = ne.counts.iter().map(|c| 1.0 / (c + lambda_artist)).collect();
    if q > 0 {
        let mut scaled = ne.s.clone();
        let mut scaled_y = ne.ay.clone();
        for a in 0..q {
            let r = inv[a].sqrt();
            scaled[a * p..(a + 1) * p].iter_mut().for_each(|v| *v *= r);
            scaled_y[a * d..(a + 1) * d].iter_mut().for_each(|v| *v *= r);
        }
        let mut sds = vec![0.0; p * p];
        gemm_atb(p, p, q, &scaled, &scaled, &mut sds);
        m.iter_mut().zip(&sds).for_each(|(a, b)| *a -= b);
        let mut sdy = vec![0.0; p * d];
        gemm_atb(p, d, q, &scaled, &scaled_y, &mut sdy);
        rhs.iter_mut().zip(&sdy).for_each(|(a, b)| *a -= b);
    }
    cholesky(&mut m, p)?;
    cholesky_solve(&m, p, &mut rhs, d);
    let mut wa = vec![0.0; q * d];
    for a in 0..q {
        let row = &mut wa[a * d..(a + 1) * d];
        row.copy_from_slice(&ne.ay[a * d..(a + 1) * d]);
        let s = &ne.s[a * p..(a + 1) * p];
        for (k, &sk) in s.iter().enumerate() {
            if sk != 0.0 {
                row.iter_mut()
                    .zip(&rhs[k * d..(k + 1) * d])
                    .for_each(|(r, w)| *r -= sk * w);
            }
        }
        row.iter_mut().for_each(|r| *r *= inv[a]);
    }
    Ok((rhs, wa))
}

/// Mean squared error of the linear model on the songs of `x`.
fn mse(x: &Design, y: &[f64], wz: &[f64], wa: &[f64], d: usize) -> f64 {
    let w = x.dense_width;
    let mut total = 0.0;
    let mut pred = vec![0.0; d];
    for i in 0..x.rows {
        pred.iter_mut().for_each(|v| *v = 0.0);
        for (k, &z) in x.dense[i * w..(i + 1) * w].iter().enumerate() {
            pred.iter_mut()
                .zip(&wz[k * d..(k + 1) * d])
                .for_each(|(p, c)| *p += z * c);
        }
        for &(k, v) in &x.sparse[i] {
            pred.iter_mut()
                .zip(&wz[k * d..(k + 1) * d])
                .for_each(|(p, c)| *p += v * c);
        }
        if !wa.is_empty() {
            let a = x.artist[i];
            pred.iter_mut().zip(&wa[a * d..(a + 1) * d]).for_each(|(p, c)| *p += c);
        }
        total += pred
            .iter()
            .zip(&y[i * d..(i + 1) * d])
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>();
    }
    total / (x.rows.max(1) * d) as f64
}

fn targets(inputs: &Inputs, standardizer: &Standardizer, d: usize, rows: &[usize]) -> Result<Vec<f64>> {
    let t = inputs
        .targets
        .ok_or_else(|| crate::Error::invalid("the linear model needs target vectors"))?;
    let scale = standardizer.target_scale as f64;
    Ok(rows
        .iter()
        .flat_map(|&r| t[r * d..(r + 1) * d].iter().map(move |&v| v as f64 / scale))
        .collect())
}

/// Fit on `train` rows of `train_set`, choosing the penalties on the validation rows (when
/// given) by a coordinate search over the grid: a shared penalty first, then the audio one,
/// then the metadata one, then the artists' own (with a known artist, the artist column
/// wants other shrinkage than the tags: new songs on real sound, 0.276 -> 0.284 recall@10
/// in numpy). Returns the weights in the network's units and the report.
pub fn fit(
    shape: &WideShape,
    standardizer: &Standardizer,
    (train_set, train): (&Inputs, &[usize]),
    validation: Option<(&Inputs, &[usize])>,
) -> Result<(WideWeights, RidgeReport)> {
    ensure!(
        shape.audio || shape.metadata,
        "the linear model needs audio or metadata"
    );
    ensure!(!train.is_empty(), "no training songs");
    let d = shape.d;
    let scaling = stat_scaling(shape, train_set, standardizer, train);
    let projection = Projection::draw(shape);
    let x = design(shape, train_set, standardizer, &scaling, projection.as_ref(), train);
    let y = targets(train_set, standardizer, d, train)?;
    let ne = normal_equations(shape, &x, &y);
    let mut report = RidgeReport {
        lambda_audio: DEFAULT_PENALTY,
        lambda_metadata: DEFAULT_PENALTY,
        lambda_random: projection.as_ref().map(|_| DEFAULT_PENALTY),
        ..Default::default()
    };
    // Until their own search, the random features share the audio statistics' penalty.
    let tied = |la: f64, lm: f64| Penalties {
        audio: la,
        random: la,
        metadata: lm,
        artist: lm,
    };
    if let Some((set, rows)) = validation.filter(|(_, rows)| !rows.is_empty()) {
        let xv = design(shape, set, standardizer, &scaling, projection.as_ref(), rows);
        let yv = targets(set, standardizer, d, rows)?;
        let error = |lambdas: Penalties| -> Result<f64> {
            let (wz, wa) = solve(shape, &ne, lambdas)?;
            Ok(mse(&xv, &yv, &wz, &wa, d))
        };
        let try_pair = |la: f64, lm: f64, report: &mut RidgeReport| -> Result<()> {
            if !report.path.iter().any(|&(a, m, _)| a == la && m == lm) {
                report.path.push((la, lm, error(tied(la, lm))?));
            }
            Ok(())
        };
        // The pair of the lowest validation error (the first tried on a tie).
        let best = |report: &RidgeReport| {
            report
                .path
                .iter()
                .copied()
                .fold((f64::INFINITY, DEFAULT_PENALTY, DEFAULT_PENALTY), |b, (a, m, e)| {
                    if e < b.0 { (e, a, m) } else { b }
                })
        };
        for &l in &GRID {
            try_pair(l, l, &mut report)?;
        }
        if shape.audio && shape.metadata {
            let lm = best(&report).2;
            for &la in &GRID {
                try_pair(la, lm, &mut report)?;
            }
            let la = best(&report).1;
            for &lm in &GRID {
                try_pair(la, lm, &mut report)?;
            }
        }
        let (mut error_now, la, lm) = best(&report);
        let mut lambdas = tied(la, lm);
        if projection.is_some() {
            for &l in &GRID {
                let e = error(Penalties { random: l, ..lambdas })?;
                report.random_path.push((l, e));
                if e < error_now {
                    error_now = e;
                    lambdas.random = l;
                }
            }
            report.lambda_random = Some(lambdas.random);
        }
        if shape.metadata && ne.q > 0 {
            let mut lambda_artist = lm;
            for &l in &GRID {
                let e = error(Penalties { artist: l, ..lambdas })?;
                report.artist_path.push((l, e));
                if e < error_now {
                    (error_now, lambda_artist) = (e, l);
                }
            }
            report.lambda_artist = Some(lambda_artist);
        }
        report.validation_mse = Some(error_now);
        report.lambda_audio = la;
        report.lambda_metadata = lm;
    }
    let lambdas = Penalties {
        audio: report.lambda_audio,
        random: report.lambda_random.unwrap_or(report.lambda_audio),
        metadata: report.lambda_metadata,
        artist: report.lambda_artist.unwrap_or(report.lambda_metadata),
    };
    let (wz, wa) = solve(shape, &ne, lambdas)?;
    Ok((to_network_units(shape, &scaling, projection.as_ref(), &wz, &wa), report))
}

/// Fold the statistics' standardisation into the weights (so the network multiplies raw
/// statistics) and split Wz into the network's parameter blocks.
fn to_network_units(
    shape: &WideShape,
    scaling: &StatScaling,
    projection: Option<&Projection>,
    wz: &[f64],
    wa: &[f64],
) -> WideWeights {
    let d = shape.d;
    let n_stats = shape.n_stats();
    let mut bias: Vec<f64> = wz[..d].to_vec();
    let mut weights = WideWeights::default();
    if shape.audio {
        let mut audio = vec![0.0f32; n_stats * d];
        for k in 0..n_stats {
            let (m, s) = (scaling.mean[k], scaling.scale[k]);
            let w = &wz[(1 + k) * d..(2 + k) * d];
            for j in 0..d {
                audio[k * d + j] = (w[j] * s) as f32;
                bias[j] -= m * s * w[j];
            }
        }
        weights.audio = Some(audio);
    }
    let n_random = projection.map_or(0, |p| p.n);
    if let Some(proj) = projection {
        // cos(z W + b) with z = (s - mean) * scale is cos(s W' + b'), W' = diag(scale) W and
        // b' = b - (mean * scale) W: the network reads the raw statistics.
        let n = proj.n;
        let mut w = vec![0.0f32; n_stats * n];
        let mut phase = proj.b.clone();
        for k in 0..n_stats {
            let (m, sc) = (scaling.mean[k], scaling.scale[k]);
            for j in 0..n {
                let v = proj.w[k * n + j];
                w[k * n + j] = (v * sc) as f32;
                phase[j] -= m * sc * v;
            }
        }
        let amplitude = std::f64::consts::SQRT_2;
        let start = 1 + n_stats;
        weights.random_projection = Some(w);
        weights.random_phase = Some(phase.iter().map(|&v| v as f32).collect());
        weights.random = Some(
            wz[start * d..(start + n) * d]
                .iter()
                .map(|&v| (v * amplitude) as f32)
                .collect(),
        );
    }
    if shape.metadata {
        let start = 1 + n_stats + n_random;
        let block = |from: usize, rows: usize| wz[from * d..(from + rows) * d].iter().map(|&v| v as f32).collect();
        weights.tags = Some(block(start, shape.n_tags));
        weights.years = Some(block(start + shape.n_tags, shape.n_years));
        weights.artists = Some(wa.iter().map(|&v| v as f32).collect());
    }
    weights.bias = bias.iter().map(|&v| v as f32).collect();
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::metadata::EncodedMetadata;

    /// The closed form with the artists eliminated equals plain ridge on [Z, A] (the artists
    /// with their own penalty) solved directly (numpy-style normal equations with the full one-hot design).
    #[test]
    fn eliminating_artists_equals_the_full_solve() {
        let shape = WideShape {
            audio: false,
            metadata: true,
            n_mels: 0,
            n_frames: 0,
            n_tags: 3,
            n_artists: 4,
            n_years: 2,
            d: 2,
            random_features: 0,
            rff_scale: 0.5,
            flux: false,
            seed: 0,
        };
        let meta = EncodedMetadata {
            tag_indptr: vec![0, 1, 3, 3, 4, 6, 7],
            tag_ids: vec![1, 1, 2, 0, 2, 1, 0],
            tag_weights: vec![1.0, 0.5, 0.5, 1.0, 0.25, 0.75, 1.0],
            artists: vec![0, 1, 1, 2, 3, 3],
            years: vec![0, 1, 1, 0, 1, 0],
            ..Default::default()
        };
        let y: Vec<f32> = (0..12).map(|v| ((v * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let inputs = Inputs {
            n: 6,
            spectrograms: None,
            n_excerpts: 1,
            metadata: Some(&meta),
            targets: Some(&y),
            metric: None,
            stats: None,
        };
        let st = Standardizer::identity(1);
        let rows: Vec<usize> = (0..6).collect();
        let scaling = stat_scaling(&shape, &inputs, &st, &rows);
        let x = design(&shape, &inputs, &st, &scaling, None, &rows);
        let yy = targets(&inputs, &st, 2, &rows).unwrap();
        let ne = normal_equations(&shape, &x, &yy);
        // The artists' penalty differs from the tags' and years'.
        let (la, lm, lart) = (0.7, 1.3, 4.1);
        let lambdas = Penalties {
            audio: la,
            random: la,
            metadata: lm,
            artist: lart,
        };
        let (wz, wa) = solve(&shape, &ne, lambdas).unwrap();

        // The full design [1, tags, years, artists] and its normal equations.
        let p = 1 + 3 + 2 + 4;
        let mut full = vec![0.0f64; 6 * p];
        for i in 0..6 {
            full[i * p] = 1.0;
            for k in meta.tag_indptr[i]..meta.tag_indptr[i + 1] {
                full[i * p + 1 + meta.tag_ids[k] as usize] += meta.tag_weights[k] as f64;
            }
            full[i * p + 4 + meta.years[i] as usize] = 1.0;
            full[i * p + 6 + meta.artists[i] as usize] = 1.0;
        }
        let mut a = vec![0.0; p * p];
        gemm_atb(p, p, 6, &full, &full, &mut a);
        for k in 0..p {
            a[k * p + k] += match k {
                0 => INTERCEPT_PENALTY,
                k if k >= 6 => lart,
                _ => lm,
            };
        }
        let mut b = vec![0.0; p * 2];
        gemm_atb(p, 2, 6, &full, &yy, &mut b);
        cholesky(&mut a, p).unwrap();
        cholesky_solve(&a, p, &mut b, 2);
        let ours: Vec<f64> = wz.iter().chain(&wa).copied().collect();
        for (o, f) in ours.iter().zip(&b) {
            assert!((o - f).abs() < 1e-9, "{o} vs {f}");
        }
    }
}
