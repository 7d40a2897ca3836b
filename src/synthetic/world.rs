//! The synthetic world written in the real datasets' formats (the same directory layout the
//! loaders read, see `data/mod.rs`): `train_triplets.txt`, `track_metadata.db`,
//! `unique_tracks.txt`, `lastfm_tags.db` and `audio/<track_id>.wav` (or `.flac`, `.ogg`, `.mp3`
//! by `audio_format`), plus the ground truth (`world.json`, `world.safetensors`) for tests and
//! experiments.
//!
//! Content predicts listening only partly, as in real life. Listening follows the full latent
//! style (16 dimensions by default). The audio renders the first three quarters of the
//! dimensions, the metadata (artist, tags, year) the last three quarters: the first quarter is
//! only audible, the last quarter only visible in metadata, the middle in both. Both views add
//! per-song noise, and the audio a random melody, drum pattern and loudness.
//!
//! Real data is messy, and so is this: a few songs have no track (their id is in the triplets
//! only), some tracks no audio file, some songs a second track (a duplicate without audio),
//! many tracks no tags and many years are unknown (0). `world.json` says which.

use super::catalogue::Catalogue;
use super::real::{self, RealSongs};
use super::sound::{self, N_SOUND_PARAMS};
use super::{Listening, WorldConfig, generate_listening, generate_listening_for, stream_rng};
use crate::audio::encode;
use crate::data::dataset::{AUDIO_DIR, TRIPLETS_FILE};
use crate::data::metadata::{self};
use crate::data::tags::{self};
use crate::data::triplets;
use crate::data::unique_tracks::{self};
use crate::ensure;
use crate::error::{Error, Result};
use crate::io::{save_tensors, write_atomic};
use crate::parallel::{Progress, Step, Threads};
use rand::RngExt;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const TRUTH_JSON: &str = "world.json";
pub const TRUTH_TENSORS: &str = "world.safetensors";
/// Separates the audio's random stream from the listening's (and the catalogue's).
const AUDIO_SALT: u64 = 0x6d75_7372_6563_0002;
/// Songs rendered between two progress reports (and Ctrl-C checks).
const AUDIO_CHUNK: usize = 64;

/// The file format of the synthetic audio: "wav" (the default), "flac", "ogg" or "mp3".
pub use crate::audio::encode::AudioFormat;

/// Everything that shapes a synthetic world on disk.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WorldFilesConfig {
    pub listening: WorldConfig,
    pub sample_rate: u32,
    /// Seconds of audio per song (the paper's model reads 3-second excerpts).
    pub duration: f64,
    pub audio_format: AudioFormat,
    /// Audio in MSD-style folders (`audio/A/B/C/TRABC...wav`) rather than flat.
    pub nested_audio: bool,
    /// Mean number of songs per artist.
    pub songs_per_artist: f64,
    /// Standard deviation of the per-song noise on each audible or visible quality, against
    /// a unit spread of the style (0: content is a deterministic function of style).
    pub content_noise: f64,
    pub share_without_track: f64,
    pub share_without_audio: f64,
    pub share_second_track: f64,
    pub share_without_tags: f64,
    pub share_unknown_year: f64,
    /// A directory of real recordings: the songs are then cut from them (`duration`
    /// seconds each, at most `n_songs` of them, see `synthetic::real`) instead of rendered,
    /// and their styles come from their sound.
    pub source_audio: Option<PathBuf>,
}

impl Default for WorldFilesConfig {
    fn default() -> Self {
        WorldFilesConfig {
            listening: WorldConfig::default(),
            sample_rate: 22_050,
            duration: 4.0,
            audio_format: AudioFormat::Wav,
            nested_audio: false,
            songs_per_artist: 8.0,
            content_noise: 0.5,
            share_without_track: 0.005,
            share_without_audio: 0.02,
            share_second_track: 0.03,
            share_without_tags: 0.15,
            share_unknown_year: 0.2,
            source_audio: None,
        }
    }
}

