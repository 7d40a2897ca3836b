//! The explicit joins from the Taste Profile's song ids to MSD tracks, their metadata, their
//! Last.fm tags and their audio files, with every miss counted.
//!
//! A song id may have several tracks (the MSD has duplicates of one recording). The choice is:
//! the song's tracks from `track_metadata.db` and `unique_tracks.txt` together, sorted by
//! track id; the first one with an audio file, or the first one when none has audio. The
//! metadata and tags are that track's.

use super::audio_index::AudioIndex;
use super::metadata::Tracks;
use super::tags::TrackTags;
use super::unique_tracks::UniqueTracks;
use crate::ensure;
use crate::error::Result;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// One row per song of the listening data (same order): its chosen track and what is known.
/// Unknown text is "", an unknown year 0, a missing audio file `None`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SongTable {
    pub song_id: Vec<String>,
    pub track_id: Vec<String>,
    pub audio_path: Vec<Option<PathBuf>>,
    pub artist_id: Vec<String>,
    pub artist_name: Vec<String>,
    pub title: Vec<String>,
    pub release: Vec<String>,
    pub year: Vec<i32>,
    pub duration: Vec<f32>,
    /// Tag vocabulary of the tag matrix below (only tags some song uses, in the order first used).
    pub tag_names: Vec<String>,
    /// Song x tag matrix of Last.fm strengths: row `i` is `tag[indptr[i]..indptr[i+1]]`.
    pub tag_indptr: Vec<i64>,
    pub tag: Vec<u32>,
    pub tag_value: Vec<f32>,
}

/// Counts of songs in the listening data, by what the joins could not find.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct JoinReport {
    pub songs: usize,
    /// Song ids that no track maps to (in neither track_metadata.db nor unique_tracks.txt).
    pub songs_without_track: usize,
    pub songs_with_several_tracks: usize,
    /// Songs whose chosen track has no row in track_metadata.db (or there is no such file).
    pub songs_without_metadata: usize,
    /// Songs without any audio file, including those without a track.
    pub songs_without_audio: usize,
    /// Songs whose chosen track has no tag of at least the minimum strength.
    pub songs_without_tags: usize,
    pub songs_with_unknown_year: usize,
    /// Audio files whose track is not the chosen track of any song.
    pub audio_files_unused: usize,
}

/// What the joins read from: at least one of `tracks` and `unique` maps songs to tracks.
pub struct Sources<'a> {
    pub tracks: Option<&'a Tracks>,
    pub unique: Option<&'a UniqueTracks>,
    pub tags: Option<&'a TrackTags>,
    pub audio: &'a AudioIndex,
    /// Tags weaker than this (Last.fm's 0-100 scale) are dropped.
    pub min_tag_value: f32,
}

