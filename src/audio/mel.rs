//! Mel filterbank: `librosa.filters.mel` (Slaney or HTK Mel scale, Slaney area normalisation
//! or none), computed in f64 the way librosa does and stored sparsely, one contiguous run of
//! non-zero weights per band, so applying it to a spectrogram costs about two multiply-adds
//! per bin and frame instead of `n_mels`.

use super::spectrum::BLOCK;
use crate::ensure;
use crate::error::Result;
use crate::kernels::axpy;
use multiversion::multiversion;
use serde::{Deserialize, Serialize};

/// Largest accepted `n_fft` and `n_mels`: beyond any audio use, small enough to allocate.
const MAX_N_FFT: usize = 1 << 20;
const MAX_N_MELS: usize = 1 << 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelScale {
    /// Auditory Toolbox (Slaney 1998): linear below 1 kHz, logarithmic above; librosa's default.
    Slaney,
    /// `2595 log10(1 + f / 700)`: HTK, and torchaudio's default.
    Htk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelNorm {
    /// Divide each triangle by its width in Hz (times 2), so every band has the same area:
    /// librosa's default.
    Slaney,
    /// Triangles of peak 1 (torchaudio's default).
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub n_mels: usize,
    pub fmin: f32,
    /// Upper edge of the highest band; `None` is the Nyquist frequency `sample_rate / 2`.
    pub fmax: Option<f32>,
    pub scale: MelScale,
    pub norm: MelNorm,
}

impl MelConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.sample_rate > 0, "sample_rate must be positive, got 0");
        ensure!(
            (2..=MAX_N_FFT).contains(&self.n_fft),
            "n_fft must be between 2 and {MAX_N_FFT}, got {}",
            self.n_fft
        );
        ensure!(
            (1..=MAX_N_MELS).contains(&self.n_mels),
            "n_mels must be between 1 and {MAX_N_MELS}, got {}",
            self.n_mels
        );
        ensure!(
            self.fmin.is_finite() && self.fmin >= 0.0,
            "fmin must be a non-negative frequency, got {}",
            self.fmin
        );
        let nyquist = self.sample_rate as f64 / 2.0;
        // librosa accepts fmax above Nyquist and leaves those bands empty; that is always a
        // mistake (often a sample rate mixed up), so it is refused here.
        if let Some(fmax) = self.fmax {
            ensure!(
                fmax.is_finite() && fmax as f64 <= nyquist,
                "fmax must be at most the Nyquist frequency sample_rate / 2 = {nyquist} Hz, got {fmax}"
            );
        }
        let fmax = self.fmax_hz();
        ensure!(
            (self.fmin as f64) < fmax,
            "fmin ({} Hz) must be below fmax ({fmax} Hz)",
            self.fmin
        );
        Ok(())
    }

    fn fmax_hz(&self) -> f64 {
        self.fmax.map_or(self.sample_rate as f64 / 2.0, f64::from)
    }
}

/// One band's non-zero weights: bins `start .. start + len`, weights at `offset` in the pool.
#[derive(Clone, Copy, Debug)]
struct Band {
    start: usize,
    len: usize,
    offset: usize,
}

/// `librosa.filters.mel(...)`, stored sparsely for fast application.
#[derive(Clone, Debug)]
pub struct MelFilterbank {
    n_bins: usize,
    bands: Vec<Band>,
    weights: Vec<f32>,
}

impl MelFilterbank {
    /// Builds the filterbank in f64 exactly as librosa 0.11 does, rounding to f32 where librosa
    /// stores f32 (the triangle, then the normalised triangle), so weights agree to the bit in
    /// practice.
    pub fn new(cfg: &MelConfig) -> Result<Self> {
        cfg.validate()?;
        let htk = cfg.scale == MelScale::Htk;
        let n_bins = cfg.n_fft / 2 + 1;
        // np.fft.rfftfreq(n_fft, d=1/sr): k * (1 / (n_fft * d)).
        let d = 1.0 / cfg.sample_rate as f64;
        let bin_hz = 1.0 / (cfg.n_fft as f64 * d);
        let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * bin_hz).collect();
        let edges = mel_frequencies(cfg.n_mels + 2, cfg.fmin as f64, cfg.fmax_hz(), htk);