impl WorldFilesConfig {
    /// `tiny` (600 users x 800 songs, seconds, for CI), `small` (2,000 x 5,000) or `paper`
    /// (10,000 users x 56,000 songs, so that 50,000 are played and have audio; about 9.9 GB
    /// of 4-second WAV at 22,050 Hz).
    pub fn preset(name: &str) -> Result<Self> {
        let listening = match name {
            "tiny" => WorldConfig {
                n_users: 600,
                n_songs: 800,
                mean_songs_per_user: 20.0,
                n_genres: 8,
                ..WorldConfig::default()
            },
            "small" => WorldConfig::default(),
            "paper" => WorldConfig::paper(),
            other => {
                return Err(Error::invalid(format!(
                    "unknown world preset {other:?}; expected tiny, small or paper"
                )));
            }
        };
        Ok(WorldFilesConfig {
            listening,
            ..WorldFilesConfig::default()
        })
    }

    pub fn validate(&self) -> Result<()> {
        self.listening.validate()?;
        ensure!(
            (1000..=192_000).contains(&self.sample_rate),
            "sample_rate must be between 1000 and 192000 Hz, got {}",
            self.sample_rate
        );
        ensure!(
            self.duration.is_finite() && self.duration > 0.0 && self.duration <= 600.0,
            "duration must be between 0 and 600 seconds, got {}",
            self.duration
        );
        ensure!(
            self.songs_per_artist.is_finite() && self.songs_per_artist >= 1.0,
            "songs_per_artist must be at least 1, got {}",
            self.songs_per_artist
        );
        ensure!(
            self.content_noise.is_finite() && self.content_noise >= 0.0,
            "content_noise must be finite and non-negative, got {}",
            self.content_noise
        );
        for (name, share) in [
            ("share_without_track", self.share_without_track),
            ("share_without_audio", self.share_without_audio),
            ("share_second_track", self.share_second_track),
            ("share_without_tags", self.share_without_tags),
            ("share_unknown_year", self.share_unknown_year),
        ] {
            ensure!((0.0..1.0).contains(&share), "{name} must be in [0, 1), got {share}");
        }
        self.audio_format.check_sample_rate(self.sample_rate)
    }
}

/// What was written, and what was planted for the loaders to find.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldSummary {
    pub n_users: usize,
    pub n_songs: usize,
    pub n_tracks: usize,
    pub n_artists: usize,
    pub plays: usize,
    pub audio_files: usize,
    pub songs_without_track: usize,
    pub songs_without_audio: usize,
    pub songs_with_second_track: usize,
    pub songs_without_tags: usize,
    pub songs_with_unknown_year: usize,
}

