//! Excerpts of a fixed length from a decoded signal: where they start (random with a seed,
//! centred, or at an offset), zero padding for short sources, and a stable per-file key so a
//! random excerpt does not depend on batch order or thread count.

use crate::ensure;
use crate::error::Result;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where an excerpt is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClipPosition {
    /// Uniformly random start, reproducible from `seed` and the caller's per-file key.
    Random { seed: u64 },
    /// The middle of the source.
    Centre,
    /// A fixed time from the start of the source.
    Offset { seconds: f64 },
    /// Excerpt `index` of `count` spread evenly over the source: the first at its start, the
    /// last at its end (one alone is centred), so several excerpts cover the whole source.
    Spread { index: usize, count: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    /// First source sample used.
    pub start: usize,
    /// The source ran out before the clip was full: the rest is zeros.
    pub padded: bool,
}

/// Exactly `round(seconds * sample_rate)` samples of `samples`.
///
/// - `Random { seed }`: start uniform in `[0, len - clip_len]`, drawn from ChaCha8 seeded by
///   `seed` and `key` together (pass a per-file key such as [`path_key`], so a batch gives the
///   same excerpt for a file whatever the order or thread count).
/// - `Centre`: start `(len - clip_len) / 2`.
/// - `Spread { index, count }`: start `round(index * (len - clip_len) / (count - 1))`
///   (centred when `count` is 1); an error unless `index < count`.
/// - `Offset { seconds }`: start `round(seconds * sample_rate)`; an error if that is at or
///   beyond the end of the source.
///
/// A source shorter than the clip starts at 0 (or at the offset) and is zero-padded at the
/// end, with `padded = true`.
pub fn take_clip(samples: &[f32], sample_rate: u32, seconds: f64, position: ClipPosition, key: u64) -> Result<Clip> {
    let span = clip_span(samples.len(), sample_rate, seconds, position, key)?;
    let end = (span.start + span.len).min(samples.len());
    let mut clip = Vec::with_capacity(span.len);
    clip.extend_from_slice(&samples[span.start..end]);
    let padded = clip.len() < span.len;
    clip.resize(span.len, 0.0);
    Ok(Clip {
        samples: clip,
        start: span.start,
        padded,
    })
}

/// Where a clip lies in a source of `len` samples: its first sample and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// The excerpt [`take_clip`] takes from a source of `len` samples, without the samples: so a
/// caller that knows a file's length from its header can decode only that part.
pub fn clip_span(len: usize, sample_rate: u32, seconds: f64, position: ClipPosition, key: u64) -> Result<Span> {
    ensure!(sample_rate > 0, "sample rate must be > 0 Hz");
    ensure!(
        seconds.is_finite() && seconds > 0.0,
        "clip length must be a positive number of seconds, got {seconds}"
    );
    let rate = f64::from(sample_rate);
    let clip_len = (seconds * rate).round();
    ensure!(
        clip_len >= 1.0 && clip_len <= isize::MAX as f64,
        "a {seconds} s clip at {sample_rate} Hz is {clip_len} samples; it must be at least 1"
    );
    let clip_len = clip_len as usize;
    let spare = len.saturating_sub(clip_len);
    let start = match position {
        ClipPosition::Random { seed } => {
            let mut rng = ChaCha8Rng::from_seed(chacha_seed(seed, key));
            // Drawn as u64 so the excerpt is the same on 32- and 64-bit platforms.
            rng.random_range(0..=spare as u64) as usize
        }
        ClipPosition::Centre => spare / 2,
        ClipPosition::Spread { index, count } => {
            ensure!(
                index < count,
                "excerpt {index} of {count} does not exist (index must be below count)"
            );
            if count == 1 {
                spare / 2
            } else {
                ((index as f64 * spare as f64) / (count - 1) as f64).round() as usize
            }
        }
        ClipPosition::Offset { seconds: offset } => {
            ensure!(
                offset.is_finite() && offset >= 0.0,
                "clip offset must be a finite number of seconds >= 0, got {offset}"
            );
            let start = (offset * rate).round();
            ensure!(
                start < len as f64,
                "clip offset {offset} s is beyond the end of the audio ({:.3} s)",
                len as f64 / rate
            );
            start as usize
        }
    };
    Ok(Span { start, len: clip_len })
}

/// Seed and key side by side rather than hashed together: distinct (seed, key) pairs never
/// share a stream.
fn chacha_seed(seed: u64, key: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&key.to_le_bytes());
    bytes
}

