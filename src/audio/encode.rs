//! Writing audio: mono 16-bit PCM WAV, the one format every decoder reads. (No MP3 or Ogg
//! Vorbis encoder exists in pure Rust, and the project takes no system codec libraries; the
//! decoders read those formats, the writer does not need them.)

use crate::error::Result;
use crate::io::write_atomic;
use std::path::Path;

/// A canonical RIFF/WAVE file of mono 16-bit PCM; samples are clipped to [-1, 1].
pub fn wav_pcm16(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &v in samples {
        let q = (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
        out.extend_from_slice(&q.to_le_bytes());
    }
    out
}

/// Write `samples` to `path` as a WAV file, atomically.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let bytes = wav_pcm16(samples, sample_rate);
    write_atomic(path, |w| w.write_all(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_back_to_the_samples() {
        let dir = std::env::temp_dir().join(format!("musrec-encode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.wav");
        let samples: Vec<f32> = (0..800).map(|i| 0.5 * (i as f32 * 0.05).sin()).collect();
        write_wav(&path, &samples, 8000).unwrap();
        let back = crate::audio::decode::load(&path, None, 0.0, None).unwrap();
        assert_eq!(back.sample_rate, 8000);
        assert_eq!(back.samples.len(), samples.len());
        let worst = back
            .samples
            .iter()
            .zip(&samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
