//! Writing audio: mono f32 samples to the bytes of a WAV, FLAC, Ogg Vorbis or MP3 file (one
//! module per format), and [`write`] to put them on disk atomically. The codecs come from
//! maintained crates (see Cargo.toml), not hand-written ones. Every encoder is deterministic:
//! the same samples (and Ogg serial) give the same bytes, so a synthetic world is reproducible.

mod flac;
#[cfg(feature = "lame")]
mod mp3;
mod vorbis;
mod wav;

pub use flac::flac_pcm16;
#[cfg(feature = "lame")]
pub use mp3::mp3;
pub use vorbis::ogg_vorbis;
pub use wav::wav_pcm16;

#[cfg(not(feature = "lame"))]
use crate::error::Error;
use crate::error::Result;
use crate::io::write_atomic;
use std::path::Path;

/// An audio file format the writers produce (and the decoders read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// Mono 16-bit PCM.
    Wav,
    /// Lossless, 16-bit: decodes to exactly the samples the WAV would hold.
    Flac,
    /// Ogg Vorbis, variable bitrate.
    Ogg,
    /// MPEG-1/2 Layer III, variable bitrate, with a LAME header so decoders trim the padding.
    Mp3,
}

impl AudioFormat {
    /// The formats this build can write: all four with the `lame` feature, else all but MP3.
    pub fn writable() -> Vec<AudioFormat> {
        let all = [AudioFormat::Wav, AudioFormat::Flac, AudioFormat::Ogg, AudioFormat::Mp3];
        all.into_iter()
            .filter(|&f| cfg!(feature = "lame") || f != AudioFormat::Mp3)
            .collect()
    }

    /// The file extension the loaders look for (`data::audio_index::AUDIO_EXTENSIONS`).
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Ogg => "ogg",
            AudioFormat::Mp3 => "mp3",
        }
    }

    /// Whether files at `sample_rate` can be written (MP3 has nine rates, flacenc stops at
    /// 96 kHz), asked of the encoder itself with a moment of silence, so that a bad setting
    /// fails before any work.
    pub fn check_sample_rate(self, sample_rate: u32) -> Result<()> {
        self.encode(&[0.0; 64], sample_rate, 0).map(drop)
    }

    /// The file's bytes. `ogg_serial` names the Ogg stream (the other formats have no serial).
    pub fn encode(self, samples: &[f32], sample_rate: u32, ogg_serial: u32) -> Result<Vec<u8>> {
        match self {
            AudioFormat::Wav => Ok(wav_pcm16(samples, sample_rate)),
            AudioFormat::Flac => flac_pcm16(samples, sample_rate),
            AudioFormat::Ogg => ogg_vorbis(samples, sample_rate, ogg_serial),
            #[cfg(feature = "lame")]
            AudioFormat::Mp3 => mp3(samples, sample_rate),
            #[cfg(not(feature = "lame"))]
            AudioFormat::Mp3 => Err(Error::invalid(
                "this musrec was built without MP3 writing: LAME is LGPL-3.0, so it comes only with the \
                 `lame` cargo feature (reading MP3 always works); write wav, flac or ogg instead",
            )),
        }
    }
}

/// Write `samples` to `path` in `format`, atomically.
pub fn write(path: &Path, format: AudioFormat, samples: &[f32], sample_rate: u32, ogg_serial: u32) -> Result<()> {
    let bytes = format.encode(samples, sample_rate, ogg_serial)?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// Samples clipped to [-1, 1] and rounded to 16-bit integers, as WAV, FLAC and MP3 store them.
fn pcm16(samples: &[f32]) -> impl Iterator<Item = i16> + '_ {
    samples
        .iter()
        .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audio::decode::{Loaded, load};
    use crate::audio::test_files::Scratch;

    /// A decaying two-note chord with harmonics (music-like, not a pure tone), `len` samples.
    pub fn chord(sample_rate: u32, len: usize) -> Vec<f32> {
        let rate = f64::from(sample_rate);
        (0..len)
            .map(|i| {
                let t = i as f64 / rate;
                let note = |f: f64| {
                    (1..=4)
                        .map(|h| (std::f64::consts::TAU * f * h as f64 * t).sin() / h as f64)
                        .sum::<f64>()
                };
                (0.2 * (-1.5 * t).exp() * (note(220.0) + note(277.2))) as f32
            })
            .collect()
    }

    /// Write `samples` in `format` and decode the file back at its own rate.
    pub fn round_trip(format: AudioFormat, samples: &[f32], sample_rate: u32) -> Loaded {
        let scratch = Scratch::new(&format!("encode-{}-{sample_rate}", format.extension()));
        let path = scratch.path(&format!("clip.{}", format.extension()));
        write(&path, format, samples, sample_rate, 7).unwrap();
        load(&path, None, 0.0, None).unwrap()
    }

    /// Signal-to-noise ratio of `decoded` against `reference` in dB, over their common length.
    pub fn snr_db(reference: &[f32], decoded: &[f32]) -> f64 {
        let n = reference.len().min(decoded.len());
        let signal: f64 = reference[..n].iter().map(|&v| f64::from(v).powi(2)).sum();
        let noise: f64 = (0..n).map(|i| f64::from(reference[i] - decoded[i]).powi(2)).sum();
        10.0 * (signal / noise).log10()
    }

    /// A lossy `format` decodes the chord at three rates to its exact length (the codec's
    /// delay and padding are trimmed: gapless) and within `min_snr_db` of it, which also
    /// catches misalignment: one sample of shift alone gives 10 dB at 8 kHz, 24 dB at 44.1 kHz.
    pub fn decodes_close_to_the_chord(format: AudioFormat, min_snr_db: f64) {
        for rate in [8000, 22_050, 44_100] {
            let samples = chord(rate, rate as usize);
            let back = round_trip(format, &samples, rate);
            assert_eq!(
                (back.sample_rate, back.samples.len()),
                (rate, samples.len()),
                "{format:?}"
            );
            let snr = snr_db(&samples, &back.samples);
            assert!(snr > min_snr_db, "{format:?} at {rate} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn every_format_is_deterministic() {
        let x = chord(22_050, 22_050);
        for format in AudioFormat::writable() {
            let a = format.encode(&x, 22_050, 3).unwrap();
            assert_eq!(a, format.encode(&x, 22_050, 3).unwrap(), "{format:?}");
        }
    }

    #[test]
    fn serde_names_are_the_extensions() {
        for format in [AudioFormat::Wav, AudioFormat::Flac, AudioFormat::Ogg, AudioFormat::Mp3] {
            let name = serde_json::to_string(&format).unwrap();
            assert_eq!(name, format!("\"{}\"", format.extension()));
            assert!(crate::data::audio_index::AUDIO_EXTENSIONS.contains(&format.extension()));
        }
        let err = serde_json::from_str::<AudioFormat>("\"aiff\"").unwrap_err().to_string();
        assert!(err.contains("wav") && err.contains("mp3"), "{err}");
    }
}
