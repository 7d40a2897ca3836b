//! The log-Mel feature of a clip: one named configuration (sample rate, clip, STFT, Mel
//! bands, log compression) and the planned transform that computes it, reused across
//! clips and threads.

use super::clip::ClipPosition;
use super::db::{DbRef, log1p_compress, power_to_db};
use super::mel::{MelConfig, MelFilterbank, MelNorm, MelScale};
use super::spectrum::{PadMode, Stft, StftConfig, StftScratch, Window};
use crate::ensure;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Revision of the feature extractor's code (decode, resample, clip, log-Mel). Part of
/// [`FeatureConfig::fingerprint`], so feature caches of code that computed other values are
/// not read back: bump it with any change that alters the features of a file.
pub const FEATURES_REVISION: u32 = 1;

/// How Mel power is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogScale {
    /// Mel power as is.
    None,
    /// librosa.power_to_db: 10 log10(max(amin, S) / ref), floored at max - top_db per clip.
    Db {
        reference: DbRef,
        amin: f32,
        top_db: Option<f32>,
    },
    /// log(1 + c S).
    Log1p { c: f32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Audio is resampled to this rate before the STFT.
    pub sample_rate: u32,
    pub clip_seconds: f64,
    pub position: ClipPosition,
    /// Files shorter than this fail as too short; between this and `clip_seconds` they are
    /// zero-padded and flagged.
    pub min_seconds: f64,
    pub stft: StftConfig,
    pub n_mels: usize,
    pub fmin: f32,
    pub fmax: Option<f32>,
    pub mel_scale: MelScale,
    pub mel_norm: MelNorm,
    pub log: LogScale,
}

impl FeatureConfig {
    /// The paper's front end: 8 kHz, random 3 s excerpt, 1024-sample Hamming window, hop 512,
    /// 128 Mel bands (Slaney), log energy (dB re 1, amin 1e-10, top_db 80).
    pub fn paper() -> Self {
        FeatureConfig {
            sample_rate: 8000,
            clip_seconds: 3.0,
            position: ClipPosition::Random { seed: 0 },
            min_seconds: 0.5,
            stft: StftConfig {
                n_fft: 1024,
                hop_length: 512,
                win_length: 1024,
                window: Window::Hamming,
                center: true,
                pad_mode: PadMode::Constant,
                power: 2.0,
            },
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::Slaney,
            log: LogScale::Db {
                reference: DbRef::Value { value: 1.0 },
                amin: 1e-10,
                top_db: Some(80.0),
            },
        }
    }

    /// The paper's preset at the common 22,050 Hz sample rate.
    pub fn common() -> Self {
        FeatureConfig {
            sample_rate: 22050,
            ..FeatureConfig::paper()
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.sample_rate > 0, "sample_rate must be positive");
        ensure!(
            self.clip_seconds.is_finite() && self.clip_seconds > 0.0,
            "clip_seconds must be a positive number, got {}",
            self.clip_seconds
        );
        ensure!(
            self.min_seconds.is_finite() && self.min_seconds >= 0.0 && self.min_seconds <= self.clip_seconds,
            "min_seconds must be between 0 and clip_seconds, got {}",
            self.min_seconds
        );
        if let ClipPosition::Spread { index, count } = self.position {
            ensure!(
                index < count,
                "position: excerpt {index} of {count} does not exist (index must be below count)"
            );
        }
        self.stft.validate()?;
        self.mel_config().validate()?;
        if let LogScale::Log1p { c } = self.log {
            ensure!(c.is_finite() && c > 0.0, "log1p constant must be positive, got {c}");
        }
        Ok(())
    }

    pub fn mel_config(&self) -> MelConfig {
        MelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.stft.n_fft,
            n_mels: self.n_mels,
            fmin: self.fmin,
            fmax: self.fmax,
            scale: self.mel_scale,
            norm: self.mel_norm,
        }
    }

    /// Samples in one clip at `sample_rate`.
    pub fn clip_samples(&self) -> usize {
        (self.clip_seconds * self.sample_rate as f64).round() as usize
    }

    /// A stable fingerprint of everything that changes the features (for cache keys): the
    /// configuration and the extractor's code revision ([`FEATURES_REVISION`]).
    pub fn fingerprint(&self) -> Result<u64> {
        let json = serde_json::to_string(self).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(fnv1a(format!("{json}|revision {FEATURES_REVISION}").as_bytes()))
    }
}

/// FNV-1a, 64-bit: tiny, stable across platforms and releases (unlike std's hasher).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// STFT plan + Mel filterbank + log compression, planned once.
pub struct LogMel {
    stft: Stft,
    bank: MelFilterbank,
    log: LogScale,
}