        let mut bands = Vec::with_capacity(cfg.n_mels);
        let mut weights = Vec::new();
        let mut row = vec![0f32; n_bins];
        for i in 0..cfg.n_mels {
            let (lo, mid, hi) = (edges[i], edges[i + 1], edges[i + 2]);
            let (rise, fall) = (mid - lo, hi - mid);
            let enorm = 2.0 / (hi - lo);
            for (w, &f) in row.iter_mut().zip(&fft_freqs) {
                let lower = -(lo - f) / rise;
                let upper = (hi - f) / fall;
                let triangle = 0f64.max(lower.min(upper)) as f32;
                *w = match cfg.norm {
                    // librosa: `weights *= enorm` on its f32 array (computed in f64, stored f32).
                    MelNorm::Slaney => (triangle as f64 * enorm) as f32,
                    MelNorm::None => triangle,
                };
            }
            let offset = weights.len();
            match (row.iter().position(|&w| w != 0.0), row.iter().rposition(|&w| w != 0.0)) {
                (Some(first), Some(last)) => {
                    weights.extend_from_slice(&row[first..=last]);
                    bands.push(Band {
                        start: first,
                        len: last + 1 - first,
                        offset,
                    });
                }
                _ => bands.push(Band {
                    start: 0,
                    len: 0,
                    offset,
                }),
            }
        }
        Ok(MelFilterbank { n_bins, bands, weights })
    }

    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }

    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// The filterbank as `n_mels x n_bins`, row-major: `librosa.filters.mel(...)`.
    pub fn dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n_mels() * self.n_bins];
        for (band, row) in self.bands.iter().zip(out.chunks_exact_mut(self.n_bins)) {
            row[band.start..band.start + band.len].copy_from_slice(self.band_weights(band));
        }
        out
    }

    /// Bands whose weights are all zero: narrower than the FFT bin spacing, so they see no bin
    /// and always output 0. librosa warns "Empty filters detected" for these, except for a band
    /// whose lower edge is 0 Hz, which it exempts; this lists every all-zero band.
    pub fn empty_bands(&self) -> Vec<usize> {
        self.bands
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len == 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// `out (n_mels x frames) = filterbank @ spec (n_bins x frames)`, both row-major; `out` is
    /// overwritten.
    pub fn apply_into(&self, spec: &[f32], frames: usize, out: &mut [f32]) -> Result<()> {
        ensure!(
            spec.len() == self.n_bins * frames,
            "spectrogram holds {} values, expected {} bins x {frames} frames = {}",
            spec.len(),
            self.n_bins,
            self.n_bins * frames
        );
        ensure!(
            out.len() == self.n_mels() * frames,
            "output holds {} values, expected {} Mel bands x {frames} frames = {}",
            out.len(),
            self.n_mels(),
            self.n_mels() * frames
        );
        if frames > 0 {
            apply_kernel(&self.bands, &self.weights, spec, frames, out);
        }
        Ok(())
    }

    /// The Mel bands of a few frames straight from the STFT's blocks
    /// ([`Stft::for_each_block`](super::spectrum::Stft::for_each_block)): `block` holds `count`
    /// (at most `BLOCK`) frames of `n_bins` values, frame-major; their bands are written to
    /// columns `t0 .. t0 + count` of `out` (`n_mels x frames`, row-major). The same sums in the
    /// same order as [`apply_into`](Self::apply_into), without the whole spectrogram in memory.
    pub fn apply_frames(
        &self,
        block: &[f32],
        count: usize,
        out: &mut [f32],
        frames: usize,
        t0: usize,
        scratch: &mut Vec<f32>,
    ) {
        assert!(count <= BLOCK && block.len() == count * self.n_bins && t0 + count <= frames);
        assert_eq!(out.len(), self.n_mels() * frames);
        scratch.resize(self.n_bins * BLOCK, 0.0);
        frames_kernel(
            &self.bands,
            &self.weights,
            block,
            count,
            self.n_bins,
            scratch,
            out,
            frames,
            t0,
        );
    }

    fn band_weights(&self, band: &Band) -> &[f32] {
        &self.weights[band.offset..band.offset + band.len]
    }
}

/// Each output row is a short weighted sum of contiguous spectrogram rows (the bins x frames
/// layout makes every term a vectorised axpy over frames). Compiled per SIMD level, chosen at
/// run time.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn apply_kernel(bands: &[Band], weights: &[f32], spec: &[f32], frames: usize, out: &mut [f32]) {
    for (band, row) in bands.iter().zip(out.chunks_exact_mut(frames)) {
        row.fill(0.0);
        let w = &weights[band.offset..band.offset + band.len];
        let rows = &spec[band.start * frames..(band.start + band.len) * frames];
        for (&w, src) in w.iter().zip(rows.chunks_exact(frames)) {
            axpy(w, src, row);
        }
    }
}