/// A stable 64-bit key for a file, for [`take_clip`]: FNV-1a of its file name only, so a
/// track's excerpt is the same wherever its dataset lives and however the path is spelled.
pub fn path_key(path: &Path) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    path.file_name()
        .unwrap_or(path.as_os_str())
        .as_encoded_bytes()
        .iter()
        .fold(OFFSET_BASIS, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn ramp(len: usize) -> Vec<f32> {
        (0..len).map(|i| i as f32).collect()
    }

    #[test]
    fn clip_has_exactly_the_rounded_length() {
        let x = ramp(10_000);
        for (seconds, rate, expected) in [
            (0.5, 1000, 500),
            (0.0015, 1000, 2),
            (0.0014, 1000, 1),
            (3.0, 8000, 24_000),
        ] {
            for position in [
                ClipPosition::Random { seed: 1 },
                ClipPosition::Centre,
                ClipPosition::Offset { seconds: 0.0 },
            ] {
                let clip = take_clip(&x, rate, seconds, position, 7).unwrap();
                assert_eq!(clip.samples.len(), expected, "{seconds} s at {rate} Hz, {position:?}");
            }
        }
    }

    #[test]
    fn samples_are_the_source_from_start() {
        let x = ramp(1000);
        for position in [
            ClipPosition::Random { seed: 3 },
            ClipPosition::Centre,
            ClipPosition::Offset { seconds: 0.25 },
            ClipPosition::Spread { index: 1, count: 3 },
        ] {
            let clip = take_clip(&x, 1000, 0.1, position, 11).unwrap();
            assert!(!clip.padded);
            assert_eq!(clip.samples, x[clip.start..clip.start + 100].to_vec());
        }
    }

    #[test]
    fn random_is_deterministic_per_seed_and_key() {
        let x = ramp(100_000);
        let take = |seed, key| {
            take_clip(&x, 1000, 1.0, ClipPosition::Random { seed }, key)
                .unwrap()
                .start
        };
        assert_eq!(take(5, 42), take(5, 42));
        // Different keys (files) and different seeds give different excerpts.
        let starts: std::collections::HashSet<usize> = (0..20).map(|key| take(5, key)).collect();
        assert!(starts.len() >= 19, "only {} distinct starts for 20 keys", starts.len());
        let starts: std::collections::HashSet<usize> = (0..20).map(|seed| take(seed, 42)).collect();
        assert!(starts.len() >= 19, "only {} distinct starts for 20 seeds", starts.len());
        // Swapping seed and key is a different stream.
        assert_ne!(take(1, 2), take(2, 1));
    }

    #[test]
    fn random_start_covers_the_whole_range() {
        let x = ramp(1010);
        let starts: Vec<usize> = (0..2000)
            .map(|key| {
                take_clip(&x, 1000, 1.0, ClipPosition::Random { seed: 0 }, key)
                    .unwrap()
                    .start
            })
            .collect();
        assert!(starts.iter().all(|&s| s <= 10));
        for s in 0..=10 {
            assert!(starts.contains(&s), "start {s} never drawn");
        }
    }

    #[test]
    fn centre_and_offset_positions() {
        let x = ramp(1000);
        assert_eq!(take_clip(&x, 1000, 0.1, ClipPosition::Centre, 0).unwrap().start, 450);
        assert_eq!(take_clip(&x, 1000, 0.101, ClipPosition::Centre, 0).unwrap().start, 449);
        let clip = take_clip(&x, 1000, 0.1, ClipPosition::Offset { seconds: 0.2004 }, 0).unwrap();
        assert_eq!(clip.start, 200);
        assert_eq!(clip.samples[0], 200.0);
    }

    #[test]
    fn short_sources_are_zero_padded() {
        let x = ramp(50);
        for position in [ClipPosition::Random { seed: 9 }, ClipPosition::Centre] {
            let clip = take_clip(&x, 1000, 0.1, position, 1).unwrap();
            assert!(clip.padded);
            assert_eq!(clip.start, 0);
            assert_eq!(&clip.samples[..50], &x[..]);
            assert!(clip.samples[50..].iter().all(|&v| v == 0.0));
        }
        let clip = take_clip(&x, 1000, 0.1, ClipPosition::Offset { seconds: 0.02 }, 1).unwrap();
        assert!(clip.padded);
        assert_eq!(clip.start, 20);
        assert_eq!(&clip.samples[..30], &x[20..]);
        assert!(clip.samples[30..].iter().all(|&v| v == 0.0));
        // Exactly the clip's length is not padding.
        assert!(
            !take_clip(&ramp(100), 1000, 0.1, ClipPosition::Centre, 0)
                .unwrap()
                .padded
        );
    }

    #[test]
    fn offset_beyond_the_end_is_an_error() {
        let x = ramp(1000);
        for seconds in [1.0, 2.5] {
            let err = take_clip(&x, 1000, 0.1, ClipPosition::Offset { seconds }, 0).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput(m) if m.contains("beyond the end")),
                "{err}"
            );
        }
        assert!(take_clip(&x, 1000, 0.1, ClipPosition::Offset { seconds: 0.999 }, 0).is_ok());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = ramp(1000);
        for (rate, seconds, position) in [
            (0, 1.0, ClipPosition::Centre),
            (1000, 0.0, ClipPosition::Centre),
            (1000, -1.0, ClipPosition::Centre),
            (1000, f64::NAN, ClipPosition::Centre),
            (1000, 0.0001, ClipPosition::Centre),
            (1000, 0.1, ClipPosition::Offset { seconds: -0.1 }),
            (1000, 0.1, ClipPosition::Offset { seconds: f64::INFINITY }),
        ] {
            assert!(
                matches!(take_clip(&x, rate, seconds, position, 0), Err(Error::InvalidInput(_))),
                "{rate} Hz, {seconds} s, {position:?}"
            );
        }
    }

    #[test]
    fn path_key_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(path_key(Path::new("")), 0xcbf2_9ce4_8422_2325);
        assert_eq!(path_key(Path::new("a")), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(path_key(Path::new("foobar")), 0x8594_4171_f739_67e8);
        assert_ne!(path_key(Path::new("music/a.mp3")), path_key(Path::new("music/b.mp3")));
        assert_eq!(path_key(Path::new("/x/y/foobar")), path_key(Path::new("./foobar")));
    }

    #[test]
    fn spread_excerpts_cover_the_source_from_start_to_end() {
        let x = ramp(1000);
        let start = |index, count| {
            take_clip(&x, 1000, 0.1, ClipPosition::Spread { index, count }, 0)
                .unwrap()
                .start
        };
        assert_eq!([start(0, 4), start(1, 4), start(2, 4), start(3, 4)], [0, 300, 600, 900]);
        assert_eq!(start(0, 1), 450);
        let beyond = take_clip(&x, 1000, 0.1, ClipPosition::Spread { index: 4, count: 4 }, 0);
        assert!(matches!(beyond, Err(Error::InvalidInput(_))), "{beyond:?}");
        let json = serde_json::to_string(&ClipPosition::Spread { index: 1, count: 4 }).unwrap();
        assert_eq!(json, r#"{"kind":"spread","index":1,"count":4}"#);
    }

    #[test]
    fn position_serialises_with_a_kind_tag() {
        let json = serde_json::to_string(&ClipPosition::Random { seed: 3 }).unwrap();
        assert_eq!(json, r#"{"kind":"random","seed":3}"#);
        let back: ClipPosition = serde_json::from_str(r#"{"kind":"offset","seconds":1.5}"#).unwrap();
        assert_eq!(back, ClipPosition::Offset { seconds: 1.5 });
        let centre: ClipPosition = serde_json::from_str(r#"{"kind":"centre"}"#).unwrap();
        assert_eq!(centre, ClipPosition::Centre);
    }
}
