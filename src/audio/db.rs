//! Log compression of power spectrograms, as librosa 0.11 computes it: `power_to_db`
//! (`10 log10(max(amin, S) / ref)` with an optional `top_db` floor) and `log1p(C x)`, with
//! vectorised logarithms that agree with libm to f32 precision.

use crate::ensure;
use crate::error::{Error, Result};
use multiversion::multiversion;
use serde::{Deserialize, Serialize};

/// How the reference level of [`power_to_db`] is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DbRef {
    /// A fixed reference (librosa's `ref=1.0` is `Value { value: 1.0 }`); its absolute value is used.
    Value { value: f32 },
    /// The largest value of the array (`ref=np.max`), so the loudest cell is 0 dB.
    Max,
}

/// `librosa.power_to_db` in place: `10 log10(max(amin, S)) - 10 log10(max(amin, |ref|))`, then,
/// when `top_db` is given, values below `max - top_db` are raised to it (the max of this
/// array, so pass one clip at a time for per-clip behaviour). NaN in `s` is an error (librosa
/// would return NaN everywhere) and leaves `s` unchanged.
pub fn power_to_db(s: &mut [f32], reference: DbRef, amin: f32, top_db: Option<f32>) -> Result<()> {
    ensure!(
        amin.is_finite() && amin > 0.0,
        "amin must be strictly positive, got {amin}"
    );
    if let Some(top_db) = top_db {
        ensure!(
            top_db.is_finite() && top_db >= 0.0,
            "top_db must be non-negative, got {top_db}"
        );
    }
    if let DbRef::Value { value } = reference {
        ensure!(value.is_finite(), "the dB reference value must be finite, got {value}");
    }
    if let Some(i) = first_nan(s) {
        return Err(Error::invalid(format!("power_to_db input is NaN at index {i}")));
    }
    if s.is_empty() {
        return Ok(());
    }
    let ref_value = match reference {
        DbRef::Value { value } => value.abs(),
        DbRef::Max => max_kernel(s),
    };
    let ref_db = 10.0 * f64::from(amin.max(ref_value)).log10();
    let peak = db_kernel(s, amin, ref_db);
    if let Some(top_db) = top_db {
        let floor = peak - top_db;
        for v in s.iter_mut() {
            *v = v.max(floor);
        }
    }
    Ok(())
}

/// `log(1 + c S)` in place, for `c > 0` (NaN stays NaN, -1 gives -inf, below -1 NaN, as libm).
pub fn log1p_compress(s: &mut [f32], c: f32) -> Result<()> {
    ensure!(c.is_finite() && c > 0.0, "log1p constant c must be positive, got {c}");
    log1p_kernel(s, f64::from(c));
    Ok(())
}

fn first_nan(s: &[f32]) -> Option<usize> {
    let any = |c: &[f32]| c.iter().fold(false, |acc, v| acc | v.is_nan());
    s.chunks(1024)
        .position(any)
        .and_then(|c| s[c * 1024..].iter().position(|v| v.is_nan()).map(|i| c * 1024 + i))
}

/// Lanes of the element-wise log kernels: independent maxima so the loops vectorise.
const LOG_LANES: usize = 16;

/// `10 log10(max(amin, v)) - ref_db` for every element (no NaN in `s`); returns the largest
/// result. libm's log10f costs ~8 ns per call, a third of a clip's time; this runs in f64
/// (well below f32 rounding error) and vectorises.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn db_kernel(s: &mut [f32], amin: f32, ref_db: f64) -> f32 {
    let scale = 10.0 * std::f64::consts::LOG10_E;
    let db = |v: f32| (scale * ln_f32(amin.max(v)) - ref_db) as f32;
    let mut peak = [f32::NEG_INFINITY; LOG_LANES];
    let mut chunks = s.chunks_exact_mut(LOG_LANES);
    for chunk in &mut chunks {
        for (v, p) in chunk.iter_mut().zip(peak.iter_mut()) {
            *v = db(*v);
            *p = if *v > *p { *v } else { *p };
        }
    }
    for (v, p) in chunks.into_remainder().iter_mut().zip(peak.iter_mut()) {
        *v = db(*v);
        *p = if *v > *p { *v } else { *p };
    }
    peak.iter().fold(f32::NEG_INFINITY, |m, &p| m.max(p))
}

