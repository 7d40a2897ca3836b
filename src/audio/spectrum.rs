//! Short-time Fourier transform magnitude/power spectrograms, as librosa 0.11 computes them
//! (`np.abs(librosa.stft(...)) ** power`); their log compression is in [`super::db`].
//!
//! Framing follows librosa exactly: with `center`, the signal is padded by `n_fft / 2` on
//! both sides (zeros, or numpy's `reflect`) and frame `t` starts at `t * hop_length` in the
//! padded signal; without it, frames start at `t * hop_length` in the signal itself. Windows
//! are periodic (`scipy.signal.get_window(..., fftbins=True)`) and, when `win_length < n_fft`,
//! zero-padded to `n_fft` with the window centred, as `librosa.util.pad_center` does.
//!
//! Reflect padding is numpy's `np.pad(mode="reflect")` of the whole signal, including for
//! signals shorter than the padding: the reflection then repeats (period `2 (len - 1)`), and a
//! one-sample signal is repeated as is — what numpy does, and what librosa 0.11 accepts with a
//! warning. librosa pads the head and tail of long signals separately, which in one corner
//! (reflect, `hop_length == n_fft / 2`, `len - n_fft / 2` a multiple of `hop_length`) changes
//! the last sample of the last frame; that sample is weighted by `window[n_fft - 1]` (~1e-5
//! for Hann), so the two differ by about 1e-7 of the frame's energy there. We keep the
//! whole-signal padding, which is what librosa documents.
//!
//! Precision: like librosa (window in f64 times f32 samples, FFT in f64, result rounded), the
//! window, the FFT and |X|^power run in f64 and only the output is rounded to f32, so every
//! bin keeps f32 relative precision however far below the frame's peak it lies. An f32 FFT
//! was ~20% faster but its error floor (~1e-7 of the peak) showed as >1e-3 dB in quiet Mel
//! bands, and as whole dB with `power = 1` followed by `power_to_db` (160 dB of range).
//! Non-finite samples are an error, as in librosa (`valid_audio`).

use crate::ensure;
use crate::error::{Error, Result};
use multiversion::multiversion;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Frames transformed before their spectra are transposed into the bins x frames output, so
/// each output row receives a contiguous run. Measured: 16 beats writing each frame's bins
/// straight into the strided output (~20% slower) and 8x8-tiled transposes (no gain).
pub(crate) const BLOCK: usize = 16;
/// Largest FFT accepted: far beyond any audio use, small enough that plans and buffers fit.
const MAX_N_FFT: usize = 1 << 20;

/// Analysis window, periodic (the DFT-even form used for spectral analysis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hann,
    Hamming,
}

impl Window {
    /// The window of `len` samples as scipy computes it (`general_hamming(len + 1, alpha)`
    /// truncated to `len`), in f64 and then rounded, so values match scipy's to the last bit
    /// of f32.
    fn periodic(self, len: usize) -> Vec<f64> {
        if len <= 1 {
            return vec![1.0; len];
        }
        let alpha = match self {
            Window::Hann => 0.5,
            Window::Hamming => 0.54,
        };
        // np.linspace(-pi, pi, len + 1): start + n * step.
        let step = 2.0 * std::f64::consts::PI / len as f64;
        (0..len)
            .map(|n| {
                let fac = n as f64 * step - std::f64::consts::PI;
                alpha + (1.0 - alpha) * fac.cos()
            })
            .collect()
    }
}

/// How the signal is extended beyond its ends when frames are centred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Zeros: librosa's default since 0.10 for `stft` and `melspectrogram`.
    Constant,
    /// Mirror without repeating the edge sample (numpy `reflect`; torchaudio's default).
    Reflect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StftConfig {
    pub n_fft: usize,
    pub hop_length: usize,
    /// Window length; the window is zero-padded (centred) to `n_fft` when shorter.
    pub win_length: usize,
    pub window: Window,
    /// Pad `n_fft / 2` on both sides so frame `t` is centred on sample `t * hop_length`.
    pub center: bool,
    pub pad_mode: PadMode,
    /// 1.0 for magnitude, 2.0 for power.
    pub power: f32,
}

impl StftConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.n_fft >= 2, "n_fft must be at least 2, got {}", self.n_fft);
        ensure!(
            self.n_fft <= MAX_N_FFT,
            "n_fft must be at most {MAX_N_FFT}, got {}",
            self.n_fft
        );
        ensure!(
            self.win_length >= 1 && self.win_length <= self.n_fft,
            "win_length must be between 1 and n_fft = {}, got {}",
            self.n_fft,
            self.win_length
        );
        ensure!(
            self.hop_length >= 1,
            "hop_length must be at least 1, got {}",
            self.hop_length
        );
        ensure!(
            self.power == 1.0 || self.power == 2.0,
            "power must be 1.0 (magnitude) or 2.0 (power), got {}",
            self.power
        );
        Ok(())
    }
}

