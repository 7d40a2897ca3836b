//! MP3 through `mp3lame-encoder` (LAME 3.100, compiled from its vendored source).

use crate::ensure;
use crate::error::{Error, Result};
use mp3lame_encoder::{Builder, FlushGap, Mode, MonoPcm, Quality, VbrMode};
use std::num::NonZeroU32;

/// The rates MPEG-1, 2 and 2.5 Layer III define; LAME would resample anything else, and the
/// file would then not decode at the rate asked for.
pub const MP3_SAMPLE_RATES: [u32; 9] = [8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// The bytes of a mono MP3 file: VBR at LAME's `-V 2` (its standard near-transparent preset,
/// which adapts to the sample rate where a fixed bitrate would not fit every rate), with a
/// LAME header that tells decoders the encoder delay and padding to trim.
pub fn mp3(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    check_sample_rate(sample_rate)?;
    let fail = |what: String| Error::invalid(format!("cannot encode MP3 at {sample_rate} Hz: {what}"));
    let mut builder = Builder::new().ok_or_else(|| fail("LAME could not allocate its state".into()))?;
    let built = (|| {
        builder.set_num_channels(1)?;
        builder.set_sample_rate(sample_rate)?;
        builder.set_output_sample_rate(NonZeroU32::new(sample_rate))?;
        builder.set_mode(Mode::Mono)?;
        builder.set_vbr_mode(VbrMode::Mtrh)?;
        builder.set_vbr_quality(Quality::NearBest)?;
        builder.set_to_write_vbr_tag(true)
    })();
    built.map_err(|e| fail(e.to_string()))?;
    let mut encoder = builder.build().map_err(|e| fail(e.to_string()))?;

    let pcm: Vec<i16> = super::pcm16(samples).collect();
    let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(pcm.len()));
    encoder
        .encode_to_vec(MonoPcm(&pcm), &mut out)
        .map_err(|e| fail(e.to_string()))?;
    // The last frames, which LAME needs up to 7,200 bytes for.
    out.reserve(7200);
    encoder
        .flush_to_vec::<FlushGap>(&mut out)
        .map_err(|e| fail(e.to_string()))?;
    // LAME opens the stream with a blank frame for its header; fill it in now that the frame
    // count, delay and padding are known.
    let mut header = Vec::with_capacity(encoder.lame_tag_size());
    encoder.lame_tag_encode_to_vec(&mut header);
    ensure!(
        !header.is_empty() && header.len() <= out.len(),
        "cannot encode MP3 at {sample_rate} Hz: LAME wrote no header frame"
    );
    out[..header.len()].copy_from_slice(&header);
    Ok(out)
}

fn check_sample_rate(sample_rate: u32) -> Result<()> {
    ensure!(
        MP3_SAMPLE_RATES.contains(&sample_rate),
        "MP3 cannot store {sample_rate} Hz audio; sample_rate must be one of {MP3_SAMPLE_RATES:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::AudioFormat;
    use super::super::tests::decodes_close_to_the_chord;

    #[test]
    fn decodes_back_close_to_the_samples() {
        // Measured 40 to 50 dB at 8, 22.05 and 44.1 kHz.
        decodes_close_to_the_chord(AudioFormat::Mp3, 30.0);
    }
}