/// Generate the world of `cfg` and write it into `dir` (created if needed; files of the same
/// names are replaced). Audio renders in parallel on `threads`; `progress` counts audio files.
pub fn write_world(
    dir: &Path,
    cfg: &WorldFilesConfig,
    threads: &Threads,
    progress: Progress<'_>,
) -> Result<WorldSummary> {
    cfg.validate()?;
    std::fs::create_dir_all(dir.join(AUDIO_DIR)).map_err(|e| Error::io(dir, e))?;
    let requested = cfg;
    let (cfg, real) = match &requested.source_audio {
        Some(source) => {
            let lc = &requested.listening;
            let songs = real::cut_recordings(
                source,
                requested.sample_rate,
                requested.duration,
                lc.n_songs,
                lc.style_dim,
                lc.n_genres,
                lc.seed,
                threads,
                &mut *progress,
            )?;
            let mut actual = requested.clone();
            actual.listening.n_songs = songs.samples.len();
            // Fewer songs than asked for: each user's activity shrinks with the catalogue.
            actual.listening.mean_songs_per_user = lc.mean_songs_per_user.min((songs.samples.len() / 2) as f64);
            (actual, Some(songs))
        }
        None => (requested.clone(), None),
    };
    let cfg = &cfg;
    let listening = threads.run(|| match &real {
        Some(songs) => generate_listening_for(&cfg.listening, &songs.styles),
        None => generate_listening(&cfg.listening),
    })?;
    let cat = Catalogue::build(cfg, &listening);

    write_truth(dir, requested, &listening, &cat, real.as_ref())?;
    triplets::write(
        &dir.join(TRIPLETS_FILE),
        listening.plays.view(),
        &cat.user_ids,
        &cat.song_ids,
    )?;
    metadata::write(&dir.join(metadata::FILE_NAME), &cat.tracks())?;
    unique_tracks::write(&dir.join(unique_tracks::FILE_NAME), &cat.unique_tracks())?;
    tags::write(&dir.join(tags::FILE_NAME), &cat.tags)?;

    let with_audio: Vec<usize> = (0..cat.song_ids.len()).filter(|&s| cat.has_audio[s]).collect();
    let total = with_audio.len();
    progress(Step {
        done: 0,
        total,
        loss: None,
    })?;
    for (k, chunk) in with_audio.chunks(AUDIO_CHUNK).enumerate() {
        threads.run(|| {
            chunk
                .par_iter()
                .map(|&s| {
                    let path = audio_path(dir, &cat.track_id[s], cfg.audio_format, cfg.nested_audio);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                    }
                    let mut rng = stream_rng(cfg.listening.seed ^ AUDIO_SALT, s as u64);
                    let rendered;
                    let samples = match &real {
                        Some(songs) => &songs.samples[s],
                        None => {
                            rendered = sound::render(&cat.sound[s], cfg.sample_rate, cfg.duration, &mut rng);
                            &rendered
                        }
                    };
                    let ogg_serial = rng.random();
                    encode::write(&path, cfg.audio_format, samples, cfg.sample_rate, ogg_serial)
                })
                .collect::<Result<Vec<()>>>()
        })?;
        progress(Step {
            done: (k * AUDIO_CHUNK + chunk.len()).min(total),
            total,
            loss: None,
        })?;
    }
    let n_songs = cat.song_ids.len();
    Ok(WorldSummary {
        n_users: cat.user_ids.len(),
        n_songs,
        n_tracks: cat
            .track_id
            .iter()
            .chain(&cat.extra_track_id)
            .filter(|t| !t.is_empty())
            .count(),
        n_artists: cat.artist_ids.len(),
        plays: listening.plays.indices.len(),
        audio_files: total,
        songs_without_track: cat.track_id.iter().filter(|t| t.is_empty()).count(),
        songs_without_audio: n_songs - total,
        songs_with_second_track: cat.extra_track_id.iter().filter(|t| !t.is_empty()).count(),
        songs_without_tags: cat.has_tags.iter().filter(|&&t| !t).count(),
        songs_with_unknown_year: (0..n_songs)
            .filter(|&s| !cat.track_id[s].is_empty() && cat.year[s] == 0)
            .count(),
    })
}

/// Where the audio of `track` goes: `dir/audio/<track>.<format's extension>`, or MSD-style
/// nested folders named by the track id's 3rd to 5th characters.
fn audio_path(dir: &Path, track: &str, format: AudioFormat, nested: bool) -> PathBuf {
    let mut path = dir.join(AUDIO_DIR);
    if nested {
        for c in track.chars().skip(2).take(3) {
            path.push(c.to_string());
        }
    }
    path.join(format!("{track}.{}", format.extension()))
}