/// The FFT behind a plan. An even `n_fft` (every audio use) packs the real frame into
/// `n_fft / 2` complex points, transforms those in place and untangles the two halves while
/// squaring (one pass, straight to f32 power): realfft's own untangling is scalar and cost as
/// much as the complex FFT itself. Odd sizes go through realfft.
enum Plan {
    Packed {
        fft: Arc<dyn Fft<f64>>,
        /// `exp(-2 pi i k / n_fft)` for `k < (n_fft / 2 + 1) / 2`.
        twiddles: Vec<Complex<f64>>,
    },
    Real(Arc<dyn RealToComplex<f64>>),
}

/// A planned STFT: the FFT plan (f64) and the window, padded to `n_fft`. Immutable, so one
/// instance serves every thread; each thread brings its own [`StftScratch`].
pub struct Stft {
    cfg: StftConfig,
    plan: Plan,
    /// `n_fft` long, zero outside `support`.
    window: Vec<f64>,
    /// The window's non-zero span within the frame: only these samples are read.
    support: std::ops::Range<usize>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Per-thread buffers of [`Stft::spectrogram_into`] and [`Stft::for_each_block`]; sized on
/// first use, then reused.
#[derive(Default)]
pub struct StftScratch {
    frame: Vec<f64>,
    /// The packed frame and its transform (`n_fft / 2`), or realfft's output (`n_bins`).
    spectrum: Vec<Complex<f64>>,
    fft: Vec<Complex<f64>>,
    /// Up to `BLOCK` frames of output, frame-major.
    block: Vec<f32>,
}

impl Stft {
    pub fn new(cfg: &StftConfig) -> Result<Self> {
        cfg.validate()?;
        let n_fft = cfg.n_fft;
        let plan = if n_fft.is_multiple_of(2) {
            let m = n_fft / 2;
            let twiddles = (0..m.div_ceil(2).max(1))
                .map(|k| {
                    let (sin, cos) = (-2.0 * std::f64::consts::PI * k as f64 / n_fft as f64).sin_cos();
                    Complex::new(cos, sin)
                })
                .collect();
            Plan::Packed {
                fft: FftPlanner::<f64>::new().plan_fft_forward(m),
                twiddles,
            }
        } else {
            Plan::Real(RealFftPlanner::<f64>::new().plan_fft_forward(n_fft))
        };
        // librosa.util.pad_center: the left pad is the smaller half.
        let lpad = (n_fft - cfg.win_length) / 2;
        let mut window = vec![0f64; n_fft];
        window[lpad..lpad + cfg.win_length].copy_from_slice(&cfg.window.periodic(cfg.win_length));
        Ok(Stft {
            cfg: cfg.clone(),
            plan,
            window,
            support: lpad..lpad + cfg.win_length,
        })
    }

    pub fn config(&self) -> &StftConfig {
        &self.cfg
    }

    pub fn n_bins(&self) -> usize {
        self.cfg.n_fft / 2 + 1
    }

    /// Frames librosa produces for `n_samples` samples: `1 + (len + 2 (n_fft / 2) - n_fft) / hop`
    /// when centred (`1 + n_samples / hop` for even `n_fft`), `1 + (n_samples - n_fft) / hop`
    /// otherwise, and 0 when the (padded) signal is shorter than one frame.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        let n_fft = self.cfg.n_fft;
        let padded = if self.cfg.center {
            n_samples.saturating_add(2 * (n_fft / 2))
        } else {
            n_samples
        };
        if padded < n_fft {
            0
        } else {
            1 + (padded - n_fft) / self.cfg.hop_length
        }
    }

    /// |STFT|^power laid out bins x frames, row-major (librosa's `(1 + n_fft/2, t)` layout).
    /// `out.len()` must be `n_bins * n_frames(y.len())`. No allocation once scratch is warm.
    pub fn spectrogram_into(&self, y: &[f32], out: &mut [f32], scratch: &mut StftScratch) -> Result<()> {
        let (n_bins, frames) = (self.n_bins(), self.n_frames(y.len()));
        ensure!(
            out.len() == n_bins * frames,
            "output holds {} values, expected {n_bins} bins x {frames} frames = {}",
            out.len(),
            n_bins * frames
        );
        self.for_each_block(y, scratch, |t0, count, block| {
            transpose_block(block, n_bins, count, &mut out[t0..], frames)
        })
    }

