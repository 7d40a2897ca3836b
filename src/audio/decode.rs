//! Audio files to mono f32 samples: format detection, decoding (symphonia: WAV, MP3, FLAC,
//! Ogg Vorbis), the down-mix to mono, start/duration windows, damaged-file policy, and
//! [`load`] (decode then resample), the crate's `librosa.load`.

use super::container::Stream;
use super::resample::resample;
use crate::ensure;
use crate::error::{Error, Result};
use std::io;
use std::path::Path;
use symphonia::core::errors::Error as CodecError;

/// Packets that fail to decode are skipped; past this many the rest of the file is given up.
const MAX_BAD_PACKETS: usize = 100;
/// Seek this far before the requested start so decoders that need history (MP3's bit
/// reservoir, overlapped transforms) have settled by the first sample kept.
const SEEK_PREROLL_SECONDS: f64 = 0.1;
/// Largest buffer reserved up front from a requested duration, so a huge `duration` on a
/// short file cannot allocate more than the file can fill.
const MAX_RESERVE: usize = 1 << 22;

/// Mono audio decoded from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// Mean of the channels, in [-1, 1] for integer formats.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file (before the down-mix).
    pub channels: usize,
    /// The stream ended early (cut-off file, too many corrupt packets); `samples` holds what
    /// could be decoded.
    pub truncated: bool,
}

/// Mono audio at the requested rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub truncated: bool,
}

/// Decode `path` to mono f32 (the mean of the channels), keeping `[start, start + duration)`
/// seconds (to the end when `duration` is `None`).
///
/// The format is detected from the content (the extension is only a hint). The decoder seeks
/// to `start` when the format allows it, else decodes and discards, and stops once `duration`
/// is covered. Corrupt packets are skipped (up to a bound); a stream that ends early after some
/// audio sets `truncated` and returns what was decoded.
///
/// Errors: a missing file is `Error::NotFound`; not audio, an unsupported codec, no audio track,
/// a corrupt header or no decodable samples is `Error::Format`; a bad `start` or `duration`,
/// including a `start` at or past the end of the audio, is `Error::InvalidInput`.
pub fn decode(path: &Path, start: f64, duration: Option<f64>) -> Result<Decoded> {
    ensure!(
        start.is_finite() && start >= 0.0,
        "{}: start must be a finite number of seconds >= 0, got {start}",
        path.display()
    );
    if let Some(duration) = duration {
        ensure!(
            duration.is_finite() && duration > 0.0,
            "{}: duration must be a positive number of seconds, got {duration}",
            path.display()
        );
    }
    let mut stream = Stream::open(path)?;
    let rate = f64::from(stream.sample_rate);
    let first = (start * rate).round() as u64;
    let window = Window {
        first,
        end: duration.map(|d| first.saturating_add(((d * rate).round() as u64).max(1))),
    };
    // The header already says the file is too short: no need to decode it all.
    if let Some(frames) = stream.num_frames.filter(|&frames| first > 0 && first >= frames) {
        return Err(beyond_end(path, start, frames as f64 / rate));
    }
    match read_window(path, &mut stream, start, &window, true)? {
        Some(pass) => finish(path, start, pass, &window),
        None => Err(Error::format(path, "decoder lost its position")),
    }
}

/// Decode `window` (which starts `start` seconds in) from `stream`: by seeking (minus a
/// pre-roll) when it starts late enough, else from the top. When the seek fails or lands after
/// the start, `rescan` decodes from the top and discards; without it the answer is `None`.
fn read_window(path: &Path, stream: &mut Stream, start: f64, window: &Window, rescan: bool) -> Result<Option<Pass>> {
    let preroll = start - SEEK_PREROLL_SECONDS;
    if window.first > 0 && preroll > 0.0 {
        if stream.seek(preroll).is_ok()
            && let Outcome::Done(pass) = stream.decode(path, window, true)?
        {
            return Ok(Some(pass));
        }
        if !rescan {
            return Ok(None);
        }
        // The seek failed (the reader may be anywhere) or landed after the start: decode from
        // the top and discard.
        *stream = Stream::open(path)?;
    } else if stream.used {
        // Counting frames from the top needs the stream at its start.
        *stream = Stream::open(path)?;
    }
    match stream.decode(path, window, false)? {
        Outcome::Done(pass) => Ok(Some(pass)),
        Outcome::Overshot => Ok(None),
    }
}

