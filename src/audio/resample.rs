//! Sample-rate conversion of a mono signal: band-limited (windowed sinc, rubato), whole signal
//! at once, with the resampler's delay removed so that output sample `i` is the input at time
//! `i / to_hz`.
//!
//! Fixed rate pairs with a small common block (44.1 kHz -> 22.05 kHz, 44.1 kHz -> 8 kHz,
//! 22.05 kHz -> 8 kHz, 48 kHz -> 44.1 kHz, ...) use rubato's FFT resampler, an exact linear
//! convolution with a long windowed-sinc filter. Pairs whose smallest exact block is huge
//! (coprime rates such as 44100 -> 22051) use rubato's sinc interpolator instead.

use crate::ensure;
use crate::error::{Error, Result};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction, calculate_cutoff,
};
use std::cell::RefCell;

/// Filter length, in samples at the lower of the two rates. Puts the anti-aliasing cutoff at
/// about 0.987 of the lower Nyquist frequency (BlackmanHarris2 window), so the passband is flat
/// to well above 0.9 Nyquist and the stopband begins at Nyquist, like soxr's "HQ".
const FILTER_LEN_LOW_RATE: usize = 1024;
/// Largest FFT block (input frames) worth using; beyond it the sinc interpolator is cheaper.
const MAX_FFT_BLOCK: usize = 1 << 16;
/// Longest sinc (input samples) for the interpolating fallback; bounds its cost per sample.
const MAX_SINC_LEN: usize = 4096;
/// Resamplers kept per thread: planning FFTs and filters costs more than resampling a clip.
const CACHE_SIZE: usize = 4;

/// A resampler for one rate pair, with what is needed to undo its delay exactly.
enum Engine {
    /// Whole exact blocks: its delay is a whole number of output frames, which `process_all` trims.
    Fft(Fft<f32>),
    /// Interpolating sinc: `process_all` trims `floor(len * ratio / 2)` frames but the filter's
    /// true delay is one output step less, so the delay is trimmed here instead, rounded.
    Sinc { resampler: Async<f32>, delay: usize },
}

thread_local! {
    static CACHE: RefCell<Vec<((u32, u32), Engine)>> = const { RefCell::new(Vec::new()) };
}

/// Band-limited (windowed-sinc, rubato) resampling of a mono signal; identity (a copy) when
/// `from_hz == to_hz`. Output length is `round(len * to_hz / from_hz)`; the resampler's delay
/// is compensated so output sample `i` corresponds to time `i / to_hz` (a click or a sine peak
/// stays at the same time). The anti-aliasing filter is flat to about 0.95 of the lower
/// Nyquist frequency and its stopband starts at that Nyquist frequency.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    ensure!(
        from_hz > 0 && to_hz > 0,
        "sample rates must be > 0 Hz, got {from_hz} Hz -> {to_hz} Hz"
    );
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    let out_len = output_len(samples.len(), from_hz, to_hz);
    if samples.is_empty() || out_len == 0 {
        return Ok(vec![0.0; out_len]);
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let entry = match cache.iter().position(|(rates, _)| *rates == (from_hz, to_hz)) {
            Some(index) => cache.remove(index),
            None => ((from_hz, to_hz), Engine::new(from_hz, to_hz)?),
        };
        // Most recently used first, so the one evicted is the least recently used.
        cache.insert(0, entry);
        cache.truncate(CACHE_SIZE);
        let failed = |e: rubato::ResampleError| Error::invalid(format!("resample {from_hz} Hz -> {to_hz} Hz: {e}"));
        let input = InterleavedSlice::new(samples, 1, samples.len())
            .map_err(|e| Error::invalid(format!("resample: bad input buffer: {e}")))?;
        let mut out = match &mut cache[0].1 {
            // process_all resets the resampler, runs the chunks and trims the startup delay.
            Engine::Fft(resampler) => resampler
                .process_all(&input, samples.len(), None)
                .map_err(failed)?
                .take_data(),
            Engine::Sinc { resampler, delay } => {
                run_trimmed(resampler, &input, samples.len(), *delay, out_len).map_err(failed)?
            }
        };
        out.resize(out_len, 0.0);
        Ok(out)
    })
}