pub fn join(song_ids: &[String], src: &Sources<'_>) -> Result<(SongTable, JoinReport)> {
    ensure!(
        src.tracks.is_some() || src.unique.is_some(),
        "joining songs to tracks needs track_metadata.db or unique_tracks.txt"
    );
    let mut tracks_of: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    if let Some(t) = src.tracks {
        for (track, song) in t.track_id.iter().zip(&t.song_id) {
            tracks_of.entry(song.as_str()).or_default().insert(track.as_str());
        }
    }
    if let Some(u) = src.unique {
        for (track, song) in u.track_id.iter().zip(&u.song_id) {
            tracks_of.entry(song.as_str()).or_default().insert(track.as_str());
        }
    }
    let metadata_row: HashMap<&str, usize> = src
        .tracks
        .map(|t| t.track_id.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect())
        .unwrap_or_default();
    let unique_row: HashMap<&str, usize> = src
        .unique
        .map(|u| u.track_id.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect())
        .unwrap_or_default();
    let tag_row: HashMap<&str, usize> = src
        .tags
        .map(|t| t.track_id.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect())
        .unwrap_or_default();
    let audio_row = src.audio.positions();

    let mut table = SongTable {
        tag_indptr: vec![0],
        ..SongTable::default()
    };
    let mut report = JoinReport {
        songs: song_ids.len(),
        ..JoinReport::default()
    };
    let mut audio_used = vec![false; src.audio.track_id.len()];
    // Source tag index -> index in the table's own (used-only) vocabulary.
    let mut tag_slot: HashMap<u32, u32> = HashMap::new();
    for song in song_ids {
        let candidates: Vec<&str> = tracks_of
            .get(song.as_str())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if candidates.is_empty() {
            report.songs_without_track += 1;
        }
        if candidates.len() > 1 {
            report.songs_with_several_tracks += 1;
        }
        let with_audio = candidates.iter().find(|t| audio_row.contains_key(*t));
        let track = with_audio.or(candidates.first()).copied().unwrap_or("");
        let audio = with_audio.map(|t| audio_row[*t]);
        if let Some(a) = audio {
            audio_used[a] = true;
        } else {
            report.songs_without_audio += 1;
        }
        table.song_id.push(song.clone());
        table.track_id.push(track.to_string());
        table.audio_path.push(audio.map(|a| src.audio.path[a].clone()));

        let (mut artist_id, mut artist_name, mut title, mut release) =
            (String::new(), String::new(), String::new(), String::new());
        let (mut year, mut duration) = (0, 0.0);
        if let (Some(t), Some(&i)) = (src.tracks, metadata_row.get(track)) {
            artist_id.clone_from(&t.artist_id[i]);
            artist_name.clone_from(&t.artist_name[i]);
            title.clone_from(&t.title[i]);
            release.clone_from(&t.release[i]);
            year = t.year[i];
            duration = t.duration[i];
        } else {
            if !track.is_empty() {
                report.songs_without_metadata += 1;
            }
            if let (Some(u), Some(&i)) = (src.unique, unique_row.get(track)) {
                artist_name.clone_from(&u.artist_name[i]);
                title.clone_from(&u.title[i]);
            }
        }
        if year == 0 {
            report.songs_with_unknown_year += 1;
        }
        table.artist_id.push(artist_id);
        table.artist_name.push(artist_name);
        table.title.push(title);
        table.release.push(release);
        table.year.push(year);
        table.duration.push(duration);

        let before = table.tag.len();
        if let (Some(t), Some(&i)) = (src.tags, tag_row.get(track)) {
            let (tags, values) = t.row(i);
            let mut row: Vec<(u32, f32)> = Vec::with_capacity(tags.len());
            for (&g, &v) in tags.iter().zip(values) {
                if v < src.min_tag_value {
                    continue;
                }
                let next = tag_slot.len() as u32;
                let slot = *tag_slot.entry(g).or_insert_with(|| {
                    table.tag_names.push(t.tag_names[g as usize].clone());
                    next
                });
                row.push((slot, v));
            }
            row.sort_unstable_by_key(|&(g, _)| g);
            for (g, v) in row {
                table.tag.push(g);
                table.tag_value.push(v);
            }
        }
        if table.tag.len() == before {
            report.songs_without_tags += 1;
        }
        table.tag_indptr.push(table.tag.len() as i64);
    }
    report.audio_files_unused = audio_used.iter().filter(|&&u| !u).count();
    Ok((table, report))
}

impl SongTable {
    pub fn len(&self) -> usize {
        self.song_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.song_id.is_empty()
    }

    pub fn has_audio(&self) -> Vec<bool> {
        self.audio_path.iter().map(Option::is_some).collect()
    }