/// Per-thread buffers for [`LogMel::compute_into`].
#[derive(Default)]
pub struct LogMelScratch {
    stft: StftScratch,
    lanes: Vec<f32>,
}

impl LogMel {
    pub fn new(stft: &StftConfig, mel: &MelConfig, log: LogScale) -> Result<Self> {
        ensure!(
            stft.n_fft == mel.n_fft,
            "the STFT has n_fft {} but the Mel filterbank {}",
            stft.n_fft,
            mel.n_fft
        );
        Ok(LogMel {
            stft: Stft::new(stft)?,
            bank: MelFilterbank::new(mel)?,
            log,
        })
    }

    pub fn from_config(cfg: &FeatureConfig) -> Result<Self> {
        cfg.validate()?;
        LogMel::new(&cfg.stft, &cfg.mel_config(), cfg.log)
    }

    pub fn n_mels(&self) -> usize {
        self.bank.n_mels()
    }

    pub fn n_frames(&self, n_samples: usize) -> usize {
        self.stft.n_frames(n_samples)
    }

    /// Features of `y` into `out` (n_mels x frames, row-major).
    pub fn compute_into(&self, y: &[f32], out: &mut [f32], scratch: &mut LogMelScratch) -> Result<()> {
        let frames = self.n_frames(y.len());
        ensure!(
            out.len() == self.n_mels() * frames,
            "output holds {} values, expected {} Mel bands x {frames} frames",
            out.len(),
            self.n_mels()
        );
        // Block by block: the power spectrogram is never held whole.
        let LogMelScratch { stft, lanes } = scratch;
        self.stft.for_each_block(y, stft, |t0, count, block| {
            self.bank.apply_frames(block, count, out, frames, t0, lanes)
        })?;
        match self.log {
            LogScale::None => Ok(()),
            LogScale::Db {
                reference,
                amin,
                top_db,
            } => power_to_db(out, reference, amin, top_db),
            LogScale::Log1p { c } => log1p_compress(out, c),
        }
    }

    pub fn compute(&self, y: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.n_mels() * self.n_frames(y.len())];
        self.compute_into(y, &mut out, &mut LogMelScratch::default())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37).sin() * 0.3 + ((i * 7919) % 101) as f32 * 0.002 - 0.1)
            .collect()
    }

    /// The fused, block-by-block Mel product gives the same bits as the whole power
    /// spectrogram followed by the filterbank, for clips that are not a whole number of blocks.
    #[test]
    fn blocked_mel_equals_spectrogram_then_filterbank() {
        for (sr, seconds, n_fft) in [(22050u32, 3.0, 1024usize), (8000, 1.0, 512), (8000, 0.05, 256)] {
            let cfg = FeatureConfig {
                sample_rate: sr,
                clip_seconds: seconds,
                min_seconds: 0.0,
                log: LogScale::None,
                stft: StftConfig {
                    n_fft,
                    win_length: n_fft,
                    ..FeatureConfig::paper().stft
                },
                ..FeatureConfig::paper()
            };
            let transform = LogMel::from_config(&cfg).unwrap();
            let y = signal(cfg.clip_samples());
            let stft = Stft::new(&cfg.stft).unwrap();
            let bank = MelFilterbank::new(&cfg.mel_config()).unwrap();
            let frames = stft.n_frames(y.len());
            let spec = stft.spectrogram(&y).unwrap();
            let mut want = vec![0f32; bank.n_mels() * frames];
            bank.apply_into(&spec, frames, &mut want).unwrap();
            let mut scratch = LogMelScratch::default();
            let mut got = vec![f32::NAN; want.len()];
            for _ in 0..2 {
                transform.compute_into(&y, &mut got, &mut scratch).unwrap();
                assert_eq!(got, want, "{sr} Hz, {seconds} s, n_fft {n_fft}");
            }
        }
    }

    /// Timing of the paper preset end to end (3 s clips, one thread); run with
    /// `cargo test --release --lib audio::features -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn time_paper_preset() {
        for sr in [22050u32, 8000] {
            let cfg = FeatureConfig {
                sample_rate: sr,
                ..FeatureConfig::paper()
            };
            let transform = LogMel::from_config(&cfg).unwrap();
            let y = signal(cfg.clip_samples());
            let mut out = vec![0f32; transform.n_mels() * transform.n_frames(y.len())];
            let mut scratch = LogMelScratch::default();
            let best = super::super::spectrum::fixtures::best_seconds(300, 4, || {
                transform.compute_into(&y, &mut out, &mut scratch).unwrap();
            });
            eprintln!(
                "log-Mel (dB), 3 s at {sr} Hz: {:.1} us per clip ({:.0} clips/s, 1 thread; best of 300 x 4)",
                best * 1e6,
                1.0 / best
            );
        }
    }
}