    pub fn spectrogram(&self, y: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.n_bins() * self.n_frames(y.len())];
        self.spectrogram_into(y, &mut out, &mut StftScratch::default())?;
        Ok(out)
    }

    /// The spectrogram of `y` a few frames at a time, for consumers (the Mel product) that
    /// never need all of it at once: `each(t0, count, block)` receives frames
    /// `t0 .. t0 + count` (at most `BLOCK`) as `count` rows of `n_bins` |X|^power values.
    /// Checks the signal first (non-empty, finite, long enough for one frame).
    pub fn for_each_block(
        &self,
        y: &[f32],
        scratch: &mut StftScratch,
        mut each: impl FnMut(usize, usize, &[f32]),
    ) -> Result<()> {
        let n_fft = self.cfg.n_fft;
        let n_bins = self.n_bins();
        let frames = self.n_frames(y.len());
        ensure!(!y.is_empty(), "the signal is empty");
        ensure!(
            frames > 0,
            "n_fft = {n_fft} is too large for uncentered analysis of a signal of {} samples",
            y.len()
        );
        if let Some(i) = first_non_finite(y) {
            return Err(Error::invalid(format!(
                "the signal is not finite everywhere (sample {i} is {})",
                y[i]
            )));
        }
        let StftScratch {
            frame,
            spectrum,
            fft: fft_scratch,
            block,
        } = scratch;
        frame.resize(n_fft, 0.0);
        let (spectrum_len, scratch_len) = match &self.plan {
            Plan::Packed { fft, .. } => (n_fft / 2, fft.get_inplace_scratch_len()),
            Plan::Real(fft) => (n_bins, fft.get_scratch_len()),
        };
        spectrum.resize(spectrum_len, Complex::default());
        fft_scratch.resize(scratch_len, Complex::default());
        block.resize(BLOCK * n_bins, 0.0);
        for t0 in (0..frames).step_by(BLOCK) {
            let count = BLOCK.min(frames - t0);
            for (j, dst) in block.chunks_exact_mut(n_bins).take(count).enumerate() {
                frame_power(self, y, t0 + j, frame, spectrum, fft_scratch, dst)?;
            }
            each(t0, count, &block[..count * n_bins]);
        }
        Ok(())
    }

    /// Where frame `t`'s window support starts in `y`, when all of it lies inside `y`.
    #[inline(always)]
    fn interior_start(&self, n_samples: usize, t: usize) -> Option<usize> {
        let offset = if self.cfg.center { self.cfg.n_fft / 2 } else { 0 };
        let first = (t * self.cfg.hop_length + self.support.start).checked_sub(offset)?;
        (first + self.support.len() <= n_samples).then_some(first)
    }

    /// Windowed frame `t` into `frame` (`n_fft` long). The FFT may use its input as scratch,
    /// so every sample is written each time.
    #[inline(always)]
    fn fill_frame(&self, y: &[f32], t: usize, frame: &mut [f64]) {
        let offset = if self.cfg.center {
            (self.cfg.n_fft / 2) as isize
        } else {
            0
        };
        // Position of frame sample 0 in `y`; negative in the left padding.
        let start = (t * self.cfg.hop_length) as isize - offset;
        let (lo, hi) = (self.support.start, self.support.end);
        frame[..lo].fill(0.0);
        frame[hi..].fill(0.0);
        let first = start + lo as isize;
        let last = start + hi as isize;
        let dst = &mut frame[lo..hi];
        let win = &self.window[lo..hi];
        if first >= 0 && last <= y.len() as isize {
            // The common case: window multiply fused into the copy, one vectorised pass.
            let src = &y[first as usize..last as usize];
            for ((d, &s), &w) in dst.iter_mut().zip(src).zip(win) {
                *d = s as f64 * w;
            }
        } else {
            for (k, (d, &w)) in dst.iter_mut().zip(win).enumerate() {
                *d = self.padded_sample(y, first + k as isize) as f64 * w;
            }
        }
    }

    /// Sample `i` of the padded signal, `i` relative to `y[0]` (`y` non-empty).
    fn padded_sample(&self, y: &[f32], i: isize) -> f32 {
        let n = y.len() as isize;
        if (0..n).contains(&i) {
            return y[i as usize];
        }
        match self.cfg.pad_mode {
            PadMode::Constant => 0.0,
            PadMode::Reflect => y[reflect_index(i, y.len())],
        }
    }
}

/// One frame: window, FFT, |X|^power rounded once to f32 into `dst` (`n_bins`). Compiled per
/// SIMD level (chosen at run time) so the window multiply, the untangling and the power use
/// AVX2 where present; the FFT dispatches on its own. No AVX-512 version: it measured ~10%
/// slower for the whole STFT (the wider units lower the clock for the FFT that runs in between).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn frame_power(
    stft: &Stft,
    y: &[f32],
    t: usize,
    frame: &mut [f64],
    spectrum: &mut [Complex<f64>],
    fft_scratch: &mut [Complex<f64>],
    dst: &mut [f32],
) -> Result<()> {
    let magnitude = stft.cfg.power == 1.0;
    match &stft.plan {
        Plan::Packed { fft, twiddles } => {
            // z[n] = (x[2n] + i x[2n+1]) / 2: halving is exact and saves it in every bin below.
            match stft.interior_start(y.len(), t) {
                // The common case (a full-length window inside the signal): windowed straight
                // into the packed buffer.
                Some(first) if stft.support.len() == stft.cfg.n_fft => {
                    let src = y[first..first + stft.cfg.n_fft].chunks_exact(2);
                    let win = stft.window.chunks_exact(2);
                    for ((c, s), w) in spectrum.iter_mut().zip(src).zip(win) {
                        *c = Complex::new(s[0] as f64 * w[0] * 0.5, s[1] as f64 * w[1] * 0.5);
                    }
                }
                _ => {
                    stft.fill_frame(y, t, frame);
                    for (c, pair) in spectrum.iter_mut().zip(frame.chunks_exact(2)) {
                        *c = Complex::new(pair[0] * 0.5, pair[1] * 0.5);
                    }
                }
            }
            fft.process_with_scratch(spectrum, fft_scratch);
            // One loop per power so that the branch is outside it and the loop vectorises.
            if magnitude {
                untangle_power::<true>(spectrum, twiddles, dst);
            } else {
                untangle_power::<false>(spectrum, twiddles, dst);
            }
        }
        Plan::Real(fft) => {
            stft.fill_frame(y, t, frame);
            fft.process_with_scratch(frame, spectrum, fft_scratch)
                .map_err(|e| Error::invalid(format!("FFT of size {} failed: {e}", stft.cfg.n_fft)))?;
            for (d, c) in dst.iter_mut().zip(spectrum.iter()) {
                *d = if magnitude {
                    finish::<true>(c.re, c.im)
                } else {
                    finish::<false>(c.re, c.im)
                };
            }
        }
    }
    Ok(())
}