/// Transposes the block into `lanes` (bin-major, `BLOCK` frames per bin) so that each weight
/// is one vectorised multiply-add over the frames, then writes each band's run of frames.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments)]
fn frames_kernel(
    bands: &[Band],
    weights: &[f32],
    block: &[f32],
    count: usize,
    n_bins: usize,
    lanes: &mut [f32],
    out: &mut [f32],
    frames: usize,
    t0: usize,
) {
    for (j, spectrum) in block.chunks_exact(n_bins).enumerate() {
        for (k, &p) in spectrum.iter().enumerate() {
            lanes[k * BLOCK + j] = p;
        }
    }
    for (band, row) in bands.iter().zip(out.chunks_exact_mut(frames)) {
        let mut acc = [0f32; BLOCK];
        let w = &weights[band.offset..band.offset + band.len];
        let bins = &lanes[band.start * BLOCK..(band.start + band.len) * BLOCK];
        for (&w, src) in w.iter().zip(bins.chunks_exact(BLOCK)) {
            for (a, &s) in acc.iter_mut().zip(src) {
                *a += w * s;
            }
        }
        row[t0..t0 + count].copy_from_slice(&acc[..count]);
    }
}

/// `librosa.mel_frequencies(n, fmin, fmax, htk)`: `n` frequencies evenly spaced in Mel,
/// through `np.linspace` (start + i * step, the last one exactly `fmax`'s Mel value).
fn mel_frequencies(n: usize, fmin: f64, fmax: f64, htk: bool) -> Vec<f64> {
    let (lo, hi) = (hz_to_mel(fmin, htk), hz_to_mel(fmax, htk));
    let step = (hi - lo) / (n - 1) as f64;
    (0..n)
        .map(|i| mel_to_hz(if i + 1 == n { hi } else { i as f64 * step + lo }, htk))
        .collect()
}

/// Slaney's scale: linear below 1 kHz (200/3 Hz per Mel), logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(f: f64, htk: bool) -> f64 {
    if htk {
        2595.0 * (1.0 + f / 700.0).log10()
    } else if f >= MIN_LOG_HZ {
        MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / log_step()
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64, htk: bool) -> f64 {
    if htk {
        700.0 * (10f64.powf(m / 2595.0) - 1.0)
    } else if m >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (m - MIN_LOG_MEL)).exp()
    } else {
        F_SP * m
    }
}

#[cfg(test)]
mod tests {
    use super::super::db::{DbRef, power_to_db};
    use super::super::spectrum::fixtures::{Case, max_abs_diff, worst};
    use super::super::spectrum::{Stft, StftScratch};
    use super::*;

    fn mel_config(case: &Case) -> MelConfig {
        MelConfig {
            sample_rate: case.usize("sample_rate") as u32,
            n_fft: case.usize("n_fft"),
            n_mels: case.usize("n_mels"),
            fmin: case.f32("fmin"),
            fmax: case.param("fmax").as_f64().map(|f| f as f32),
            scale: if case.param("htk").as_bool() == Some(true) {
                MelScale::Htk
            } else {
                MelScale::Slaney
            },
            norm: if case.param("norm").is_null() {
                MelNorm::None
            } else {
                MelNorm::Slaney
            },
        }
    }

    fn base() -> MelConfig {
        MelConfig {
            sample_rate: 22050,
            n_fft: 1024,
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
        }
    }

    use crate::error::invalid_message as message;

