//! A directory of audio previews named by track id (`TRAAABD128F429CF47.mp3`, also .wav,
//! .flac, .ogg), flat or nested in MSD-style folders (`A/A/B/TRAABD...mp3`): the walk is
//! recursive and only the file's stem matters.
//!
//! Nothing is decoded here (a corrupt file is found, counted and skipped by the audio
//! extraction); empty files are left out at once because they cannot be audio.

use super::Problems;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Extensions read as audio, in order of preference when a track has several files.
pub const AUDIO_EXTENSIONS: [&str; 4] = ["mp3", "wav", "flac", "ogg"];

/// The audio file of each track, sorted by track id.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AudioIndex {
    pub track_id: Vec<String>,
    pub path: Vec<PathBuf>,
    pub report: AudioIndexReport,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AudioIndexReport {
    /// Audio files found (by extension), before removing duplicates and empty files.
    pub files: usize,
    /// Files of a track that already has one (the preferred extension, then the first path
    /// in sorted order, is kept).
    pub duplicates: usize,
    /// Zero-byte files, left out.
    pub empty: Problems,
    /// Files with other extensions, and hidden files (temporary files of interrupted writes).
    pub ignored: usize,
    /// Folders that could not be read.
    pub unreadable: Problems,
}

impl AudioIndex {
    /// Track id -> position, for joins.
    pub fn positions(&self) -> HashMap<&str, usize> {
        self.track_id.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect()
    }
}

/// Index every audio file under `root`.
pub fn index(root: &Path) -> Result<AudioIndex> {
    match std::fs::metadata(root) {
        Err(e) => return Err(Error::io(root, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::invalid(format!(
                "{} is not a directory; expected a folder of audio files named by track id",
                root.display()
            )));
        }
        Ok(_) => {}
    }
    let mut report = AudioIndexReport::default();
    // (track id, preference, path)
    let mut found: Vec<(String, usize, PathBuf)> = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                report.unreadable.add(|| format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    report.unreadable.add(|| format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let path = entry.path();
            // Folder symlinks are not followed: a loop would never end.
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let extension = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            let preference = AUDIO_EXTENSIONS.iter().position(|&e| e == extension);
            let (Some(preference), Some(stem)) = (preference, path.file_stem()) else {
                report.ignored += 1;
                continue;
            };
            if name.starts_with('.') {
                report.ignored += 1;
                continue;
            }
            report.files += 1;
            if std::fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true) {
                report.empty.add(|| format!("{}: empty file", path.display()));
                continue;
            }
            found.push((stem.to_string_lossy().into_owned(), preference, path));
        }
    }
    found.sort_unstable();
    let mut index = AudioIndex::default();
    for (track, _, path) in found {
        if index.track_id.last() == Some(&track) {
            report.duplicates += 1;
            continue;
        }
        index.track_id.push(track);
        index.path.push(path);
    }
    index.report = report;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_folders_and_counts_odd_files() {
        let root = std::env::temp_dir().join(format!("musrec-audio-index-{}", std::process::id()));
        let nested = root.join("A").join("B");
        std::fs::create_dir_all(&nested).unwrap();
        for (dir, name, bytes) in [
            (&root, "TRB.mp3", 3usize),
            (&root, "TRB.wav", 3),
            (&nested, "TRA.FLAC", 3),
            (&nested, "TRC.ogg", 0),
            (&nested, "notes.txt", 3),
            (&root, ".TRD.wav.tmp-1.wav", 3),
        ] {
            std::fs::write(dir.join(name), vec![1u8; bytes]).unwrap();
        }
        let idx = index(&root).unwrap();
        assert_eq!(idx.track_id, ["TRA", "TRB"]);
        assert!(idx.path[0].ends_with("A/B/TRA.FLAC"));
        assert!(idx.path[1].ends_with("TRB.mp3"));
        let r = &idx.report;
        assert_eq!((r.files, r.duplicates, r.empty.count, r.ignored), (4, 1, 1, 2));
        assert!(matches!(index(&root.join("nope")).unwrap_err(), Error::NotFound(_)));
        assert!(matches!(
            index(&root.join("TRB.mp3")).unwrap_err(),
            Error::InvalidInput(_)
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