/// |X|^power of one bin, rounded once to f32.
#[inline(always)]
fn finish<const MAGNITUDE: bool>(re: f64, im: f64) -> f32 {
    let p = re * re + im * im;
    (if MAGNITUDE { p.sqrt() } else { p }) as f32
}

/// |X[k]|^power of the real frame from `z = FFT(packed frame / 2)` (`m = n_fft / 2` points):
/// with `a = z[k]`, `b = conj z[m - k]`, the even and odd samples' spectra are `E = a + b` and
/// `O = -i (a - b)`, and `X[k] = E + W^k O`, `X[m - k] = conj(E - W^k O)`: each pair of bins
/// from one pair of loads, written from both ends.
#[inline(always)]
fn untangle_power<const MAGNITUDE: bool>(z: &[Complex<f64>], twiddles: &[Complex<f64>], dst: &mut [f32]) {
    let finish = finish::<MAGNITUDE>;
    let m = z.len();
    // Bins 0 and m: z[m] is z[0], and O[0] = 2 Im z[0].
    dst[0] = finish(2.0 * (z[0].re + z[0].im), 0.0);
    dst[m] = finish(2.0 * (z[0].re - z[0].im), 0.0);
    let half = m.div_ceil(2); // pairs (k, m - k) for 1 <= k < half
    let pair = |a: Complex<f64>, c: Complex<f64>, w: Complex<f64>| {
        let (er, ei) = (a.re + c.re, a.im - c.im);
        let (dr, di) = (a.re - c.re, a.im + c.im);
        // O = -i d = (di, -dr); T = W O.
        let (tr, ti) = (w.re * di + w.im * dr, w.im * di - w.re * dr);
        (finish(er + tr, ei + ti), finish(er - tr, ei - ti))
    };
    // Fixed-width chunks (the high bins run backwards): array lengths known at compile time
    // let LLVM vectorise the chunk; a plain reversed zip stayed scalar.
    const L: usize = 4;
    let mut k = 1;
    while k + L <= half {
        let lows: &[Complex<f64>; L] = z[k..k + L].try_into().unwrap();
        let highs: &[Complex<f64>; L] = z[m + 1 - k - L..m + 1 - k].try_into().unwrap();
        let w: &[Complex<f64>; L] = twiddles[k..k + L].try_into().unwrap();
        let (mut lo, mut hi) = ([0f32; L], [0f32; L]);
        for l in 0..L {
            (lo[l], hi[L - 1 - l]) = pair(lows[l], highs[L - 1 - l], w[l]);
        }
        dst[k..k + L].copy_from_slice(&lo);
        dst[m + 1 - k - L..m + 1 - k].copy_from_slice(&hi);
        k += L;
    }
    for k in k..half {
        (dst[k], dst[m - k]) = pair(z[k], z[m - k], twiddles[k]);
    }
    if m.is_multiple_of(2) {
        // k = m / 2 pairs with itself: X = 2 conj(z[m / 2]).
        let a = z[m / 2];
        dst[m / 2] = finish(2.0 * a.re, 2.0 * a.im);
    }
}

/// Index of the first NaN or infinite sample. A branch-free OR over chunks vectorises; the
/// position is searched only when something was found.
fn first_non_finite(y: &[f32]) -> Option<usize> {
    const EXP: u32 = 0x7f80_0000;
    let bad = |c: &[f32]| c.iter().fold(0u32, |acc, v| acc | ((v.to_bits() & EXP) == EXP) as u32) != 0;
    y.chunks(1024).position(bad).and_then(|c| {
        let start = c * 1024;
        y[start..].iter().position(|v| !v.is_finite()).map(|i| start + i)
    })
}

/// numpy's `reflect` index for any `i`: mirror about both ends without repeating them,
/// periodically (period `2 (n - 1)`); a single sample is repeated (numpy's legacy edge rule).
fn reflect_index(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let n = n as isize;
    let period = 2 * (n - 1);
    let r = i.rem_euclid(period);
    (if r < n { r } else { period - r }) as usize
}

