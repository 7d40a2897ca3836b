//! Weighted Matrix Factorization for implicit feedback (Hu, Koren & Volinsky 2008), solved by
//! alternating least squares over all user x item pairs with the YtY trick.
//!
//! Objective: min sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum ||x_u||^2 + sum ||y_i||^2),
//! with p_ui = [r_ui > 0] and c_ui = 1 + alpha r_ui (linear) or 1 + alpha ln(1 + r_ui / eps) (log).

mod cg;
mod cholesky;
mod gram;
mod loss;
mod persist;
mod shard;
mod sweep;
mod woodbury;

pub use gram::{GRAM_CHUNK_ROWS, GramPart, gram_from_parts};
pub use persist::{load, save};
pub use shard::{Shard, initial_factors};

/// Bumped whenever a change to this module alters the factors a fit gives for the same data,
/// settings and seed; caches of fitted models (the pipeline's) include it in their key.
pub const REVISION: u32 = 3;

use crate::ensure;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Step, Threads};
use crate::sparse::{Csr, CsrRef};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// How a play count r becomes a confidence weight c >= 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Confidence {
    /// c = 1 + alpha * r
    Linear,
    /// c = 1 + alpha * ln(1 + r / eps)
    Log { eps: f32 },
}

/// The per-row least-squares solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Solver {
    /// Conjugate gradient warm-started from the previous factors (Takacs et al. 2011):
    /// `steps` iterations, never forming Y^T C_u Y. Rows with so few interactions that the
    /// exact Woodbury solve is cheaper take it instead (`woodbury::limit`).
    Cg { steps: usize },
    /// Exact solve by Cholesky factorisation of YtY + lambda I + Y^T (C_u - I) Y.
    Cholesky,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WmfParams {
    pub factors: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub confidence: Confidence,
    pub iterations: usize,
    pub solver: Solver,
    pub seed: u64,
    /// Compute the training loss after every iteration (costs about one extra half-sweep).
    pub compute_loss: bool,
}

impl Default for WmfParams {
    fn default() -> Self {
        WmfParams {
            factors: 100,
            regularization: 0.01,
            alpha: 1.0,
            confidence: Confidence::Linear,
            iterations: 15,
            solver: Solver::Cg { steps: 3 },
            seed: 0,
            compute_loss: false,
        }
    }
}

impl WmfParams {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.factors >= 1, "factors must be at least 1, got {}", self.factors);
        ensure!(
            self.regularization.is_finite() && self.regularization >= 0.0,
            "regularization must be a finite number >= 0, got {}",
            self.regularization
        );
        ensure!(
            self.alpha.is_finite() && self.alpha >= 0.0,
            "alpha must be a finite number >= 0, got {}",
            self.alpha
        );
        if let Confidence::Log { eps } = self.confidence {
            ensure!(
                eps.is_finite() && eps > 0.0,
                "eps must be a finite number > 0, got {eps}"
            );
        }
        if let Solver::Cg { steps } = self.solver {
            ensure!(steps >= 1, "cg_steps must be at least 1, got {steps}");
        }
        Ok(())
    }

    #[inline]
    pub fn confidence_of(&self, r: f32) -> f32 {
        match self.confidence {
            Confidence::Linear => 1.0 + self.alpha * r,
            Confidence::Log { eps } => 1.0 + self.alpha * (r / eps).ln_1p(),
        }
    }
}

/// Fitted factors, row-major: `user_factors` is n_users x factors, `item_factors` n_items x factors.
#[derive(Clone, Debug, PartialEq)]
pub struct WmfModel {
    pub params: WmfParams,
    pub n_users: usize,
    pub n_items: usize,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
}

/// What happened during `fit`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitReport {
    /// Training loss after each iteration (empty unless `compute_loss`), see [`training_loss`].
    pub losses: Vec<f64>,
    pub iterations_done: usize,
    /// The progress callback asked to stop; the factors are those of the last full iteration.
    pub interrupted: bool,
}

/// Interactions prepared for the solvers: play counts checked, stored zeros dropped (they mean
/// "no interaction"), both orientations, each holding the confidences c_ui in place of the
/// counts (the solvers read nothing else; separate arrays cost 8 bytes per play, 380 MB on
/// the full Taste Profile). The user side borrows the caller's indptr and indices when no
/// zero is stored (the usual case: 200 MB on the full Taste Profile not copied).
pub(crate) struct Prepared<'a> {
    n_users: usize,
    n_items: usize,
    user_indptr: Cow<'a, [i64]>,
    user_indices: Cow<'a, [i32]>,
    user_conf: Vec<f32>,
    pub items: Csr,
}

impl Prepared<'_> {
    pub fn users(&self) -> CsrRef<'_> {
        CsrRef {
            n_rows: self.n_users,
            n_cols: self.n_items,
            indptr: &self.user_indptr,
            indices: &self.user_indices,
            data: &self.user_conf,
        }
    }

    pub fn user_conf(&self) -> &[f32] {
        &self.user_conf
    }

    pub fn item_conf(&self) -> &[f32] {
        &self.items.data
    }
}