/// Largest value of `s` (no NaN in it), with independent lanes so it vectorises.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn max_kernel(s: &[f32]) -> f32 {
    let mut peak = [f32::NEG_INFINITY; LOG_LANES];
    let mut chunks = s.chunks_exact(LOG_LANES);
    for chunk in &mut chunks {
        for (&v, p) in chunk.iter().zip(peak.iter_mut()) {
            *p = if v > *p { v } else { *p };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&peak)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn log1p_kernel(s: &mut [f32], c: f64) {
    for v in s.iter_mut() {
        let d = c * f64::from(*v);
        let u = 1.0 + d;
        // Goldberg's correction: ln(u) * d / (u - 1) is exact to rounding even when 1 + d
        // loses most of d's digits.
        let r = if u == 1.0 { d } else { ln_f64(u) * d / (u - 1.0) };
        *v = if u > 0.0 && u < f64::INFINITY {
            r as f32
        } else if u == 0.0 {
            f32::NEG_INFINITY
        } else if u == f64::INFINITY {
            f32::INFINITY
        } else {
            f32::NAN
        };
    }
}

/// Natural log of a positive f32 (subnormals and +inf included), in f64 to ~1e-15 relative:
/// split into 2^e m with m in [sqrt(1/2), sqrt(2)), then ln m = 2 atanh(t), t = (m-1)/(m+1),
/// |t| < 0.172, by its odd series to t^11 (truncation below 2e-11 absolute).
#[inline(always)]
fn ln_f32(x: f32) -> f64 {
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal { x * 16_777_216.0 } else { x };
    let bits = xs.to_bits();
    let e = ((bits >> 23) as i32 - 127 - if subnormal { 24 } else { 0 }) as f64;
    let m = f64::from(f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000));
    let r = ln_mantissa(m, e);
    if xs == f32::INFINITY { f64::INFINITY } else { r }
}

/// Natural log of a positive normal finite f64 (callers select around other values).
#[inline(always)]
fn ln_f64(x: f64) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) as i32 - 1023) as f64;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    ln_mantissa(m, e)
}