/// `block` holds `count` frames of `n_bins` values each; write them as columns of `out`
/// (rows of length `stride`, `out` already offset to the block's first frame).
#[inline(always)]
fn transpose_block(block: &[f32], n_bins: usize, count: usize, out: &mut [f32], stride: usize) {
    for k in 0..n_bins {
        let row = &mut out[k * stride..k * stride + count];
        for (j, d) in row.iter_mut().enumerate() {
            *d = block[j * n_bins + k];
        }
    }
}

/// Reading the golden files written by tests/fixtures/make_librosa_fixtures.py (shared with
/// the Mel tests).
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::Value;
    use std::path::PathBuf;

    pub struct Case {
        pub name: String,
        pub meta: Value,
    }

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/librosa")
    }

    impl Case {
        pub fn load(name: &str) -> Case {
            let path = dir().join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Case {
                name: name.to_string(),
                meta: serde_json::from_str(&text).expect("fixture JSON"),
            }
        }

        /// Every case that holds a filterbank (i.e. all but the signal stores).
        pub fn all() -> Vec<Case> {
            let mut names: Vec<String> = std::fs::read_dir(dir())
                .expect("fixture directory")
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    let stem = name.strip_suffix(".json")?;
                    (!stem.starts_with("signals_")).then(|| stem.to_string())
                })
                .collect();
            names.sort();
            assert!(
                names.len() >= 6,
                "fixtures missing: run tests/fixtures/make_librosa_fixtures.py"
            );
            names.iter().map(|n| Case::load(n)).collect()
        }

        pub fn param(&self, key: &str) -> &Value {
            &self.meta["params"][key]
        }

        pub fn usize(&self, key: &str) -> usize {
            self.param(key)
                .as_u64()
                .unwrap_or_else(|| panic!("{}: {key}", self.name)) as usize
        }

        pub fn f32(&self, key: &str) -> f32 {
            self.param(key)
                .as_f64()
                .unwrap_or_else(|| panic!("{}: {key}", self.name)) as f32
        }

        pub fn str(&self, key: &str) -> &str {
            self.param(key)
                .as_str()
                .unwrap_or_else(|| panic!("{}: {key}", self.name))
        }

        pub fn has(&self, array: &str) -> bool {
            self.meta["arrays"].get(array).is_some()
        }

        /// An array and its shape.
        pub fn array(&self, array: &str) -> (Vec<f32>, Vec<usize>) {
            let entry = &self.meta["arrays"][array];
            let file = entry["file"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no array {array}", self.name));
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let bytes = std::fs::read(dir().join(file)).expect("fixture array");
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{file}");
            (values, shape)
        }

        /// (name, samples) of each input signal of this case.
        /// Worst |dB| difference between `power_to_db(mel)` and each stored dB reference
        /// ("db_max", "db_ref1") of signal `name`, with the case's amin and top_db.
        pub fn worst_db_diff(&self, name: &str, mel: &[f32]) -> f64 {
            use crate::audio::db::{DbRef, power_to_db};
            let (amin, top_db) = (self.f32("amin"), Some(self.f32("top_db")));
            let mut worst = 0f64;
            for (key, reference) in [("db_max", DbRef::Max), ("db_ref1", DbRef::Value { value: 1.0 })] {
                let key = format!("{name}.{key}");
                if !self.has(&key) {
                    continue;
                }
                let mut got = mel.to_vec();
                power_to_db(&mut got, reference, amin, top_db).unwrap();
                worst = worst.max(max_abs_diff(&got, &self.array(&key).0));
            }
            worst
        }

        pub fn signals(&self) -> Vec<(String, Vec<f32>)> {
            if self.meta["signals"].as_array().is_none_or(|s| s.is_empty()) {
                return Vec::new();
            }
            let store = Case::load(self.meta["signals_case"].as_str().expect("signals_case"));
            self.meta["signals"]
                .as_array()
                .expect("signals")
                .iter()
                .map(|n| {
                    let n = n.as_str().expect("signal name").to_string();
                    let (y, _) = store.array(&n);
                    (n, y)
                })
                .collect()
        }

        pub fn stft_config(&self) -> super::StftConfig {
            super::StftConfig {
                n_fft: self.usize("n_fft"),
                hop_length: self.usize("hop_length"),
                win_length: self.usize("win_length"),
                window: match self.str("window") {
                    "hann" => super::Window::Hann,
                    "hamming" => super::Window::Hamming,
                    w => panic!("window {w}"),
                },
                center: self.param("center").as_bool().expect("center"),
                pad_mode: match self.str("pad_mode") {
                    "constant" => super::PadMode::Constant,
                    "reflect" => super::PadMode::Reflect,
                    p => panic!("pad_mode {p}"),
                },
                power: self.f32("power"),
            }
        }
    }

    /// Largest |a - b| / (atol + rtol |b|) with `atol = atol_rel * max |b|`: at most 1 passes.
    pub fn worst(a: &[f32], b: &[f32], rtol: f64, atol_rel: f64) -> (f64, f64) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        let atol = atol_rel * scale;
        let mut ratio = 0f64;
        let mut abs = 0f64;
        for (&x, &y) in a.iter().zip(b) {
            let d = (x as f64 - y as f64).abs();
            abs = abs.max(d);
            ratio = ratio.max(d / (atol + rtol * (y as f64).abs()).max(f64::MIN_POSITIVE));
        }
        (ratio, if scale > 0.0 { abs / scale } else { abs })
    }

    /// Seconds per call of `f`, the best of `batches` batches of `per_batch` calls: robust to
    /// other work on the machine (for the ignored timing tests).
    pub fn best_seconds(batches: usize, per_batch: usize, mut f: impl FnMut()) -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..batches {
            let t = std::time::Instant::now();
            for _ in 0..per_batch {
                f();
            }
            best = best.min(t.elapsed().as_secs_f64() / per_batch as f64);
        }
        best
    }

    pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{Case, worst};
    use super::*;

    fn cfg(n_fft: usize, hop: usize) -> StftConfig {
        StftConfig {
            n_fft,
            hop_length: hop,
            win_length: n_fft,
            window: Window::Hann,
            center: true,
            pad_mode: PadMode::Constant,
            power: 2.0,
        }
    }

    use crate::error::invalid_message as message;

    #[test]
    fn stft_power_matches_librosa() {
        let mut checked = 0;
        for case in Case::all() {
            let signals = case.signals();
            if signals.is_empty() {
                continue;
            }
            let stft = Stft::new(&case.stft_config()).unwrap();
            for (name, y) in signals {
                let key = format!("{name}.stft_power");
                if !case.has(&key) {
                    continue;
                }
                let (expected, shape) = case.array(&key);
                assert_eq!(
                    shape,
                    vec![stft.n_bins(), stft.n_frames(y.len())],
                    "{} {key}",
                    case.name
                );
                let got = stft.spectrogram(&y).unwrap();
                let (ratio, rel) = worst(&got, &expected, 1e-5, 1e-4);
                eprintln!(
                    "stft {} {name}: max |diff| / max = {rel:.2e}, tolerance used {ratio:.3}",
                    case.name
                );
                assert!(
                    ratio <= 1.0,
                    "{} {name}: STFT power off by {ratio} x tolerance",
                    case.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} STFTs checked");
    }

    #[test]
    fn periodic_windows_match_closed_forms() {
        for n in [1usize, 2, 3, 8, 1024, 1000] {
            for (window, a) in [(Window::Hann, 0.5), (Window::Hamming, 0.54)] {
                let w = window.periodic(n);
                assert_eq!(w.len(), n);
                for (i, &v) in w.iter().enumerate() {
                    let expected = if n == 1 {
                        1.0
                    } else {
                        a - (1.0 - a) * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()
                    };
                    assert!(
                        (v - expected).abs() < 1e-15,
                        "{window:?} n={n} i={i}: {v} vs {expected}"
                    );
                }
            }
        }
        // Periodic, not symmetric: the first sample is the minimum, the last is not.
        let h = Window::Hann.periodic(8);
        assert_eq!(h[0], 0.0);
        assert!((h[4] - 1.0).abs() < 1e-7 && h[7] > 0.1);
        let m = Window::Hamming.periodic(8);
        assert!((m[0] - 0.08).abs() < 1e-7);
    }

    #[test]
    fn short_window_is_centred_in_the_frame() {
        let stft = Stft::new(&StftConfig {
            win_length: 5,
            ..cfg(10, 2)
        })
        .unwrap();
        // pad_center: (10 - 5) / 2 = 2 zeros on the left, 3 on the right.
        assert_eq!(stft.support, 2..7);
        assert!(stft.window[..2].iter().chain(&stft.window[7..]).all(|&v| v == 0.0));
        assert_eq!(&stft.window[2..7], Window::Hann.periodic(5).as_slice());
    }

    #[test]
    fn sinusoid_peaks_at_its_bin() {
        let (sr, n_fft) = (8000.0f32, 1024usize);
        for bin in [1usize, 37, 100, 300, 511] {
            let f = bin as f32 * sr / n_fft as f32;
            let y: Vec<f32> = (0..8000)
                .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / sr).sin())
                .collect();
            for window in [Window::Hann, Window::Hamming] {
                let stft = Stft::new(&StftConfig {
                    window,
                    ..cfg(n_fft, 256)
                })
                .unwrap();
                let frames = stft.n_frames(y.len());
                let s = stft.spectrogram(&y).unwrap();
                let t = frames / 2;
                let column: Vec<f32> = (0..stft.n_bins()).map(|k| s[k * frames + t]).collect();
                let peak = (0..column.len())
                    .max_by(|&a, &b| column[a].total_cmp(&column[b]))
                    .unwrap();
                assert_eq!(peak, bin, "{window:?} f={f}");
                // |X| = A N sum(w) / (2 N): for Hann sum(w) = N/2, so |X|^2 = (N/4)^2.
                if window == Window::Hann {
                    let expected = (n_fft as f32 / 4.0).powi(2);
                    assert!(
                        (column[bin] / expected - 1.0).abs() < 1e-3,
                        "{} vs {expected}",
                        column[bin]
                    );
                }
            }
        }
    }

    #[test]
    fn frame_count_follows_librosa() {
        let s = Stft::new(&cfg(1024, 512)).unwrap();
        assert_eq!(s.n_frames(66150), 1 + 66150 / 512); // 3 s at 22.05 kHz: 130
        assert_eq!(s.n_frames(24000), 47); // 3 s at 8 kHz
        for n in [1usize, 511, 512, 513, 1023, 1024, 5000] {
            assert_eq!(s.n_frames(n), 1 + n / 512);
            assert_eq!(s.spectrogram(&vec![0.5; n]).unwrap().len(), 513 * (1 + n / 512));
        }
        let odd = Stft::new(&cfg(255, 100)).unwrap();
        assert_eq!(odd.n_frames(1000), 10); // librosa.stft(n_fft=255, hop_length=100) on 1000 samples
        let uncentred = Stft::new(&StftConfig {
            center: false,
            ..cfg(1024, 512)
        })
        .unwrap();
        assert_eq!(uncentred.n_frames(1024), 1);
        assert_eq!(uncentred.n_frames(2047), 2);
        assert_eq!(uncentred.n_frames(2048), 3);
        assert_eq!(uncentred.n_frames(1023), 0);
        let m = message(uncentred.spectrogram(&[0.0; 1023]));
        assert!(m.contains("n_fft = 1024 is too large"), "{m}");
    }

    #[test]
    fn uncentred_frames_start_at_the_signal() {
        let c = StftConfig {
            center: false,
            ..cfg(16, 4)
        };
        let stft = Stft::new(&c).unwrap();
        let y: Vec<f32> = (0..40).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let s = stft.spectrogram(&y).unwrap();
        let frames = stft.n_frames(y.len());
        // DC bin of frame t = sum of window * y[t*hop..]
        let w = Window::Hann.periodic(16);
        for t in 0..frames {
            let dc = (0..16).map(|i| w[i] * y[t * 4 + i] as f64).sum::<f64>() as f32;
            assert!((s[t] - dc * dc).abs() < 1e-3 * (1.0 + dc * dc), "frame {t}");
        }
    }

    /// Straight from the definition: pad like np.pad, frame, window, O(n^2) DFT in f64.
    fn naive_spectrogram(c: &StftConfig, y: &[f32]) -> Vec<f64> {
        let n_fft = c.n_fft;
        let half = if c.center { n_fft / 2 } else { 0 };
        let padded: Vec<f64> = (0..y.len() + 2 * half)
            .map(|i| {
                let j = i as isize - half as isize;
                match c.pad_mode {
                    _ if (0..y.len() as isize).contains(&j) => y[j as usize] as f64,
                    PadMode::Constant => 0.0,
                    PadMode::Reflect => y[reflect_index(j, y.len())] as f64,
                }
            })
            .collect();
        let lpad = (n_fft - c.win_length) / 2;
        let mut window = vec![0f64; n_fft];
        window[lpad..lpad + c.win_length].copy_from_slice(&c.window.periodic(c.win_length));
        let frames = 1 + (padded.len() - n_fft) / c.hop_length;
        let bins = n_fft / 2 + 1;
        let mut out = vec![0f64; bins * frames];
        for t in 0..frames {
            for k in 0..bins {
                let (mut re, mut im) = (0f64, 0f64);
                for i in 0..n_fft {
                    let v = padded[t * c.hop_length + i] * window[i];
                    let angle = -2.0 * std::f64::consts::PI * ((k * i) % n_fft) as f64 / n_fft as f64;
                    re += v * angle.cos();
                    im += v * angle.sin();
                }
                let p = re * re + im * im;
                out[k * frames + t] = if c.power == 1.0 { p.sqrt() } else { p };
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_for_odd_sizes_and_edges() {
        let y: Vec<f32> = (0..157).map(|i| ((i * 7919) % 61) as f32 / 30.0 - 1.0).collect();
        let cases = [
            StftConfig {
                win_length: 31,
                ..cfg(64, 16)
            },
            StftConfig {
                win_length: 30,
                pad_mode: PadMode::Reflect,
                ..cfg(63, 10)
            },
            StftConfig {
                window: Window::Hamming,
                power: 1.0,
                pad_mode: PadMode::Reflect,
                ..cfg(65, 7)
            },
            StftConfig {
                center: false,
                win_length: 40,
                ..cfg(50, 9)
            },
            StftConfig {
                pad_mode: PadMode::Reflect,
                ..cfg(2, 1)
            },
        ];
        for c in &cases {
            for len in [157usize, 60, 3, 1] {
                let signal = &y[..len];
                let stft = Stft::new(c).unwrap();
                if stft.n_frames(len) == 0 {
                    continue;
                }
                let got = stft.spectrogram(signal).unwrap();
                let want = naive_spectrogram(c, signal);
                assert_eq!(got.len(), want.len(), "{c:?} len {len}");
                let peak = want.iter().fold(0f64, |m, &v| m.max(v));
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= 1e-6 * w + 1e-9 * peak,
                        "{c:?} len {len} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn reflect_index_is_numpy_pad_reflect() {
        // np.pad([0, 1, 2, 3], 7, mode="reflect")
        let padded: Vec<usize> = (-7..11).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(padded, [1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]);
        // np.pad([0, 1], 3, mode="reflect") == [1, 0, 1, 0, 1, 0, 1, 0]
        let two: Vec<usize> = (-3..5).map(|i| reflect_index(i, 2)).collect();
        assert_eq!(two, [1, 0, 1, 0, 1, 0, 1, 0]);
        assert!((-5..6).all(|i| reflect_index(i, 1) == 0));
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = [
            (
                StftConfig {
                    n_fft: 1,
                    win_length: 1,
                    ..cfg(2, 1)
                },
                "n_fft",
            ),
            (
                StftConfig {
                    n_fft: 1 << 21,
                    win_length: 8,
                    ..cfg(2, 1)
                },
                "n_fft",
            ),
            (
                StftConfig {
                    win_length: 0,
                    ..cfg(8, 2)
                },
                "win_length",
            ),
            (
                StftConfig {
                    win_length: 9,
                    ..cfg(8, 2)
                },
                "win_length",
            ),
            (
                StftConfig {
                    hop_length: 0,
                    ..cfg(8, 2)
                },
                "hop_length",
            ),
            (
                StftConfig {
                    power: 1.5,
                    ..cfg(8, 2)
                },
                "power",
            ),
            (
                StftConfig {
                    power: f32::NAN,
                    ..cfg(8, 2)
                },
                "power",
            ),
        ];
        for (c, word) in bad {
            let m = message(c.validate());
            assert!(m.contains(word), "{m}");
            assert!(Stft::new(&c).is_err());
        }
        let stft = Stft::new(&cfg(8, 2)).unwrap();
        assert!(message(stft.spectrogram(&[])).contains("empty"));
        assert!(message(stft.spectrogram(&[0.0, f32::NAN, 1.0])).contains("sample 1"));
        let mut out = vec![0f32; 3];
        assert!(message(stft.spectrogram_into(&[0.0; 4], &mut out, &mut StftScratch::default())).contains("output"));
    }

    #[test]
    fn reused_scratch_gives_identical_results() {
        let y: Vec<f32> = (0..30000)
            .map(|i| ((i as f32 * 0.37).sin() + (i as f32 * 0.011).cos()) * 0.3)
            .collect();
        let short: Vec<f32> = y[..300].to_vec();
        let configs = [
            cfg(1024, 512),
            StftConfig {
                window: Window::Hamming,
                pad_mode: PadMode::Reflect,
                power: 1.0,
                ..cfg(512, 128)
            },
            StftConfig {
                win_length: 800,
                ..cfg(2048, 300)
            },
        ];
        let mut scratch = StftScratch::default();
        for _ in 0..2 {
            for c in &configs {
                let stft = Stft::new(c).unwrap();
                for signal in [&y, &short] {
                    let fresh = stft.spectrogram(signal).unwrap();
                    let mut out = vec![f32::NAN; fresh.len()];
                    stft.spectrogram_into(signal, &mut out, &mut scratch).unwrap();
                    assert_eq!(out, fresh);
                    stft.spectrogram_into(signal, &mut out, &mut scratch).unwrap();
                    assert_eq!(out, fresh);
                }
            }
        }
    }

    #[test]
    fn stft_is_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Stft>();
        assert_send_sync::<StftScratch>();
    }

    #[test]
    fn config_serde_round_trip() {
        let c = StftConfig {
            window: Window::Hamming,
            pad_mode: PadMode::Reflect,
            ..cfg(1024, 512)
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"hamming\"") && json.contains("\"reflect\""), "{json}");
        assert_eq!(serde_json::from_str::<StftConfig>(&json).unwrap(), c);
    }

    /// Timing of the paper preset (3 s clips); run with
    /// `cargo test --release --lib audio::spectrum -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn time_paper_preset() {
        let stft = Stft::new(&StftConfig {
            window: Window::Hamming,
            ..cfg(1024, 512)
        })
        .unwrap();
        for sr in [22050usize, 8000] {
            let y: Vec<f32> = (0..3 * sr).map(|i| (i as f32 * 0.37).sin() * 0.3).collect();
            let mut out = vec![0f32; stft.n_bins() * stft.n_frames(y.len())];
            let mut scratch = StftScratch::default();
            let best = super::fixtures::best_seconds(400, 4, || {
                stft.spectrogram_into(&y, &mut out, &mut scratch).unwrap();
            });
            eprintln!(
                "STFT power, 3 s at {sr} Hz: {:.1} us per clip (best of 400 x 4)",
                best * 1e6
            );
        }
    }
}