/// `cfg` is the configuration as requested (what a re-run compares); with real sound the
/// song count is what the recordings gave, and `real_sound` says where each song came from.
fn write_truth(
    dir: &Path,
    cfg: &WorldFilesConfig,
    w: &Listening,
    cat: &Catalogue,
    real: Option<&RealSongs>,
) -> Result<()> {
    let lc = &cfg.listening;
    let (n_songs, n_users) = (w.song_popularity.len(), w.user_taste.len() / lc.style_dim.max(1));
    let real_sound = real.map(|r| {
        serde_json::json!({
            "recordings": r.recordings,
            "song_recording": r.recording,
            "song_offset_seconds": r.offset_seconds,
            "unreadable": r.unreadable,
            "silent_segments": r.silent,
            "descriptors": r.descriptors.chunks(real::N_DESCRIPTORS).collect::<Vec<_>>(),
        })
    });
    let truth = serde_json::json!({
        "real_sound": real_sound,
        "format": "musrec synthetic world",
        "version": 1,
        "config": cfg,
        "user_ids": cat.user_ids,
        "song_ids": cat.song_ids,
        "track_id": cat.track_id,
        "extra_track_id": cat.extra_track_id,
        "has_audio": cat.has_audio,
        "has_tags": cat.has_tags,
        "year": cat.year,
        "song_genre": w.song_genre,
        "song_artist": cat.song_artist,
        "artist_ids": cat.artist_ids,
        "sound_param_names": sound::SOUND_PARAM_NAMES,
        "audio_dims": cat.audio_dims,
        "metadata_dims": cat.metadata_dims,
    });
    let text = serde_json::to_vec(&truth).map_err(|e| Error::invalid(format!("world.json: {e}")))?;
    write_atomic(&dir.join(TRUTH_JSON), |out| out.write_all(&text))?;
    let sound: Vec<f32> = cat.sound.iter().flatten().copied().collect();
    let d = lc.style_dim;
    save_tensors(
        &dir.join(TRUTH_TENSORS),
        &[
            ("song_style", &[n_songs, d], &w.song_style),
            ("user_taste", &[n_users, d], &w.user_taste),
            ("genre_centre", &[lc.n_genres, d], &w.genre_centre),
            ("song_popularity", &[n_songs], &w.song_popularity),
            ("sound_params", &[n_songs, N_SOUND_PARAMS], &sound),
        ],
        HashMap::from([("format".to_string(), "musrec synthetic world".to_string())]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{LoadOptions, load};
    use crate::parallel::ignore_progress;

    fn micro(seed: u64) -> WorldFilesConfig {
        let mut cfg = WorldFilesConfig::preset("tiny").unwrap();
        cfg.listening.n_users = 60;
        cfg.listening.n_songs = 80;
        cfg.listening.mean_songs_per_user = 8.0;
        cfg.listening.seed = seed;
        cfg.sample_rate = 8000;
        cfg.duration = 0.5;
        cfg.share_without_track = 0.05;
        cfg.share_without_audio = 0.1;
        cfg.share_second_track = 0.1;
        cfg
    }

    /// Recordings of different character (a steady chord, a pulsing one, noise bursts) in
    /// two formats, for the real-sound world.
    fn recordings(dir: &Path) {
        let sr = 8000;
        for (k, format) in [AudioFormat::Wav, AudioFormat::Flac, AudioFormat::Wav]
            .into_iter()
            .enumerate()
        {
            let samples: Vec<f32> = (0..sr * 9)
                .map(|i| {
                    let t = i as f32 / sr as f32;
                    let tone = (std::f32::consts::TAU * 220.0 * (k + 1) as f32 * t).sin();
                    let gate = if k == 1 {
                        ((t * 4.0).fract() < 0.5) as u8 as f32
                    } else {
                        1.0
                    };
                    let noise = if k == 2 {
                        ((i * 7919 % 101) as f32 / 50.0 - 1.0) * 0.3
                    } else {
                        0.0
                    };
                    0.3 * tone * gate + noise
                })
                .collect();
            let path = dir.join(format!("album{k}/track{k}.{}", format.extension()));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            encode::write(&path, format, &samples, sr as u32, 1).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not audio").unwrap();
        std::fs::write(dir.join("broken.wav"), "RIFF....").unwrap();
    }

    #[test]
    fn songs_of_real_sound_are_cut_from_recordings() {
        let base = std::env::temp_dir().join(format!("musrec-real-{}", std::process::id()));
        let source = base.join("recordings");
        recordings(&source);
        let mut cfg = micro(5);
        cfg.source_audio = Some(source.clone());
        cfg.duration = 1.0;
        cfg.listening.n_genres = 3;
        cfg.share_without_audio = 0.0;
        // 9 s recordings less a 2 s lead-in: 7 songs each, 21 in all (fewer than asked for).
        let dir = base.join("world");
        let summary = write_world(&dir, &cfg, &Threads::new(2).unwrap(), &mut ignore_progress).unwrap();
        assert_eq!(summary.n_songs, 21);
        let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(TRUTH_JSON)).unwrap()).unwrap();
        assert_eq!(
            truth["config"]["listening"]["n_songs"], 80,
            "the requested config, for re-use checks"
        );
        let real = &truth["real_sound"];
        assert_eq!(real["recordings"].as_array().unwrap().len(), 4);
        assert_eq!(real["unreadable"].as_array().unwrap().len(), 1); // broken.wav
        assert_eq!(real["song_offset_seconds"][1], 3.0);
        // Songs of one recording sound alike, so they share a genre more often than not.
        let genre: Vec<u64> = truth["song_genre"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_u64().unwrap())
            .collect();
        let recording: Vec<u64> = real["song_recording"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap())
            .collect();
        let same = (0..21)
            .filter(|&i| i > 0 && recording[i] == recording[i - 1] && genre[i] == genre[i - 1])
            .count();
        assert!(same >= 12, "{genre:?}");
        // The audio files are the recordings' segments, bit for bit (WAV of the same rate).
        let data = load(&dir, &LoadOptions::default(), &mut ignore_progress).unwrap();
        let path = data.songs.audio_path.iter().flatten().next().unwrap();
        let audio = crate::audio::decode::load(path, None, 0.0, None).unwrap();
        assert_eq!((audio.sample_rate, audio.samples.len()), (8000, 8000));
        // Same seed, same world.
        let again = base.join("again");
        write_world(&again, &cfg, &Threads::new(1).unwrap(), &mut ignore_progress).unwrap();
        for name in [TRIPLETS_FILE, TRUTH_JSON] {
            assert_eq!(
                std::fs::read(dir.join(name)).unwrap(),
                std::fs::read(again.join(name)).unwrap()
            );
        }
        // A directory without recordings is a clear error.
        cfg.source_audio = Some(base.join("world").join("audio").join("nothing"));
        assert!(write_world(&base.join("x"), &cfg, &Threads::new(1).unwrap(), &mut ignore_progress).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn writes_a_world_the_loaders_read_back() {
        let dir = std::env::temp_dir().join(format!("musrec-world-{}", std::process::id()));
        let cfg = WorldFilesConfig {
            nested_audio: true,
            ..micro(3)
        };
        let summary = write_world(&dir, &cfg, &Threads::new(2).unwrap(), &mut ignore_progress).unwrap();
        assert_eq!(summary.n_songs, 80);
        assert!(summary.songs_without_track > 0 && summary.songs_with_second_track > 0);

        let data = load(&dir, &LoadOptions::default(), &mut ignore_progress).unwrap();
        let r = &data.report;
        assert_eq!(r.triplets.malformed.count, 0);
        assert_eq!(r.audio.files, summary.audio_files);
        // Songs nobody played are not in the triplets, so the join sees at most the planted counts.
        assert!(r.join.songs <= summary.n_songs);
        assert!(r.join.songs_without_track <= summary.songs_without_track);
        assert!(r.join.songs_without_audio <= summary.songs_without_audio);
        assert_eq!(data.songs.len(), r.desparsify.songs_kept);
        assert!(
            data.songs
                .audio_path
                .iter()
                .all(|p| p.as_ref().is_some_and(|p| p.exists()))
        );
        // The audio decodes at the configured rate and length.
        let first = data.songs.audio_path[0].as_ref().unwrap();
        let audio = crate::audio::decode::load(first, None, 0.0, None).unwrap();
        assert_eq!((audio.sample_rate, audio.samples.len()), (8000, 4000));

        // Same seed, same bytes.
        let again = dir.with_extension("again");
        write_world(&again, &cfg, &Threads::new(1).unwrap(), &mut ignore_progress).unwrap();
        for name in [TRIPLETS_FILE, TRUTH_JSON, unique_tracks::FILE_NAME] {
            assert_eq!(
                std::fs::read(dir.join(name)).unwrap(),
                std::fs::read(again.join(name)).unwrap()
            );
        }
        assert_eq!(
            std::fs::read(first).unwrap(),
            std::fs::read(again.join(first.strip_prefix(&dir).unwrap())).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&again).unwrap();
    }

    #[test]
    fn every_audio_format_loads_back_and_repeats_byte_for_byte() {
        let compressed = AudioFormat::writable().into_iter().filter(|&f| f != AudioFormat::Wav);
        for audio_format in compressed {
            let ext = audio_format.extension();
            let dir = std::env::temp_dir().join(format!("musrec-world-{ext}-{}", std::process::id()));
            let mut cfg = WorldFilesConfig {
                audio_format,
                ..micro(4)
            };
            cfg.listening.n_songs = 30;
            let summary = write_world(&dir, &cfg, &Threads::new(2).unwrap(), &mut ignore_progress).unwrap();
            let data = load(&dir, &LoadOptions::default(), &mut ignore_progress).unwrap();
            assert_eq!(data.report.audio.files, summary.audio_files, "{ext}");
            let first = data.songs.audio_path[0].as_ref().unwrap();
            assert_eq!(first.extension().unwrap(), ext);
            let audio = crate::audio::decode::load(first, None, 0.0, None).unwrap();
            // Gapless: the LAME header and Ogg granule positions trim the codecs' padding.
            assert_eq!((audio.sample_rate, audio.samples.len()), (8000, 4000), "{ext}");

            let again = dir.with_extension("again");
            write_world(&again, &cfg, &Threads::new(1).unwrap(), &mut ignore_progress).unwrap();
            assert_eq!(
                std::fs::read(first).unwrap(),
                std::fs::read(again.join(first.strip_prefix(&dir).unwrap())).unwrap(),
                "{ext}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::remove_dir_all(&again).unwrap();
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (cfg, field) in [
            (
                WorldFilesConfig {
                    sample_rate: 10,
                    ..micro(0)
                },
                "sample_rate",
            ),
            (
                WorldFilesConfig {
                    duration: 0.0,
                    ..micro(0)
                },
                "duration",
            ),
            (
                WorldFilesConfig {
                    share_without_tags: 1.0,
                    ..micro(0)
                },
                "share_without_tags",
            ),
            (
                WorldFilesConfig {
                    content_noise: f64::NAN,
                    ..micro(0)
                },
                "content_noise",
            ),
            (
                WorldFilesConfig {
                    audio_format: AudioFormat::Mp3,
                    sample_rate: 10_000,
                    ..micro(0)
                },
                // without the feature, any MP3 setting fails first, naming the feature
                if cfg!(feature = "lame") { "sample_rate" } else { "lame" },
            ),
            (
                WorldFilesConfig {
                    audio_format: AudioFormat::Flac,
                    sample_rate: 192_000,
                    ..micro(0)
                },
                "sample_rate",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        assert!(WorldFilesConfig::preset("huge").is_err());
        for name in ["tiny", "small", "paper"] {
            WorldFilesConfig::preset(name).unwrap().validate().unwrap();
        }
    }
}