    /// The rows `songs` (in that order); the tag vocabulary is kept whole.
    pub fn select(&self, songs: &[usize]) -> SongTable {
        let pick = |v: &Vec<String>| songs.iter().map(|&s| v[s].clone()).collect();
        let mut out = SongTable {
            song_id: pick(&self.song_id),
            track_id: pick(&self.track_id),
            audio_path: songs.iter().map(|&s| self.audio_path[s].clone()).collect(),
            artist_id: pick(&self.artist_id),
            artist_name: pick(&self.artist_name),
            title: pick(&self.title),
            release: pick(&self.release),
            year: songs.iter().map(|&s| self.year[s]).collect(),
            duration: songs.iter().map(|&s| self.duration[s]).collect(),
            tag_names: self.tag_names.clone(),
            tag_indptr: vec![0],
            ..SongTable::default()
        };
        for &s in songs {
            let r = self.tag_indptr[s] as usize..self.tag_indptr[s + 1] as usize;
            out.tag.extend_from_slice(&self.tag[r.clone()]);
            out.tag_value.extend_from_slice(&self.tag_value[r]);
            out.tag_indptr.push(out.tag.len() as i64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::audio_index::AudioIndex;
    use crate::data::tags::TrackTags;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn chooses_tracks_with_audio_and_counts_misses() {
        // SOA: two tracks, only the second has audio. SOB: track without audio, tags, year 0.
        // SOC: no track. SOD: only in unique_tracks (no metadata row), audio and a weak tag.
        let tracks = Tracks {
            track_id: strings(&["TRA1", "TRA2", "TRB"]),
            title: strings(&["a1", "a2", "b"]),
            song_id: strings(&["SOA", "SOA", "SOB"]),
            release: strings(&["", "", ""]),
            artist_id: strings(&["AR1", "AR1", "AR2"]),
            artist_mbid: strings(&["", "", ""]),
            artist_name: strings(&["one", "one", "two"]),
            duration: vec![1.0, 2.0, 3.0],
            artist_familiarity: vec![0.0; 3],
            artist_hotttnesss: vec![0.0; 3],
            year: vec![1990, 1991, 0],
            ..Tracks::default()
        };
        let unique = UniqueTracks {
            track_id: strings(&["TRD"]),
            song_id: strings(&["SOD"]),
            artist_name: strings(&["four"]),
            title: strings(&["d"]),
            ..UniqueTracks::default()
        };
        let tags = TrackTags {
            track_id: strings(&["TRA2", "TRD"]),
            tag_names: strings(&["rock", "sad", "jazz"]),
            indptr: vec![0, 2, 3],
            tag: vec![0, 2, 1],
            value: vec![100.0, 60.0, 5.0],
            ..TrackTags::default()
        };
        let audio = AudioIndex {
            track_id: strings(&["TRA2", "TRD", "TRZ"]),
            path: vec!["a/TRA2.mp3".into(), "TRD.wav".into(), "TRZ.mp3".into()],
            ..AudioIndex::default()
        };
        let src = Sources {
            tracks: Some(&tracks),
            unique: Some(&unique),
            tags: Some(&tags),
            audio: &audio,
            min_tag_value: 10.0,
        };
        let songs = strings(&["SOA", "SOB", "SOC", "SOD"]);
        let (table, report) = join(&songs, &src).unwrap();
        assert_eq!(table.track_id, ["TRA2", "TRB", "", "TRD"]);
        assert_eq!(table.has_audio(), [true, false, false, true]);
        assert_eq!(table.year, [1991, 0, 0, 0]);
        assert_eq!(table.artist_name, ["one", "two", "", "four"]);
        assert_eq!(table.tag_names, ["rock", "jazz"]);
        assert_eq!(table.tag_indptr, [0, 2, 2, 2, 2]);
        assert_eq!(
            report,
            JoinReport {
                songs: 4,
                songs_without_track: 1,
                songs_with_several_tracks: 1,
                songs_without_metadata: 1,
                songs_without_audio: 2,
                songs_without_tags: 3,
                songs_with_unknown_year: 3,
                audio_files_unused: 1,
            }
        );
        let sub = table.select(&[3, 0]);
        assert_eq!(sub.song_id, ["SOD", "SOA"]);
        assert_eq!(sub.tag_indptr, [0, 0, 2]);

        let none = Sources {
            tracks: None,
            unique: None,
            ..src
        };
        assert!(join(&songs, &none).is_err());
    }
}
