//! Carrying vectors from one WMF space into another: after a refit moves every song vector,
//! the linear map that best takes the old vectors of the songs both fits know onto their new
//! ones carries what only exists in the old space (songs added from content, and the content
//! model's predictions, see `FusionModel::align_output`) into the new one.

use crate::ensure;
use crate::error::Result;
use crate::linalg::{cholesky, cholesky_solve, gemm_atb};

/// The ridge least-squares W (k x k, row-major) of `new ≈ old · W` over the rows of `old` and
/// `new` (n x k each), with a penalty of 1e-6 times the mean diagonal of oldᵀold.
pub fn alignment(old: &[f32], new: &[f32], k: usize) -> Result<Vec<f32>> {
    ensure!(k > 0, "the vectors need at least one factor");
    ensure!(
        old.len() == new.len() && old.len().is_multiple_of(k) && !old.is_empty(),
        "old and new vectors must be two (n x {k}) arrays of the same songs, got {} and {} values",
        old.len(),
        new.len()
    );
    ensure!(
        old.iter().chain(new).all(|v| v.is_finite()),
        "the vectors have NaN or infinite values"
    );
    let n = old.len() / k;
    let (o, m): (Vec<f64>, Vec<f64>) = (
        old.iter().map(|&v| f64::from(v)).collect(),
        new.iter().map(|&v| f64::from(v)).collect(),
    );
    let mut gram = vec![0.0; k * k];
    gemm_atb(k, k, n, &o, &o, &mut gram);
    let penalty = 1e-6 * (0..k).map(|i| gram[i * k + i]).sum::<f64>() / k as f64 + 1e-12;
    (0..k).for_each(|i| gram[i * k + i] += penalty);
    let mut w = vec![0.0; k * k];
    gemm_atb(k, k, n, &o, &m, &mut w);
    cholesky(&mut gram, k)?;
    cholesky_solve(&gram, k, &mut w, k);
    Ok(w.iter().map(|&v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known rotation and scaling is recovered from the vectors it produced.
    #[test]
    fn alignment_recovers_a_known_map() {
        let (n, k) = (50, 3);
        let old: Vec<f32> = (0..n * k).map(|i| ((i * 31 % 17) as f32 - 8.0) / 4.0).collect();
        let w = [0.0f32, 1.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.5, 1.5];
        let mut new = vec![0f32; n * k];
        for r in 0..n {
            for j in 0..k {
                new[r * k + j] = (0..k).map(|i| old[r * k + i] * w[i * k + j]).sum();
            }
        }
        let got = alignment(&old, &new, k).unwrap();
        for (g, want) in got.iter().zip(w) {
            assert!((g - want).abs() < 1e-4, "{g} vs {want}");
        }
        assert!(alignment(&old, &new[..k], k).is_err());
    }
}
