//! Error of predicted song vectors against the true (WMF) ones: the paper's Table 1 — MSE,
//! RMSE, MAE and MSLE over every component of every song.
//!
//! MSLE = mean (log(1 + p) - log(1 + t))^2 is undefined for a component at or below -1, and
//! latent factors can be negative. We clip each value (predicted and true alike) to at least
//! `-1 + MSLE_EPSILON` before taking the log, and report how many values that touched, so a
//! reader can tell whether MSLE is meaningful for the data at hand.

use crate::ensure;
use crate::error::Result;

/// Values below `-1 + MSLE_EPSILON` are raised to it for MSLE.
pub const MSLE_EPSILON: f64 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorErrors {
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    pub msle: f64,
    /// Values (predicted or true) raised to -1 + MSLE_EPSILON for MSLE, and all values.
    pub msle_clipped: usize,
    pub n_values: usize,
}

pub fn vector_errors(predicted: &[f32], actual: &[f32]) -> Result<VectorErrors> {
    ensure!(
        predicted.len() == actual.len(),
        "predicted has {} values, actual has {}",
        predicted.len(),
        actual.len()
    );
    ensure!(!predicted.is_empty(), "no values to compare");
    ensure!(
        predicted.iter().chain(actual).all(|v| v.is_finite()),
        "predicted or actual vectors contain NaN or infinite values"
    );
    let floor = -1.0 + MSLE_EPSILON;
    let mut clipped = 0usize;
    let mut log1p = |v: f64| {
        if v < floor {
            clipped += 1;
            floor.ln_1p()
        } else {
            v.ln_1p()
        }
    };
    let (mut sq, mut abs, mut sq_log) = (0.0f64, 0.0f64, 0.0f64);
    for (&p, &t) in predicted.iter().zip(actual) {
        let (p, t) = (p as f64, t as f64);
        sq += (p - t) * (p - t);
        abs += (p - t).abs();
        let d = log1p(p) - log1p(t);
        sq_log += d * d;
    }
    let n = predicted.len() as f64;
    Ok(VectorErrors {
        mse: sq / n,
        rmse: (sq / n).sqrt(),
        mae: abs / n,
        msle: sq_log / n,
        msle_clipped: clipped,
        n_values: predicted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        let e = vector_errors(&[0.5, -0.5, 2.0], &[0.0, 0.0, 2.0]).unwrap();
        assert!((e.mse - 0.5 / 3.0).abs() < 1e-12);
        assert!((e.rmse - (0.5f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((e.mae - 1.0 / 3.0).abs() < 1e-12);
        let msle = (1.5f64.ln().powi(2) + 0.5f64.ln().powi(2)) / 3.0;
        assert!((e.msle - msle).abs() < 1e-12);
        assert_eq!((e.msle_clipped, e.n_values), (0, 3));
    }

    #[test]
    fn values_at_or_below_minus_one_are_clipped_and_counted() {
        let e = vector_errors(&[-1.0, -3.0, 0.0], &[-2.0, 0.0, 0.0]).unwrap();
        assert_eq!(e.msle_clipped, 3);
        assert!(e.msle.is_finite());
        assert!(vector_errors(&[f32::NAN], &[0.0]).is_err());
        assert!(vector_errors(&[0.0, 1.0], &[0.0]).is_err());
    }
}