/// An opened audio file, for callers that read its header before choosing what to decode:
/// batch extraction takes a 3 s excerpt of a 30 s file without decoding the other 27 s.
pub struct AudioFile {
    path: std::path::PathBuf,
    stream: Stream,
}

impl AudioFile {
    /// Errors as [`decode`]'s for a file that cannot be opened.
    pub fn open(path: &Path) -> Result<AudioFile> {
        Ok(AudioFile {
            path: path.to_path_buf(),
            stream: Stream::open(path)?,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.stream.sample_rate
    }

    /// The file's length in frames, when its header states one and the stream really ends
    /// there: checked by seeking to just before that end and decoding to the end of the
    /// stream, so it is what a full decode would give. `None` when the header has no length,
    /// the length is an estimate (MP3 without a Xing/LAME header), the file is cut off or
    /// damaged near its end, or the format cannot seek: the caller then decodes it all.
    pub fn verified_frames(&mut self) -> Option<u64> {
        let frames = self.stream.num_frames.filter(|&frames| frames >= 2)?;
        let window = Window {
            first: frames - 1,
            end: None,
        };
        let start = (frames - 1) as f64 / f64::from(self.stream.sample_rate);
        match read_window(&self.path, &mut self.stream, start, &window, false) {
            Ok(Some(pass))
                if pass.position == Some(frames)
                    && pass.bad_packets == 0
                    && !pass.decoded.truncated
                    && pass.decoded.samples.len() == 1 =>
            {
                Some(frames)
            }
            _ => None,
        }
    }

    /// Frames `[first, end)` as a full decode would give them (the mono mix), or `None` when
    /// that cannot be promised: the seek failed, a packet in the span was corrupt, or the
    /// stream ended inside it. The caller then falls back to [`decode`].
    pub fn decode_span(&mut self, first: u64, end: u64) -> Result<Option<Decoded>> {
        ensure!(first < end, "{}: empty span [{first}, {end})", self.path.display());
        let window = Window { first, end: Some(end) };
        let start = first as f64 / f64::from(self.stream.sample_rate);
        let pass = read_window(&self.path, &mut self.stream, start, &window, false)?;
        Ok(pass
            .filter(|p| p.bad_packets == 0 && !p.decoded.truncated && p.decoded.samples.len() as u64 == end - first)
            .map(|p| p.decoded))
    }
}

/// librosa.load-like: [`decode`] `[offset, offset + duration)` seconds, then resample to `sr`
/// (`None` keeps the file's rate).
pub fn load(path: &Path, sr: Option<u32>, offset: f64, duration: Option<f64>) -> Result<Loaded> {
    ensure!(sr != Some(0), "{}: target sample rate must be > 0 Hz", path.display());
    let decoded = decode(path, offset, duration)?;
    match sr {
        Some(to) if to != decoded.sample_rate => Ok(Loaded {
            samples: resample(&decoded.samples, decoded.sample_rate, to)?,
            sample_rate: to,
            truncated: decoded.truncated,
        }),
        _ => Ok(Loaded {
            samples: decoded.samples,
            sample_rate: decoded.sample_rate,
            truncated: decoded.truncated,
        }),
    }
}

/// Frames `[first, end)` of the file, at its own rate.
struct Window {
    first: u64,
    end: Option<u64>,
}

/// What one pass over the stream produced.
struct Pass {
    decoded: Decoded,
    /// Frame index just past the last decoded frame (the file's length when it ran to the end).
    position: Option<u64>,
    bad_packets: usize,
}

enum Outcome {
    Done(Pass),
    /// After a seek, the first decoded frame was already past the window's start.
    Overshot,
}

fn finish(path: &Path, start: f64, pass: Pass, window: &Window) -> Result<Decoded> {
    if !pass.decoded.samples.is_empty() {
        return Ok(pass.decoded);
    }
    let rate = f64::from(pass.decoded.sample_rate);
    if let Some(position) = pass.position.filter(|&p| window.first > 0 && p <= window.first) {
        return Err(beyond_end(path, start, position as f64 / rate));
    }
    if pass.bad_packets > 0 {
        return Err(Error::format(
            path,
            format!("no decodable audio ({} corrupt packets)", pass.bad_packets),
        ));
    }
    if pass.decoded.truncated {
        return Err(Error::format(
            path,
            "the stream ends before any audio (truncated file?)",
        ));
    }
    Err(Error::format(path, "contains no audio"))
}

fn beyond_end(path: &Path, start: f64, seconds: f64) -> Error {
    Error::invalid(format!(
        "{}: start {start} s is at or beyond the end of the audio ({seconds:.3} s long)",
        path.display()
    ))
}

impl Stream {
    /// Decode packets into the window. After a seek, positions come from the packets'
    /// timestamps; otherwise frames are counted from the start of the stream, so a corrupt
    /// packet that is skipped shifts what follows rather than leaving a gap.
    fn decode(&mut self, path: &Path, window: &Window, after_seek: bool) -> Result<Outcome> {
        self.used = true;
        let mut samples: Vec<f32> = Vec::new();
        if let Some(end) = window.end {
            samples.reserve(((end - window.first) as usize).min(MAX_RESERVE));
        }
        let mut interleaved: Vec<f32> = Vec::new();
        let mut position: Option<i64> = if after_seek { None } else { Some(0) };
        let mut channels = 0usize;
        let mut bad_packets = 0usize;
        let mut truncated = false;
        let mut ran_to_end = false;
        loop {
            if let (Some(end), Some(p)) = (window.end, position)
                && p >= 0
                && p as u64 >= end
            {
                break;
            }
            let packet = match self.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) | Err(CodecError::ResetRequired) => {
                    // ResetRequired: a chained Ogg stream starts; the first one is the file's audio.
                    ran_to_end = true;
                    break;
                }
                Err(CodecError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    ran_to_end = true;
                    truncated = true;
                    break;
                }
                Err(CodecError::IoError(e)) => return Err(Error::io(path, e)),
                Err(CodecError::DecodeError(_)) => {
                    bad_packets += 1;
                    if bad_packets > MAX_BAD_PACKETS {
                        truncated = true;
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(Error::format(path, format!("cannot read the stream: {e}"))),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let packet_first = self.first_frame(&packet);
            let buffer = match self.decoder.decode(&packet) {
                Ok(buffer) => buffer,
                Err(CodecError::DecodeError(_) | CodecError::IoError(_)) => {
                    bad_packets += 1;
                    if bad_packets > MAX_BAD_PACKETS {
                        truncated = true;
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(Error::format(path, format!("cannot decode the audio: {e}"))),
            };
            let frames = buffer.frames();
            if frames == 0 {
                continue;
            }
            if buffer.spec().rate() != self.sample_rate {
                return Err(Error::format(path, "the sample rate changes within the stream"));
            }
            let planes = buffer.num_planes();
            if channels == 0 {
                channels = planes;
            } else if planes != channels {
                return Err(Error::format(path, "the channel count changes within the stream"));
            }
            if channels == 0 {
                continue;
            }
            let frame0 = match position {
                Some(p) => p,
                None if packet_first > window.first as i64 => return Ok(Outcome::Overshot),
                None => packet_first,
            };
            position = Some(frame0.saturating_add(frames as i64));
            // The part of [frame0, frame0 + frames) inside the window.
            let lo = (window.first as i64).saturating_sub(frame0).clamp(0, frames as i64) as usize;
            let hi = match window.end {
                Some(end) => (end as i64).saturating_sub(frame0).clamp(0, frames as i64) as usize,
                None => frames,
            };
            if lo >= hi {
                continue;
            }
            buffer.copy_to_vec_interleaved(&mut interleaved);
            let kept = &interleaved[lo * channels..hi * channels];
            if channels == 1 {
                samples.extend_from_slice(kept);
            } else {
                let scale = 1.0 / channels as f32;
                samples.extend(
                    kept.chunks_exact(channels)
                        .map(|frame| frame.iter().sum::<f32>() * scale),
                );
            }
        }
        let position = position.map(|p| p.max(0) as u64);
        // A header that promised more than the stream held means the file was cut off. MP3s
        // without a Xing header only estimate their length, hence the slack.
        if ran_to_end
            && let (Some(expected), Some(got)) = (self.num_frames, position)
            && got.saturating_add((expected / 100).max(4096)) < expected
        {
            truncated = true;
        }
        Ok(Outcome::Done(Pass {
            decoded: Decoded {
                samples,
                sample_rate: self.sample_rate,
                channels,
                truncated,
            },
            position,
            bad_packets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_files::{Scratch, fixture, pcm16, wav_bytes};
    use std::f64::consts::PI;

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Amplitude and delay (in samples) of the component at `freq`, against sin(2 pi f t).
    fn sine_fit(x: &[f32], freq: f64, rate: u32) -> (f64, f64) {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let phase = 2.0 * PI * freq * i as f64 / f64::from(rate);
            s += f64::from(v) * phase.sin();
            c += f64::from(v) * phase.cos();
        }
        let amplitude = 2.0 * (s * s + c * c).sqrt() / x.len() as f64;
        (amplitude, -c.atan2(s) * f64::from(rate) / (2.0 * PI * freq))
    }

    fn dominant(x: &[f32], rate: u32) -> f64 {
        [220.0, 330.0, 430.0, 440.0, 450.0, 550.0, 880.0, 1320.0]
            .into_iter()
            .max_by(|&a, &b| sine_fit(x, a, rate).0.total_cmp(&sine_fit(x, b, rate).0))
            .unwrap()
    }

    /// The fixtures' signal: 1 s of 440 Hz at 44.1 kHz, mono mix amplitude 0.375.
    const TONE_RATE: u32 = 44100;
    const TONE_AMPLITUDE: f64 = 0.375;

    fn tone(i: usize) -> f64 {
        TONE_AMPLITUDE * (2.0 * PI * 440.0 * i as f64 / f64::from(TONE_RATE)).sin()
    }

    /// (file, channels in the file, largest sample error against the ideal mono mix)
    const FIXTURES: [(&str, usize, f32); 4] = [
        // 16-bit quantisation of each channel.
        ("tone.wav", 1, 3.1e-5),
        ("tone.flac", 2, 3.1e-5),
        // Lossy: checked by amplitude and phase below; the sample error bound is loose.
        ("tone.mp3", 2, 0.05),
        ("tone.ogg", 2, 0.05),
    ];

    #[test]
    fn every_format_decodes_to_the_mono_mix() {
        for (name, channels, max_error) in FIXTURES {
            let d = decode(&fixture(name), 0.0, None).unwrap();
            assert_eq!(d.sample_rate, TONE_RATE, "{name}");
            assert_eq!(d.channels, channels, "{name}");
            assert!(!d.truncated, "{name}");
            // The mp3's encoder delay and padding are trimmed from its LAME header (gapless),
            // and Ogg's from its granule positions, so every format has exactly 1 s.
            assert_eq!(d.samples.len(), 44100, "{name}");
            // Away from the edges, where lossy codecs ring.
            let middle = &d.samples[2205..d.samples.len() - 2205];
            let expected_rms = TONE_AMPLITUDE / 2f64.sqrt();
            let rms_error = (rms(middle) / expected_rms - 1.0).abs();
            assert!(rms_error < 0.02, "{name}: rms off by {rms_error}");
            assert_eq!(dominant(&d.samples, d.sample_rate), 440.0, "{name}");
            let (amplitude, _) = sine_fit(middle, 440.0, d.sample_rate);
            assert!(
                (amplitude / TONE_AMPLITUDE - 1.0).abs() < 0.02,
                "{name}: amplitude {amplitude}"
            );
            // No leftover codec delay: the sine starts at sample 0.
            let (_, delay) = sine_fit(&d.samples, 440.0, d.sample_rate);
            assert!(delay.abs() < 0.5, "{name}: shifted by {delay} samples");
            let error = middle
                .iter()
                .enumerate()
                .map(|(i, &v)| (f64::from(v) - tone(i + 2205)).abs() as f32)
                .fold(0.0, f32::max);
            assert!(error <= max_error, "{name}: max sample error {error}");
        }
    }

    #[test]
    fn wav_round_trips_exactly() {
        let scratch = Scratch::new("roundtrip");
        let n = 3000;
        let left: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2000) as f32 / 1000.0 - 1.0) * 0.9)
            .collect();
        let right: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        let stereo: Vec<f32> = left.iter().zip(&right).flat_map(|(&l, &r)| [l, r]).collect();

        // Mono PCM16: the samples come back within the 16-bit step.
        let path = scratch.write("mono16.wav", &wav_bytes(16000, 1, &left, false));
        let d = decode(&path, 0.0, None).unwrap();
        assert_eq!(
            (d.sample_rate, d.channels, d.samples.len(), d.truncated),
            (16000, 1, n, false)
        );
        for (got, &want) in d.samples.iter().zip(&left) {
            assert!((got - want).abs() <= 1.0 / 32768.0, "{got} vs {want}");
            assert_eq!(*got, f32::from(pcm16(want)) / 32768.0);
        }

        // Stereo PCM16: the mean of the two quantised channels.
        let path = scratch.write("stereo16.wav", &wav_bytes(22050, 2, &stereo, false));
        let d = decode(&path, 0.0, None).unwrap();
        assert_eq!((d.sample_rate, d.channels, d.samples.len()), (22050, 2, n));
        for ((got, &l), &r) in d.samples.iter().zip(&left).zip(&right) {
            let want = (f32::from(pcm16(l)) / 32768.0 + f32::from(pcm16(r)) / 32768.0) * 0.5;
            assert!((got - want).abs() <= 1e-7, "{got} vs {want}");
            assert!((got - (l + r) / 2.0).abs() <= 1.0 / 32768.0);
        }

        // Float32: exact.
        let path = scratch.write("mono32.wav", &wav_bytes(8000, 1, &right, true));
        assert_eq!(decode(&path, 0.0, None).unwrap().samples, right);
        let path = scratch.write("stereo32.wav", &wav_bytes(48000, 2, &stereo, true));
        let d = decode(&path, 0.0, None).unwrap();
        let want: Vec<f32> = left.iter().zip(&right).map(|(&l, &r)| (l + r) * 0.5).collect();
        assert_eq!((d.sample_rate, d.channels), (48000, 2));
        assert_eq!(d.samples, want);
    }

    #[test]
    fn offset_and_duration_decode_the_right_span() {
        for (name, ..) in FIXTURES {
            let path = fixture(name);
            let full = decode(&path, 0.0, None).unwrap().samples;
            // 0.05 s is decoded and discarded; 0.25 s and 0.6 s are sought (minus a pre-roll).
            for (start, duration) in [(0.05, Some(0.5)), (0.25, Some(0.5)), (0.6, None), (0.0, Some(0.1))] {
                let part = decode(&path, start, duration).unwrap();
                let first = (start * 44100.0) as usize;
                let len = duration.map_or(full.len() - first, |d| (d * 44100.0) as usize);
                assert_eq!(part.samples.len(), len, "{name} from {start} s");
                let max_diff = part
                    .samples
                    .iter()
                    .zip(&full[first..])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                // Lossy decoders restart after a seek; the pre-roll lets them settle.
                assert!(max_diff < 1e-4, "{name} from {start} s: differs by {max_diff}");
            }
            // A duration past the end stops at the end.
            assert_eq!(decode(&path, 0.5, Some(10.0)).unwrap().samples.len(), 22050, "{name}");
        }
    }

    #[test]
    fn seeking_in_a_long_wav_lands_on_the_exact_sample() {
        let scratch = Scratch::new("seek");
        let rate = 8000;
        let x: Vec<f32> = (0..rate * 20).map(|i| (i % 30000) as f32 / 30000.0).collect();
        let path = scratch.write("long.wav", &wav_bytes(rate as u32, 1, &x, true));
        for (start, duration) in [(12.3456, Some(2.0)), (19.5, None), (0.0625, Some(0.001))] {
            let d = decode(&path, start, duration).unwrap();
            let first = (start * rate as f64).round() as usize;
            let len = duration.map_or(x.len() - first, |d| (d * rate as f64).round() as usize);
            assert_eq!(d.samples, x[first..first + len].to_vec(), "from {start} s");
        }
    }

    #[test]
    fn start_at_or_past_the_end_is_an_error_naming_the_duration() {
        for (name, ..) in FIXTURES {
            for start in [1.0, 1.5, 100.0] {
                let err = decode(&fixture(name), start, None).unwrap_err();
                match &err {
                    Error::InvalidInput(message) => {
                        assert!(message.contains("1.000 s long"), "{name}: {message}");
                        assert!(message.contains(name), "{name}: {message}");
                    }
                    _ => panic!("{name} from {start} s: {err:?}"),
                }
            }
        }
        // The truncated mp3's header promises 1 s but it holds less: the real length is named.
        let err = decode(&fixture("truncated.mp3"), 0.9, None).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("0.4")), "{err:?}");
    }

    #[test]
    fn header_length_is_verified_against_the_stream() {
        for (name, ..) in FIXTURES {
            let mut file = AudioFile::open(&fixture(name)).unwrap();
            assert_eq!(file.verified_frames(), Some(44100), "{name}");
            // The stream is reusable after the check.
            let span = file.decode_span(30_000, 31_000).unwrap().unwrap();
            let full = decode(&fixture(name), 0.0, None).unwrap().samples;
            let diff = span
                .samples
                .iter()
                .zip(&full[30_000..31_000])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-4, "{name}: {diff}");
            // A span near the start decodes from the top.
            let head = file.decode_span(10, 20).unwrap().unwrap();
            assert_eq!(
                head.samples,
                decode(&fixture(name), 0.0, None).unwrap().samples[10..20].to_vec()
            );
            // A span past the end is not what a full decode gives.
            assert_eq!(file.decode_span(44_000, 44_200).unwrap(), None, "{name}");
        }
        assert_eq!(
            AudioFile::open(&fixture("truncated.mp3")).unwrap().verified_frames(),
            None
        );
        let scratch = Scratch::new("verified");
        let bytes = wav_bytes(8000, 1, &vec![0.25; 8000], false);
        let cut = scratch.write("cut.wav", &bytes[..44 + 2 * 5000]);
        assert_eq!(AudioFile::open(&cut).unwrap().verified_frames(), None);
        let whole = scratch.write("whole.wav", &bytes);
        assert_eq!(AudioFile::open(&whole).unwrap().verified_frames(), Some(8000));
    }

    #[test]
    fn truncated_mp3_returns_what_was_there() {
        match decode(&fixture("truncated.mp3"), 0.0, None) {
            Ok(d) => {
                assert!(d.truncated);
                assert!(
                    d.samples.len() > 10_000 && d.samples.len() < 30_000,
                    "{}",
                    d.samples.len()
                );
                assert_eq!(dominant(&d.samples, d.sample_rate), 440.0);
            }
            Err(Error::Format { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
        // A window inside what is there is not flagged: nothing was missing from it.
        let d = decode(&fixture("truncated.mp3"), 0.0, Some(0.2)).unwrap();
        assert!(!d.truncated);
        assert_eq!(d.samples.len(), 8820);
    }

    #[test]
    fn cut_wav_is_flagged_truncated() {
        let scratch = Scratch::new("cutwav");
        let x: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let bytes = wav_bytes(8000, 1, &x, false);
        // The header still promises 8000 frames.
        let path = scratch.write("cut.wav", &bytes[..44 + 2 * 5000]);
        let d = decode(&path, 0.0, None).unwrap();
        assert!(d.truncated);
        assert_eq!(d.samples.len(), 5000);
        // Odd byte count: the last partial frame is dropped.
        let path = scratch.write("cut_odd.wav", &bytes[..44 + 2 * 5000 + 1]);
        let d = decode(&path, 0.0, None).unwrap();
        assert!(d.truncated);
        assert!(d.samples.len() >= 5000 && d.samples.len() <= 5001);
    }

    #[test]
    fn damaged_files_never_panic() {
        let scratch = Scratch::new("damaged");
        for (name, ..) in FIXTURES {
            let bytes = std::fs::read(fixture(name)).unwrap();
            let n = bytes.len();
            let mut cases: Vec<(String, Vec<u8>)> = [1, 4, 10, 44, 100, 1000, n / 3, n / 2, n - 1]
                .into_iter()
                .filter(|&cut| cut < n)
                .map(|cut| (format!("cut{cut}"), bytes[..cut].to_vec()))
                .collect();
            for (offset, stride) in [(n / 4, 1), (n / 2, 7), (200, 13), (64, 1)] {
                let mut damaged = bytes.clone();
                for b in damaged.iter_mut().skip(offset).step_by(stride).take(300) {
                    *b ^= 0x5a;
                }
                cases.push((format!("noise{offset}-{stride}"), damaged));
            }
            for (case, data) in cases {
                let path = scratch.write(&format!("{case}-{name}"), &data);
                for (start, duration) in [(0.0, None), (0.3, Some(0.2))] {
                    match decode(&path, start, duration) {
                        Ok(d) => assert!(d.samples.iter().all(|v| v.is_finite()), "{case} {name}"),
                        Err(Error::Format { path: p, .. }) => assert_eq!(p, path),
                        Err(Error::InvalidInput(m)) => assert!(m.contains("beyond the end"), "{case} {name}: {m}"),
                        Err(e) => panic!("{case} {name}: {e:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn not_audio_empty_and_missing_files_are_errors_naming_the_path() {
        let scratch = Scratch::new("notaudio");
        let empty = scratch.write("empty.wav", b"");
        let binary = scratch.write(
            "noise.flac",
            &(0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                .collect::<Vec<_>>(),
        );
        for path in [fixture("not_audio.mp3"), empty, binary, scratch.0.clone()] {
            let err = decode(&path, 0.0, None).unwrap_err();
            assert!(matches!(&err, Error::Format { path: p, .. } if *p == path), "{err:?}");
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
        let missing = scratch.path("missing.ogg");
        let err = decode(&missing, 0.0, None).unwrap_err();
        assert!(matches!(&err, Error::NotFound(p) if *p == missing), "{err:?}");
        assert!(err.to_string().contains("missing.ogg"), "{err}");
    }

    #[test]
    fn format_is_detected_from_content_not_extension() {
        let scratch = Scratch::new("extension");
        for (name, ..) in FIXTURES {
            let renamed = scratch.write(&format!("{name}.dat"), &std::fs::read(fixture(name)).unwrap());
            let d = decode(&renamed, 0.0, None).unwrap();
            assert_eq!(d.samples, decode(&fixture(name), 0.0, None).unwrap().samples, "{name}");
        }
    }

    #[test]
    fn large_id3v2_tag_in_front_of_an_mp3_is_skipped() {
        // 2 MB of tag (past symphonia's 1 MB probe limit), full of bytes that look like MPEG
        // frame headers.
        let scratch = Scratch::new("id3");
        let body_len: u32 = 2 << 20;
        let mut bytes = b"ID3\x04\x00\x00".to_vec();
        bytes.extend((0..4).rev().map(|i| ((body_len >> (7 * i)) & 0x7f) as u8));
        bytes.extend((0..body_len).map(|i| if i % 2 == 0 { 0xff } else { 0xfb }));
        bytes.extend(std::fs::read(fixture("tone.mp3")).unwrap());
        let path = scratch.write("tagged.mp3", &bytes);
        let tagged = decode(&path, 0.0, None).unwrap();
        assert_eq!(tagged.samples, decode(&fixture("tone.mp3"), 0.0, None).unwrap().samples);
        let part = decode(&path, 0.5, Some(0.25)).unwrap();
        assert_eq!(part.samples, tagged.samples[22050..33075].to_vec());
    }

    #[test]
    fn bad_arguments_are_invalid_input() {
        let path = fixture("tone.wav");
        for (start, duration) in [
            (-0.1, None),
            (f64::NAN, None),
            (0.0, Some(0.0)),
            (0.0, Some(-1.0)),
            (0.0, Some(f64::INFINITY)),
        ] {
            assert!(
                matches!(decode(&path, start, duration), Err(Error::InvalidInput(_))),
                "{start} {duration:?}"
            );
        }
        assert!(matches!(load(&path, Some(0), 0.0, None), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn load_resamples_like_librosa_load() {
        let path = fixture("tone.flac");
        let native = load(&path, None, 0.0, None).unwrap();
        assert_eq!(
            (native.sample_rate, native.samples.len(), native.truncated),
            (44100, 44100, false)
        );
        assert_eq!(native.samples, decode(&path, 0.0, None).unwrap().samples);
        let same = load(&path, Some(44100), 0.0, None).unwrap();
        assert_eq!(same, native);
        for rate in [22050, 8000] {
            let y = load(&path, Some(rate), 0.25, Some(0.5)).unwrap();
            assert_eq!((y.sample_rate, y.samples.len()), (rate, rate as usize / 2));
            assert_eq!(dominant(&y.samples, rate), 440.0);
            let (amplitude, _) = sine_fit(&y.samples, 440.0, rate);
            assert!(
                (amplitude / TONE_AMPLITUDE - 1.0).abs() < 0.01,
                "{rate} Hz: amplitude {amplitude}"
            );
        }
    }
}