/// Check that the values are non-negative finite play counts; name the first offender.
pub fn check_counts(m: CsrRef<'_>) -> Result<()> {
    for row in 0..m.n_rows {
        let (cols, vals) = m.row(row);
        for (&c, &v) in cols.iter().zip(vals) {
            ensure!(!v.is_nan(), "play count at (user {row}, item {c}) is NaN");
            ensure!(v.is_finite(), "play count at (user {row}, item {c}) is infinite");
            ensure!(v >= 0.0, "play count at (user {row}, item {c}) is negative ({v})");
        }
    }
    Ok(())
}

/// Overwrite play counts with their confidences (the solvers read nothing else, so the
/// prepared matrices hold them in place of the counts).
pub(crate) fn to_confidences(params: &WmfParams, data: &mut [f32]) {
    for v in data.iter_mut() {
        *v = params.confidence_of(*v);
    }
}

/// Copy without explicitly stored zeros.
fn drop_zeros(m: CsrRef<'_>) -> Csr {
    let mut out = Csr::with_capacity(m.n_cols, m.n_rows, m.nnz());
    for row in 0..m.n_rows {
        let (cols, vals) = m.row(row);
        out.push_row(
            cols.iter()
                .copied()
                .zip(vals.iter().copied())
                .filter(|&(_, v)| v != 0.0),
        );
    }
    out
}

pub(crate) fn prepare<'a>(params: &WmfParams, user_items: CsrRef<'a>) -> Result<Prepared<'a>> {
    check_counts(user_items)?;
    let (user_indptr, user_indices, mut user_conf) = if user_items.data.contains(&0.0) {
        let users = drop_zeros(user_items);
        (Cow::Owned(users.indptr), Cow::Owned(users.indices), users.data)
    } else {
        (
            Cow::Borrowed(user_items.indptr),
            Cow::Borrowed(user_items.indices),
            user_items.data.to_vec(),
        )
    };
    to_confidences(params, &mut user_conf);
    let mut prepared = Prepared {
        n_users: user_items.n_rows,
        n_items: user_items.n_cols,
        user_indptr,
        user_indices,
        user_conf,
        items: Csr::default(),
    };
    // The confidence of a play is the same in either orientation.
    prepared.items = prepared.users().transpose();
    Ok(prepared)
}

/// Uniform [0, 0.01) start, as implicit does, so iteration counts compare like for like.
pub fn random_factors(n_rows: usize, factors: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n_rows * factors).map(|_| rng.random::<f32>() * 0.01).collect()
}

/// One half-sweep on `threads`, with freed memory kept mapped for 20 ms while it runs (its
/// blocks free and re-allocate buffers within milliseconds; faulting them in again cost 9-13%
/// of a Taste Profile fit, see [`crate::memory`]) and handed back when it ends, so that what
/// it leaves (Woodbury's gathered rows, up to the whole other side) does not add to the next
/// half-sweep's peak.
pub(crate) fn half_sweep(threads: &Threads, solve: impl FnOnce() -> Result<()> + Send) -> Result<()> {
    let retain = crate::memory::Retain::for_ms(HALF_SWEEP_RETAIN_MS);
    let out = threads.run(solve);
    drop(retain);
    threads.run(crate::memory::release_free_memory);
    out
}

/// See [`half_sweep`].
const HALF_SWEEP_RETAIN_MS: std::ffi::c_long = 20;

/// A fit whose factors take at most this many bytes (both sides; the paper's 10,000 x 50,000
/// at 100 factors: 23 MiB) keeps freed memory mapped for its whole length instead of handing
/// it back after each half-sweep: what a half-sweep frees (Woodbury's `A^{-1} y` table, at
/// most one side's factors) is small beside the fit then, and faulting it in again each
/// half-sweep cost ~8% of a paper-size fit (kernel page clearing and zeroing in a profile).
const RETAIN_ACROSS_FIT_BYTES: usize = 64 << 20;

/// One half-sweep of [`fit`]: [`half_sweep`], or only the solve when the whole fit holds on
/// to its freed memory (see [`RETAIN_ACROSS_FIT_BYTES`]).
fn fit_half_sweep(threads: &Threads, retained: bool, solve: impl FnOnce() -> Result<()> + Send) -> Result<()> {
    if retained {
        threads.run(solve)
    } else {
        half_sweep(threads, solve)
    }
}

