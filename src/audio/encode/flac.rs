//! FLAC: lossless 16-bit mono through `flacenc` (pure Rust, single-threaded here because the
//! world already encodes one file per thread).

use crate::error::{Error, Result};
use flacenc::component::BitRepr;
use flacenc::error::Verify;

/// The bytes of a mono 16-bit FLAC file; samples are clipped to [-1, 1] and quantised as
/// for WAV, so both decode to the same values.
pub fn flac_pcm16(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    let fail = |what: String| Error::invalid(format!("cannot encode FLAC at {sample_rate} Hz: {what}"));
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| fail(e.to_string()))?;
    let pcm: Vec<i32> = super::pcm16(samples).map(i32::from).collect();
    let source = flacenc::source::MemSource::from_samples(&pcm, 1, 16, sample_rate as usize);
    let mut stream =
        flacenc::encode_with_fixed_block_size(&config, source, config.block_size).map_err(|e| fail(e.to_string()))?;
    // flacenc counts the short last block in STREAMINFO's minimum block size, which the spec
    // excludes (flacenc-rs issue #242); decoders then take the stream for variable-blocksize
    // and symphonia finds no frame. A fixed-blocksize stream states its one block size twice.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)
        .map_err(|e| fail(e.to_string()))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| fail(e.to_string()))?;
    Ok(sink.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::AudioFormat;
    use super::super::tests::{chord, round_trip};

    #[test]
    fn decodes_to_exactly_the_wav_samples() {
        // Rates, and lengths shorter than one block, a whole number of blocks, a short last block.
        for (rate, len) in [
            (8000, 100),
            (8000, 8192),
            (8000, 8000),
            (22_050, 22_050),
            (44_100, 44_100),
        ] {
            let samples = &chord(rate, len);
            let flac = round_trip(AudioFormat::Flac, samples, rate);
            let wav = round_trip(AudioFormat::Wav, samples, rate);
            assert_eq!(flac.sample_rate, rate);
            assert_eq!(flac.samples, wav.samples, "{rate} Hz, {len} samples");
        }
    }
}
