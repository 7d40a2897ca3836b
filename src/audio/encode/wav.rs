//! WAV: a canonical RIFF/WAVE file of mono 16-bit PCM, the one format every decoder reads.

/// The bytes of a mono 16-bit PCM WAV file; samples are clipped to [-1, 1].
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
    for q in super::pcm16(samples) {
        out.extend_from_slice(&q.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::AudioFormat;
    use super::super::tests::{chord, round_trip};

    #[test]
    fn decodes_back_to_the_samples() {
        let samples = chord(8000, 8000);
        let back = round_trip(AudioFormat::Wav, &samples, 8000);
        assert_eq!((back.sample_rate, back.samples.len()), (8000, samples.len()));
        let worst = back
            .samples
            .iter()
            .zip(&samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }
}