/// ln(m 2^e) for m in [1, 2).
#[inline(always)]
fn ln_mantissa(m: f64, e: f64) -> f64 {
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { m * 0.5 } else { m };
    let e = if high { e + 1.0 } else { e };
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = ((((t2 * (1.0 / 11.0) + 1.0 / 9.0) * t2 + 1.0 / 7.0) * t2 + 1.0 / 5.0) * t2 + 1.0 / 3.0) * t2 + 1.0;
    2.0 * t * series + e * std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::spectrum::fixtures::Case;

    #[test]
    fn power_to_db_matches_librosa_on_its_own_mel() {
        let mut worst = 0f64;
        for case in Case::all() {
            if case.param("amin").as_f64().is_none() {
                continue; // filterbank-only cases have no dB references
            }
            for (name, _) in case.signals() {
                let (mel, _) = case.array(&format!("{name}.mel"));
                let d = case.worst_db_diff(&name, &mel);
                assert!(d <= 1e-4, "{} {name}: {d} dB", case.name);
                worst = worst.max(d);
            }
        }
        eprintln!("power_to_db on librosa's Mel: max |diff| {worst:.2e} dB");
    }

    #[test]
    fn power_to_db_clips_at_top_db() {
        let mut s = vec![1.0f32, 1e-2, 1e-6, 1e-12, 0.0, -1.0, 100.0];
        power_to_db(&mut s, DbRef::Value { value: 1.0 }, 1e-10, Some(80.0)).unwrap();
        // max is 20 dB, so the floor is -60 dB.
        let expected = [0.0f32, -20.0, -60.0, -60.0, -60.0, -60.0, 20.0];
        for (g, e) in s.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{s:?}");
        }
        let mut s = vec![4.0f32, 1.0, 1e-20];
        power_to_db(&mut s, DbRef::Max, 1e-10, None).unwrap();
        assert!(
            (s[0]).abs() < 1e-6 && (s[1] + 6.0206).abs() < 1e-3 && (s[2] + 106.0206).abs() < 1e-3,
            "{s:?}"
        );
        let mut s = vec![4.0f32, 1.0];
        power_to_db(&mut s, DbRef::Value { value: -4.0 }, 1e-10, Some(0.0)).unwrap();
        assert_eq!(s, [0.0, 0.0]);
        let mut empty: [f32; 0] = [];
        power_to_db(&mut empty, DbRef::Max, 1e-10, Some(80.0)).unwrap();
        let mut s = vec![0.0f32, 1.0, 3.0];
        log1p_compress(&mut s, 2.0).unwrap();
        for (g, e) in s.iter().zip([0.0f32, 3f32.ln(), 7f32.ln()]) {
            assert!((g - e).abs() <= 1e-6 * e, "{s:?}");
        }
    }

    #[test]
    fn fast_logs_match_libm() {
        // Every 9973rd f32 bit pattern: subnormals to the largest finite, plus the ends.
        let mut xs: Vec<f32> = (1..0x7f80_0000u32).step_by(9973).map(f32::from_bits).collect();
        xs.extend([
            f32::MIN_POSITIVE,
            f32::MAX,
            1.0,
            1e-10,
            f32::from_bits(1),
            std::f32::consts::SQRT_2,
        ]);
        for &x in &xs {
            let (got, want) = (ln_f32(x), f64::from(x).ln());
            assert!((got - want).abs() <= 1e-10, "ln({x:e}) = {got} vs {want}");
        }
        assert_eq!(ln_f32(f32::INFINITY), f64::INFINITY);
        let mut ds: Vec<f32> = xs.iter().flat_map(|&x| [x, -x.min(0.999_999)]).collect();
        ds.extend([0.0, -0.0, -1.0, -2.0, f32::INFINITY, f32::NAN, 1e-30, -1e-30]);
        let mut got = ds.clone();
        log1p_compress(&mut got, 1.0).unwrap();
        for (&d, &g) in ds.iter().zip(&got) {
            let want = f64::from(d).ln_1p() as f32;
            let ok = (g.is_nan() && want.is_nan()) || g == want || (g - want).abs() <= 2.0 * f32::EPSILON * want.abs();
            assert!(ok, "log1p({d:e}) = {g} vs {want}");
        }
        let mut db: Vec<f32> = xs.clone();
        power_to_db(&mut db, DbRef::Value { value: 1.0 }, f32::from_bits(1), None).unwrap();
        for (&x, &g) in xs.iter().zip(&db) {
            let want = (10.0 * f64::from(x).log10()) as f32;
            assert!(
                (g - want).abs() <= 2.0 * f32::EPSILON * want.abs().max(1.0),
                "dB({x:e}) = {g} vs {want}"
            );
        }
    }

    use crate::error::invalid_message as message;

    #[test]
    fn bad_parameters_and_nan_are_named() {
        let mut s = vec![1f32; 4];
        assert!(message(power_to_db(&mut s, DbRef::Max, 0.0, None)).contains("amin"));
        assert!(message(power_to_db(&mut s, DbRef::Max, 1e-10, Some(-1.0))).contains("top_db"));
        assert!(message(power_to_db(&mut s, DbRef::Value { value: f32::INFINITY }, 1e-10, None)).contains("reference"));
        assert!(message(power_to_db(&mut [1.0, f32::NAN], DbRef::Max, 1e-10, None)).contains("NaN at index 1"));
        assert!(message(log1p_compress(&mut s, 0.0)).contains("log1p"));
        assert!(message(log1p_compress(&mut s, f32::NAN)).contains("log1p"));
    }

    #[test]
    fn reference_serde_is_tagged() {
        let r = serde_json::to_string(&DbRef::Value { value: 1.0 }).unwrap();
        assert_eq!(r, r#"{"kind":"value","value":1.0}"#);
        assert_eq!(serde_json::to_string(&DbRef::Max).unwrap(), r#"{"kind":"max"}"#);
    }
}