/// `round(len * to / from)`, halves rounded up, without overflow.
fn output_len(len: usize, from_hz: u32, to_hz: u32) -> usize {
    let scaled = len as u128 * u128::from(to_hz) + u128::from(from_hz / 2);
    usize::try_from(scaled / u128::from(from_hz)).unwrap_or(usize::MAX)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Engine {
    fn new(from_hz: u32, to_hz: u32) -> Result<Engine> {
        let (from, to) = (from_hz as usize, to_hz as usize);
        let common = gcd(from, to);
        let (unit_in, unit_out) = (from / common, to / common);
        // Whole exact blocks, enough for the filter length at the lower rate, and an even number
        // of them so both block sizes are even: the filter is then centred on a whole output
        // frame (fft_size_out / 2, exactly what process_all trims), keeping output i at i / to.
        let blocks = FILTER_LEN_LOW_RATE.div_ceil(unit_in.min(unit_out)).next_multiple_of(2);
        let construction = |e: rubato::ResamplerConstructionError| {
            Error::invalid(format!("cannot resample {from_hz} Hz -> {to_hz} Hz: {e}"))
        };
        if blocks * unit_in <= MAX_FFT_BLOCK {
            let resampler = Fft::<f32>::new_custom(
                from,
                to,
                blocks * unit_in,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Both,
            )
            .map_err(construction)?;
            return Ok(Engine::Fft(resampler));
        }
        let ratio = to as f64 / from as f64;
        // Half the FFT path's filter length at the lower rate, with the cutoff that length
        // supports there (rubato scales the cutoff by the ratio when downsampling).
        let low_rate_len = FILTER_LEN_LOW_RATE / 2;
        let sinc_len = ((low_rate_len as f64 / ratio.min(1.0)).ceil() as usize)
            .next_multiple_of(8)
            .min(MAX_SINC_LEN);
        let parameters = SincInterpolationParameters {
            sinc_len,
            f_cutoff: Some(calculate_cutoff(
                ((sinc_len as f64 * ratio.min(1.0)) as usize).max(32),
                WindowFunction::BlackmanHarris2,
            )),
            oversampling_factor: 256,
            interpolation: SincInterpolationType::Cubic,
            window: WindowFunction::BlackmanHarris2,
        };
        let resampler =
            Async::<f32>::new_sinc(ratio, 1.0, &parameters, 1024, 1, FixedAsync::Input).map_err(construction)?;
        // The sinc is centred sinc_len / 2 input frames back, and rubato steps the position once
        // before the first output frame.
        let delay = (sinc_len as f64 * ratio / 2.0 - 1.0).round().max(0.0) as usize;
        Ok(Engine::Sinc { resampler, delay })
    }
}

/// Run `resampler` over the whole input (then zeros), dropping the first `delay` output frames.
fn run_trimmed(
    resampler: &mut Async<f32>,
    input: &InterleavedSlice<&[f32]>,
    len: usize,
    delay: usize,
    out_len: usize,
) -> std::result::Result<Vec<f32>, rubato::ResampleError> {
    resampler.reset();
    let wanted = delay + out_len;
    let mut out = vec![0.0f32; wanted + resampler.output_frames_max()];
    let (mut read, mut written) = (0, 0);
    while written < wanted {
        let capacity = out.len();
        let mut output = InterleavedSlice::new_mut(&mut out[..], 1, capacity).map_err(|_| {
            rubato::ResampleError::InsufficientOutputBufferSize {
                expected: wanted,
                actual: capacity,
            }
        })?;
        let left = len - read;
        let mut indexing = Indexing::new().input_offset(read).output_offset(written);
        if left < resampler.input_frames_next() {
            indexing = indexing.partial_len(left);
        }
        let (consumed, produced) = resampler.process_into_buffer(input, &mut output, Some(&indexing))?;
        if consumed == 0 && produced == 0 {
            break;
        }
        read = (read + consumed).min(len);
        written += produced;
    }
    out.truncate(wanted);
    out.drain(..delay);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, amplitude: f64, rate: u32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Amplitude of the component at `freq` (single-bin DFT over the whole signal).
    fn amplitude_at(x: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let phase = 2.0 * PI * freq * i as f64 / f64::from(rate);
            re += f64::from(v) * phase.cos();
            im += f64::from(v) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    /// The candidate frequency with the most energy.
    fn dominant(x: &[f32], rate: u32, candidates: &[f64]) -> f64 {
        let mut best = (0.0, f64::NEG_INFINITY);
        for &f in candidates {
            let a = amplitude_at(x, f, rate);
            if a > best.1 {
                best = (f, a);
            }
        }
        best.0
    }

    /// Middle of a signal, away from the edges where a finite signal is not band-limited.
    fn middle(x: &[f32]) -> &[f32] {
        &x[x.len() / 8..x.len() - x.len() / 8]
    }

    #[test]
    fn identity_is_a_copy() {
        let x = sine(440.0, 0.5, 44100, 1000);
        assert_eq!(resample(&x, 44100, 44100).unwrap(), x);
    }

    #[test]
    fn zero_rates_are_rejected() {
        assert!(matches!(resample(&[0.0; 10], 0, 8000), Err(Error::InvalidInput(_))));
        assert!(matches!(resample(&[0.0; 10], 8000, 0), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn length_rule() {
        for &(len, from, to) in &[
            (44100, 44100, 22050),
            (44101, 44100, 22050),
            (1000, 44100, 8000),
            (1001, 22050, 8000),
            (3, 44100, 8000),
            (1, 8000, 44100),
            (12345, 48000, 44100),
            (777, 44100, 22051),
            (0, 44100, 22050),
        ] {
            let expected = ((len as f64) * f64::from(to) / f64::from(from)).round() as usize;
            let out = resample(&vec![0.1; len], from, to).unwrap();
            assert_eq!(out.len(), expected, "{len} samples {from} -> {to}");
        }
    }

    #[test]
    fn sine_keeps_frequency_and_amplitude_through_a_chain() {
        let x = sine(1000.0, 0.5, 44100, 44100);
        let a = resample(&x, 44100, 22050).unwrap();
        let b = resample(&a, 22050, 8000).unwrap();
        assert_eq!(a.len(), 22050);
        assert_eq!(b.len(), 8000);
        let candidates = [500.0, 900.0, 990.0, 1000.0, 1010.0, 1100.0, 2000.0, 3000.0];
        for (y, rate) in [(&a, 22050), (&b, 8000)] {
            assert_eq!(dominant(middle(y), rate, &candidates), 1000.0);
            let ratio = rms(middle(y)) / rms(middle(&x));
            assert!((ratio - 1.0).abs() < 0.01, "rms ratio {ratio} at {rate} Hz");
        }
    }

    #[test]
    fn passband_is_flat_to_nine_tenths_of_nyquist() {
        // 3.6 kHz is 0.9 of the 8 kHz Nyquist frequency.
        for &(from, to, freq) in &[(22050, 8000, 3600.0), (44100, 22050, 9922.5), (44100, 22051, 9922.0)] {
            let x = sine(freq, 0.5, from, from as usize);
            let y = resample(&x, from, to).unwrap();
            let gain = amplitude_at(middle(&y), freq, to) / 0.5;
            assert!((gain - 1.0).abs() < 0.01, "{from} -> {to}: gain {gain} at {freq} Hz");
        }
    }

    #[test]
    fn stopband_removes_what_the_new_rate_cannot_hold() {
        // Linear interpolation would alias 5 kHz to 3 kHz at nearly full amplitude.
        let x = sine(5000.0, 0.5, 22050, 22050);
        let y = resample(&x, 22050, 8000).unwrap();
        let ratio = rms(middle(&y)) / rms(&x);
        assert!(ratio < 0.01, "5 kHz leaked through at {ratio} of its rms");
        for &(from, to, freq) in &[(44100, 22050, 12000.0), (44100, 8000, 4400.0), (44100, 22051, 12000.0)] {
            let x = sine(freq, 0.5, from, from as usize);
            let y = resample(&x, from, to).unwrap();
            let ratio = rms(middle(&y)) / rms(&x);
            assert!(ratio < 0.01, "{from} -> {to}: {freq} Hz leaked through at {ratio}");
        }
    }

    #[test]
    fn an_impulse_stays_at_the_same_time() {
        for &(from, to) in &[
            (44100, 22050),
            (44100, 8000),
            (22050, 8000),
            (48000, 44100),
            (8000, 22050),
            (44100, 22051),
            (16000, 44100),
            (8001, 44100),
        ] {
            let mut x = vec![0.0f32; from as usize];
            x[from as usize / 2] = 1.0;
            let y = resample(&x, from, to).unwrap();
            let peak = y
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap();
            // The impulse is at input frame from / 2, i.e. at 0.5 s for even rates.
            let expected = ((from / 2) as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert!(
                peak.abs_diff(expected) <= 1,
                "{from} -> {to}: peak at {peak}, expected {expected}"
            );
        }
    }

    /// Delay of `y` (at `rate`) against a sine of `freq` starting at phase 0, in frames of
    /// `rate`, from the phase of the sine over the middle of the signal.
    fn delay_of_sine(y: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (j, &v) in y.iter().enumerate().skip(y.len() / 4).take(y.len() / 2) {
            let phase = 2.0 * PI * freq * j as f64 / f64::from(rate);
            s += f64::from(v) * phase.sin();
            c += f64::from(v) * phase.cos();
        }
        -c.atan2(s) * f64::from(rate) / (2.0 * PI * freq)
    }

    #[test]
    fn a_sine_keeps_its_phase() {
        // Sub-sample alignment: a delayed output shows as a phase shift of the sine. Pairs with
        // a small exact block (FFT) are exact; coprime pairs (sinc interpolation) are within half
        // an output frame.
        for &(from, to, tolerance) in &[
            (44100, 22050, 0.01),
            (44100, 8000, 0.01),
            (22050, 8000, 0.01),
            (48000, 44100, 0.01),
            (8000, 22050, 0.01),
            (44100, 22051, 0.5),
            (22051, 8000, 0.5),
            (8001, 44100, 0.5),
        ] {
            let x = sine(100.0, 0.5, from, 2 * from as usize);
            let y = resample(&x, from, to).unwrap();
            let delay = delay_of_sine(&y, 100.0, to);
            assert!(
                delay.abs() <= tolerance,
                "{from} -> {to}: delayed by {delay} output frames"
            );
        }
    }

    #[test]
    fn cached_resamplers_do_not_leak_state_between_calls() {
        let x = sine(1000.0, 0.5, 44100, 5000);
        let first = resample(&x, 44100, 8000).unwrap();
        let _ = resample(&sine(3000.0, 0.9, 44100, 7000), 44100, 8000).unwrap();
        assert_eq!(resample(&x, 44100, 8000).unwrap(), first);
    }
}