    #[test]
    fn filterbank_matches_librosa() {
        for case in Case::all() {
            let bank = MelFilterbank::new(&mel_config(&case)).unwrap();
            let (expected, shape) = case.array("filterbank");
            assert_eq!(shape, vec![bank.n_mels(), bank.n_bins()], "{}", case.name);
            let got = bank.dense();
            let d = max_abs_diff(&got, &expected);
            let exact = got.iter().zip(&expected).filter(|(a, b)| a == b).count();
            eprintln!(
                "filterbank {}: max |diff| {d:.2e}, {exact}/{} weights bit-identical",
                case.name,
                got.len()
            );
            assert!(d <= 1e-6, "{}: filterbank off by {d}", case.name);
            let empty: Vec<usize> = case.meta["empty_bands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(bank.empty_bands(), empty, "{}", case.name);
        }
        assert!(
            !MelFilterbank::new(&mel_config(&Case::load("empty_bands_sr22050")))
                .unwrap()
                .empty_bands()
                .is_empty()
        );
    }

    #[test]
    fn mel_power_and_db_match_librosa() {
        let mut scratch = StftScratch::default();
        let mut checked = 0;
        for case in Case::all() {
            let signals = case.signals();
            if signals.is_empty() {
                continue;
            }
            let stft = Stft::new(&case.stft_config()).unwrap();
            let bank = MelFilterbank::new(&mel_config(&case)).unwrap();
            let (mut worst_mel, mut worst_db) = (0f64, 0f64);
            for (name, y) in signals {
                let frames = stft.n_frames(y.len());
                let mut spec = vec![0f32; stft.n_bins() * frames];
                stft.spectrogram_into(&y, &mut spec, &mut scratch).unwrap();
                let mut mel = vec![0f32; bank.n_mels() * frames];
                bank.apply_into(&spec, frames, &mut mel).unwrap();
                let (expected, shape) = case.array(&format!("{name}.mel"));
                assert_eq!(shape, vec![bank.n_mels(), frames]);
                let (ratio, _) = worst(&mel, &expected, 1e-5, 1e-4);
                assert!(
                    ratio <= 1.0,
                    "{} {name}: Mel power off by {ratio} x tolerance",
                    case.name
                );
                worst_mel = worst_mel.max(ratio);
                let d = case.worst_db_diff(&name, &mel);
                assert!(d <= 1e-3, "{} {name}: {d} dB", case.name);
                worst_db = worst_db.max(d);
                checked += 1;
            }
            eprintln!(
                "mel {}: worst {worst_mel:.3} x tolerance; dB max |diff| {worst_db:.2e}",
                case.name
            );
        }
        assert!(checked >= 20, "only {checked} signals checked");
    }

    #[test]
    fn apply_matches_dense_product() {
        let bank = MelFilterbank::new(&MelConfig {
            n_fft: 64,
            n_mels: 10,
            ..base()
        })
        .unwrap();
        let frames = 7;
        let spec: Vec<f32> = (0..bank.n_bins() * frames)
            .map(|i| ((i * 37) % 11) as f32 * 0.25)
            .collect();
        let dense = bank.dense();
        let mut out = vec![f32::NAN; bank.n_mels() * frames];
        bank.apply_into(&spec, frames, &mut out).unwrap();
        for m in 0..bank.n_mels() {
            for t in 0..frames {
                let e: f32 = (0..bank.n_bins())
                    .map(|k| dense[m * bank.n_bins() + k] * spec[k * frames + t])
                    .sum();
                assert!((out[m * frames + t] - e).abs() <= 1e-5 * (1.0 + e.abs()));
            }
        }
        bank.apply_into(&[], 0, &mut []).unwrap();
    }

    #[test]
    fn mel_scales_round_trip_and_meet_at_1khz() {
        for htk in [false, true] {
            for f in [0.0, 30.0, 440.0, 999.0, 1000.0, 4000.0, 11025.0] {
                let back = mel_to_hz(hz_to_mel(f, htk), htk);
                assert!((back - f).abs() < 1e-9 * (1.0 + f), "{htk} {f} {back}");
            }
        }
        assert!((hz_to_mel(1000.0, false) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0, true) - 1000.0).abs() < 0.1);
        let edges = mel_frequencies(5, 30.0, 4000.0, true);
        assert!((edges[0] - 30.0).abs() < 1e-9 && (edges[4] - 4000.0).abs() < 1e-9);
    }