/// Fit WMF to a users x items matrix of play counts.
///
/// `warm_start` continues from earlier factors of the same shape. The loop runs on the
/// caller's thread (so `progress` can see interrupts); each half-sweep runs on `threads`.
pub fn fit(
    params: &WmfParams,
    user_items: CsrRef<'_>,
    warm_start: Option<(Vec<f32>, Vec<f32>)>,
    threads: &Threads,
    progress: Progress<'_>,
) -> Result<(WmfModel, FitReport)> {
    params.validate()?;
    ensure!(
        user_items.n_rows > 0 && user_items.n_cols > 0,
        "the user x item matrix is empty ({} x {})",
        user_items.n_rows,
        user_items.n_cols
    );
    let k = params.factors;
    let data = prepare(params, user_items)?;
    let (mut x, mut y) = match warm_start {
        Some((x, y)) => {
            ensure!(
                x.len() == user_items.n_rows * k && y.len() == user_items.n_cols * k,
                "warm-start factors do not match a {} x {} matrix with {k} factors",
                user_items.n_rows,
                user_items.n_cols
            );
            (x, y)
        }
        None => initial_factors(params, user_items.n_rows, user_items.n_cols),
    };
    let mut report = FitReport::default();
    let small = 4 * k * (user_items.n_rows + user_items.n_cols) <= RETAIN_ACROSS_FIT_BYTES;
    let retain = small.then(crate::memory::Retain::new);
    // Woodbury's table, one buffer for every half-sweep (see `sweep::solve_side_keeping`).
    let mut table = Vec::new();
    for it in 0..params.iterations {
        fit_half_sweep(threads, small, || {
            sweep::solve_side_keeping(&mut x, (&y, k), (data.users(), data.user_conf()), params, &mut table)
        })?;
        fit_half_sweep(threads, small, || {
            let items = (data.items.view(), data.item_conf());
            sweep::solve_side_keeping(&mut y, (&x, k), items, params, &mut table)
        })?;
        let loss = if params.compute_loss {
            let l = threads.run(|| loss::training_loss(&x, &y, k, data.users(), data.user_conf(), params));
            report.losses.push(l);
            Some(l)
        } else {
            None
        };
        report.iterations_done = it + 1;
        match progress(Step {
            done: it + 1,
            total: params.iterations,
            loss,
        }) {
            Ok(()) => {}
            Err(Error::Interrupted) => {
                report.interrupted = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(retain) = retain {
        drop(retain);
        threads.run(crate::memory::release_free_memory);
    }
    let model = WmfModel {
        params: params.clone(),
        n_users: user_items.n_rows,
        n_items: user_items.n_cols,
        user_factors: x,
        item_factors: y,
    };
    Ok((model, report))
}

/// The training objective for given factors, normalised by the total confidence weight
/// (n_users * n_items + sum (c_ui - 1)), so it reads as a weighted mean squared error plus
/// the regularisation term on the same scale.
pub fn training_loss(
    params: &WmfParams,
    user_items: CsrRef<'_>,
    user_factors: &[f32],
    item_factors: &[f32],
    threads: &Threads,
) -> Result<f64> {
    let k = params.factors;
    ensure!(
        user_factors.len() == user_items.n_rows * k && item_factors.len() == user_items.n_cols * k,
        "factors do not match a {} x {} matrix with {k} factors",
        user_items.n_rows,
        user_items.n_cols
    );
    let data = prepare(params, user_items)?;
    Ok(threads.run(|| loss::training_loss(user_factors, item_factors, k, data.users(), data.user_conf(), params)))
}

/// Solve new rows against fixed factors without refitting ("fold-in"): each row of `rows`
/// holds the play counts of one new user against the items (or of one new item against the
/// users); the exact regularised least-squares solution is returned, rows x factors.
pub fn fold_in(params: &WmfParams, fixed: &[f32], rows: CsrRef<'_>, threads: &Threads) -> Result<Vec<f32>> {
    params.validate()?;
    let gram = threads.run(|| fold_in_gram(params, fixed));
    fold_in_with_gram(params, fixed, &gram, rows, threads)
}

/// Y^T Y + regularization I of the fixed factors: what every fold-in against them reuses.
pub fn fold_in_gram(params: &WmfParams, fixed: &[f32]) -> Vec<f32> {
    sweep::regularized_gram(fixed, params.factors, params.regularization)
}

/// [`fold_in`] with the Gram matrix of [`fold_in_gram`] already computed, so that a fold-in
/// of a few rows costs the rows' plays, not a pass over every fixed factor.
pub fn fold_in_with_gram(
    params: &WmfParams,
    fixed: &[f32],
    gram: &[f32],
    rows: CsrRef<'_>,
    threads: &Threads,
) -> Result<Vec<f32>> {
    params.validate()?;
    let k = params.factors;
    ensure!(
        fixed.len() == rows.n_cols * k,
        "the rows have {} columns but the fixed factors have {} rows",
        rows.n_cols,
        fixed.len() / k
    );
    ensure!(gram.len() == k * k, "the Gram matrix is not {k} x {k}");
    check_counts(rows)?;
    let mut rows = drop_zeros(rows);
    to_confidences(params, &mut rows.data);
    let mut out = vec![0f32; rows.n_rows * k];
    let exact = WmfParams {
        solver: Solver::Cholesky,
        ..params.clone()
    };
    threads.run(|| {
        sweep::solve_side_with_gram(
            &mut out,
            (fixed, gram, k),
            (rows.view(), &rows.data),
            &exact,
            &mut Vec::new(),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests;
