//! Real datasets, read as they come: the Echo Nest Taste Profile triplets, the Million Song
//! Dataset's `track_metadata.db` and `unique_tracks.txt`, the Last.fm tags database and a
//! directory of audio previews named by track id — then the explicit song <-> track joins and
//! the paper's de-sparsification. Each format module both reads and writes its format, so the
//! synthetic world and the test fixtures are written by the same code the loaders check.
//!
//! A dataset directory (the real MSD files and the synthetic world use the same layout):
//!
//! ```text
//! DIR/
//!   train_triplets.txt    user_id \t song_id \t play_count      (required)
//!   track_metadata.db     SQLite, table songs(track_id, song_id, artist_id, year, ...)
//!   unique_tracks.txt     track_id<SEP>song_id<SEP>artist_name<SEP>title
//!                         (at least one of these two maps songs to tracks)
//!   lastfm_tags.db        SQLite, tids / tags / tid_tag           (optional: no tags)
//!   audio/                <track_id>.{mp3,wav,flac,ogg}, nested folders allowed (required)
//! ```

pub mod audio_index;
pub mod dataset;
pub mod desparsify;
pub mod join;
pub mod metadata;
mod sqlite;
pub mod tags;
pub mod triplets;
pub mod unique_tracks;

/// How many malformed records a report quotes (with their line numbers); the rest are counted.
pub const QUOTED_PROBLEMS: usize = 5;

/// Problems met while reading a file that did not stop the reading: a count and the first few.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Problems {
    pub count: usize,
    /// "line N: what was wrong", at most [`QUOTED_PROBLEMS`] of them.
    pub first: Vec<String>,
}

impl Problems {
    pub fn add(&mut self, message: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < QUOTED_PROBLEMS {
            self.first.push(message());
        }
    }
}
