//! A dataset directory (see the layout in `data/mod.rs`) read whole: triplets, song <-> track
//! joins, metadata, tags and audio files, then de-sparsified, with one report of everything
//! that was missing or malformed along the way.

use super::audio_index::{self, AudioIndexReport};
use super::desparsify::{DesparsifyReport, desparsify};
use super::join::{self, JoinReport, SongTable, Sources};
use super::tags::TagsReport;
use super::triplets::TripletsReport;
use super::{Problems, metadata, tags, triplets, unique_tracks};
use crate::error::{Error, Result};
use crate::parallel::Progress;
use crate::sparse::Csr;
use std::path::{Path, PathBuf};

pub const TRIPLETS_FILE: &str = "train_triplets.txt";
pub const AUDIO_DIR: &str = "audio";

/// The files of a dataset directory; optional ones are `None` when absent.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub triplets: PathBuf,
    pub metadata: Option<PathBuf>,
    pub unique_tracks: Option<PathBuf>,
    pub tags: Option<PathBuf>,
    pub audio: PathBuf,
}

impl Layout {
    /// Find the files under `dir`, failing with the path of the first required one missing.
    pub fn of(dir: &Path) -> Result<Layout> {
        match std::fs::metadata(dir) {
            Err(e) => return Err(Error::io(dir, e)),
            Ok(m) if !m.is_dir() => {
                return Err(Error::invalid(format!(
                    "{} is not a directory; expected a dataset folder with {TRIPLETS_FILE}, \
                     {}, {} and {AUDIO_DIR}/",
                    dir.display(),
                    metadata::FILE_NAME,
                    tags::FILE_NAME
                )));
            }
            Ok(_) => {}
        }
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
        let triplets = dir.join(TRIPLETS_FILE);
        if !triplets.exists() {
            return Err(Error::NotFound(triplets));
        }
        let (metadata, unique_tracks) = (present(metadata::FILE_NAME), present(unique_tracks::FILE_NAME));
        if metadata.is_none() && unique_tracks.is_none() {
            // Either file maps songs to tracks; name both.
            return Err(Error::NotFound(dir.join(format!(
                "{} (or {})",
                metadata::FILE_NAME,
                unique_tracks::FILE_NAME
            ))));
        }
        let audio = dir.join(AUDIO_DIR);
        if !audio.is_dir() {
            return Err(Error::NotFound(audio));
        }
        Ok(Layout {
            triplets,
            metadata,
            unique_tracks,
            tags: present(tags::FILE_NAME),
            audio,
        })
    }
}

/// How to read and reduce a dataset.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Keep at most this many users / songs (`None`: no limit). The paper: 10,000 x 50,000.
    pub n_users: Option<usize>,
    pub n_songs: Option<usize>,
    /// De-sparsification rounds (see `desparsify`).
    pub rounds: usize,
    /// Keep only songs with an audio file (the paper's choice; needed for the audio model).
    pub require_audio: bool,
    /// A malformed triplet line is an error rather than a count.
    pub strict: bool,
    /// Last.fm tags weaker than this (0-100) are dropped.
    pub min_tag_value: f32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            n_users: None,
            n_songs: None,
            rounds: 1,
            require_audio: true,
            strict: false,
            min_tag_value: 0.0,
        }
    }
}

/// Everything that was skipped, missing or malformed while loading.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DatasetReport {
    pub triplets: TripletsReport,
    pub metadata_rows_skipped: Problems,
    pub unique_tracks_malformed: Problems,
    pub tags: Option<TagsReport>,
    pub audio: AudioIndexReport,
    pub join: JoinReport,
    pub desparsify: DesparsifyReport,
    /// Plain-language notes on optional inputs that were absent.
    pub notes: Vec<String>,
}

/// A loaded dataset: kept users x kept songs play counts and what is known of each song.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub plays: Csr,
    pub user_ids: Vec<String>,
    pub songs: SongTable,
    pub report: DatasetReport,
}

/// Read the dataset in `dir`; `progress` follows the triplets file in bytes.
pub fn load(dir: &Path, options: &LoadOptions, progress: Progress<'_>) -> Result<Dataset> {
    let layout = Layout::of(dir)?;
    let mut report = DatasetReport::default();
    let tracks = layout.metadata.as_deref().map(metadata::read).transpose()?;
    let unique = layout.unique_tracks.as_deref().map(unique_tracks::read).transpose()?;
    let track_tags = layout.tags.as_deref().map(tags::read).transpose()?;
    let audio = audio_index::index(&layout.audio)?;
    if track_tags.is_none() {
        report.notes.push(format!(
            "no {} in {}: songs have no tags",
            tags::FILE_NAME,
            dir.display()
        ));
    }
    if audio.track_id.is_empty() {
        report.notes.push(format!(
            "no audio files in {} (expected <track_id>.mp3/.wav/.flac/.ogg)",
            layout.audio.display()
        ));
    }
    let listening = triplets::read(&layout.triplets, options.strict, progress)?;
    let sources = Sources {
        tracks: tracks.as_ref(),
        unique: unique.as_ref(),
        tags: track_tags.as_ref(),
        audio: &audio,
        min_tag_value: options.min_tag_value,
    };
    let (table, join_report) = join::join(&listening.song_ids, &sources)?;
    let eligible = if options.require_audio {
        table.has_audio()
    } else {
        vec![true; table.len()]
    };
    let reduced = desparsify(
        listening.plays.view(),
        &eligible,
        options.n_users.unwrap_or(usize::MAX),
        options.n_songs.unwrap_or(usize::MAX),
        options.rounds,
    )?;
    if reduced.songs.is_empty() {
        return Err(Error::invalid(format!(
            "no song of {} is left{}: {} of {} songs have no audio file under {}",
            layout.triplets.display(),
            if options.require_audio { " with audio" } else { "" },
            join_report.songs_without_audio,
            join_report.songs,
            layout.audio.display()
        )));
    }
    report.triplets = listening.report;
    report.metadata_rows_skipped = tracks.map(|t| t.skipped).unwrap_or_default();
    report.unique_tracks_malformed = unique.map(|u| u.malformed).unwrap_or_default();
    report.tags = track_tags.map(|t| t.report);
    report.audio = audio.report;
    report.join = join_report;
    report.desparsify = reduced.report;
    let user_ids = reduced.users.iter().map(|&u| listening.user_ids[u].clone()).collect();
    Ok(Dataset {
        plays: reduced.plays,
        user_ids,
        songs: table.select(&reduced.songs),
        report,
    })
}