    #[test]
    fn slaney_bands_have_equal_area() {
        // With Slaney norm each triangle integrates to ~1 over Hz (weight x bin width).
        let cfg = MelConfig {
            n_fft: 8192,
            n_mels: 40,
            ..base()
        };
        let bank = MelFilterbank::new(&cfg).unwrap();
        let bin_hz = 22050.0 / 8192.0;
        let dense = bank.dense();
        for row in dense.chunks(bank.n_bins()) {
            let area: f32 = row.iter().sum::<f32>() * bin_hz;
            assert!((area - 1.0).abs() < 0.02, "{area}");
        }
        let peak = MelFilterbank::new(&MelConfig {
            norm: MelNorm::None,
            ..cfg
        })
        .unwrap()
        .dense();
        assert!(peak.iter().all(|&w| (0.0..=1.0).contains(&w)));
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = [
            (
                MelConfig {
                    sample_rate: 0,
                    ..base()
                },
                "sample_rate",
            ),
            (MelConfig { n_fft: 1, ..base() }, "n_fft"),
            (MelConfig { n_mels: 0, ..base() }, "n_mels"),
            (MelConfig { fmin: -1.0, ..base() }, "fmin"),
            (
                MelConfig {
                    fmin: f32::NAN,
                    ..base()
                },
                "fmin",
            ),
            (
                MelConfig {
                    fmax: Some(12000.0),
                    ..base()
                },
                "fmax",
            ),
            (
                MelConfig {
                    fmax: Some(f32::INFINITY),
                    ..base()
                },
                "fmax",
            ),
            (
                MelConfig {
                    fmin: 500.0,
                    fmax: Some(500.0),
                    ..base()
                },
                "fmin",
            ),
            (
                MelConfig {
                    fmin: 20000.0,
                    ..base()
                },
                "fmin",
            ),
        ];
        for (c, word) in bad {
            let m = message(c.validate());
            assert!(m.contains(word), "{word}: {m}");
            assert!(MelFilterbank::new(&c).is_err());
        }
        let bank = MelFilterbank::new(&base()).unwrap();
        assert!(message(bank.apply_into(&[0.0; 10], 2, &mut [0.0; 256])).contains("spectrogram"));
        assert!(message(bank.apply_into(&vec![0.0; 513 * 2], 2, &mut [0.0; 255])).contains("output"));
    }

    #[test]
    fn config_serde_names() {
        let json = serde_json::to_string(&MelConfig {
            scale: MelScale::Htk,
            norm: MelNorm::None,
            ..base()
        })
        .unwrap();
        assert!(json.contains("\"htk\"") && json.contains("\"none\""), "{json}");
    }

    /// Timing of the paper preset (3 s clips) end to end; run with
    /// `cargo test --release --lib audio::mel -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn time_paper_preset() {
        use super::super::spectrum::{PadMode, StftConfig, Window};
        let stft = Stft::new(&StftConfig {
            n_fft: 1024,
            hop_length: 512,
            win_length: 1024,
            window: Window::Hamming,
            center: true,
            pad_mode: PadMode::Constant,
            power: 2.0,
        })
        .unwrap();
        for sr in [22050u32, 8000] {
            let bank = MelFilterbank::new(&MelConfig {
                sample_rate: sr,
                ..base()
            })
            .unwrap();
            let n = 3 * sr as usize;
            let y: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37).sin() + ((i * 7919) % 101) as f32 * 0.002)
                .collect();
            let frames = stft.n_frames(n);
            let mut spec = vec![0f32; stft.n_bins() * frames];
            let mut mel = vec![0f32; bank.n_mels() * frames];
            let mut scratch = StftScratch::default();
            // Best of many short batches per stage: robust to other work on the machine.
            let reps = 400;
            let (mut t_stft, mut t_mel, mut t_db) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
            let mut db = mel.clone();
            for _ in 0..reps {
                let t = std::time::Instant::now();
                stft.spectrogram_into(&y, &mut spec, &mut scratch).unwrap();
                t_stft = t_stft.min(t.elapsed().as_secs_f64());
                let t = std::time::Instant::now();
                bank.apply_into(&spec, frames, &mut mel).unwrap();
                t_mel = t_mel.min(t.elapsed().as_secs_f64());
                db.copy_from_slice(&mel);
                let t = std::time::Instant::now();
                power_to_db(&mut db, DbRef::Value { value: 1.0 }, 1e-10, Some(80.0)).unwrap();
                t_db = t_db.min(t.elapsed().as_secs_f64());
            }
            let us = |s: f64| s * 1e6;
            let total = us(t_stft + t_mel + t_db);
            eprintln!(
                "{sr} Hz, 3 s: STFT {:.1} us + Mel {:.1} us + dB {:.1} us = {total:.1} us per clip ({:.0} clips/s, 1 thread)",
                us(t_stft),
                us(t_mel),
                us(t_db),
                1e6 / total
            );
        }
    }
}
