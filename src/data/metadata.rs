//! The MSD `track_metadata.db`: SQLite, one row per track in
//! `songs(track_id, title, song_id, release, artist_id, artist_mbid, artist_name, duration,
//! artist_familiarity, artist_hotttnesss, year)`, `year` 0 when unknown.
//!
//! Read into columns (one Vec per field) because that is what the joins and Python want, and
//! it keeps a million tracks compact. NULL text reads as "", NULL or non-numeric numbers as 0.

use super::{Problems, sqlite};
use crate::ensure;
use crate::error::Result;
use std::path::Path;

pub const FILE_NAME: &str = "track_metadata.db";
const COLUMNS: [&str; 11] = [
    "track_id",
    "title",
    "song_id",
    "release",
    "artist_id",
    "artist_mbid",
    "artist_name",
    "duration",
    "artist_familiarity",
    "artist_hotttnesss",
    "year",
];

/// The tracks of a metadata database, column by column, in `track_id` order.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Tracks {
    pub track_id: Vec<String>,
    pub title: Vec<String>,
    pub song_id: Vec<String>,
    pub release: Vec<String>,
    pub artist_id: Vec<String>,
    pub artist_mbid: Vec<String>,
    pub artist_name: Vec<String>,
    /// Seconds.
    pub duration: Vec<f32>,
    pub artist_familiarity: Vec<f32>,
    pub artist_hotttnesss: Vec<f32>,
    /// 0 when unknown, as in the MSD.
    pub year: Vec<i32>,
    /// Rows skipped for an empty track or song id.
    pub skipped: Problems,
}

impl Tracks {
    pub fn len(&self) -> usize {
        self.track_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.track_id.is_empty()
    }
}

/// Read every track of `path` (a `track_metadata.db`).
pub fn read(path: &Path) -> Result<Tracks> {
    let conn = sqlite::open(path, FILE_NAME, &[("songs", &COLUMNS)])?;
    let sql = format!("SELECT {} FROM songs ORDER BY track_id", COLUMNS.join(", "));
    let mut stmt = conn.prepare(&sql).map_err(sqlite::failed(path))?;
    let mut rows = stmt.query([]).map_err(sqlite::failed(path))?;
    let mut t = Tracks::default();
    let mut row_number = 0usize;
    while let Some(row) = rows.next().map_err(sqlite::failed(path))? {
        row_number += 1;
        let read_row = || -> rusqlite::Result<_> {
            let text = |i| sqlite::text(row, i);
            let number = |i| sqlite::number(row, i).map(|v| v.unwrap_or(0.0));
            Ok((
                [text(0)?, text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?],
                [number(7)?, number(8)?, number(9)?, number(10)?],
            ))
        };
        let ([track_id, title, song_id, release, artist_id, artist_mbid, artist_name], numbers) =
            read_row().map_err(sqlite::failed(path))?;
        if track_id.trim().is_empty() || song_id.trim().is_empty() {
            t.skipped
                .add(|| format!("row {row_number}: empty track_id or song_id ({track_id:?}, {song_id:?})"));
            continue;
        }
        t.track_id.push(track_id);
        t.title.push(title);
        t.song_id.push(song_id);
        t.release.push(release);
        t.artist_id.push(artist_id);
        t.artist_mbid.push(artist_mbid);
        t.artist_name.push(artist_name);
        t.duration.push(numbers[0] as f32);
        t.artist_familiarity.push(numbers[1] as f32);
        t.artist_hotttnesss.push(numbers[2] as f32);
        // Years are small integers; anything else (negative, fractional junk) is unknown.
        let year = numbers[3];
        t.year.push(if (1.0..10_000.0).contains(&year) {
            year as i32
        } else {
            0
        });
    }
    Ok(t)
}

/// Write `tracks` as a `track_metadata.db` with the MSD's schema.
pub fn write(path: &Path, tracks: &Tracks) -> Result<()> {
    let n = tracks.len();
    for (name, len) in [
        ("title", tracks.title.len()),
        ("song_id", tracks.song_id.len()),
        ("release", tracks.release.len()),
        ("artist_id", tracks.artist_id.len()),
        ("artist_mbid", tracks.artist_mbid.len()),
        ("artist_name", tracks.artist_name.len()),
        ("duration", tracks.duration.len()),
        ("artist_familiarity", tracks.artist_familiarity.len()),
        ("artist_hotttnesss", tracks.artist_hotttnesss.len()),
        ("year", tracks.year.len()),
    ] {
        ensure!(len == n, "{name} has {len} values for {n} tracks");
    }
    sqlite::write_atomic(path, |tx| {
        tx.execute_batch(
            "CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, release text, \
             artist_id text, artist_mbid text, artist_name text, duration real, \
             artist_familiarity real, artist_hotttnesss real, year int)",
        )?;
        let mut insert = tx.prepare("INSERT INTO songs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?;
        for i in 0..n {
            insert.execute(rusqlite::params![
                tracks.track_id[i],
                tracks.title[i],
                tracks.song_id[i],
                tracks.release[i],
                tracks.artist_id[i],
                tracks.artist_mbid[i],
                tracks.artist_name[i],
                f64::from(tracks.duration[i]),
                f64::from(tracks.artist_familiarity[i]),
                f64::from(tracks.artist_hotttnesss[i]),
                tracks.year[i],
            ])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("musrec-metadata-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> Tracks {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Tracks {
            track_id: s(&["TRB", "TRA"]),
            title: s(&["b", "a"]),
            song_id: s(&["SOB", "SOA"]),
            release: s(&["r", ""]),
            artist_id: s(&["AR1", "AR2"]),
            artist_mbid: s(&["", ""]),
            artist_name: s(&["One", "Two"]),
            duration: vec![200.5, 31.0],
            artist_familiarity: vec![0.5, 0.25],
            artist_hotttnesss: vec![0.1, 0.2],
            year: vec![0, 1999],
            skipped: Problems::default(),
        }
    }

    #[test]
    fn round_trips_sorted_by_track_id() {
        let dir = scratch("round");
        let path = dir.join(FILE_NAME);
        write(&path, &sample()).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.track_id, ["TRA", "TRB"]);
        assert_eq!(t.song_id, ["SOA", "SOB"]);
        assert_eq!(t.year, [1999, 0]);
        assert_eq!(t.duration, [31.0, 200.5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_files_are_format_errors() {
        let dir = scratch("bad");
        let junk = dir.join("junk.db");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        let err = read(&junk).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("junk.db"), "{err}");

        let other = dir.join("other.db");
        sqlite::write_atomic(&other, |tx| tx.execute_batch("CREATE TABLE t (x int)")).unwrap();
        let err = read(&other).unwrap_err().to_string();
        assert!(err.contains("no table \"songs\""), "{err}");

        assert!(matches!(read(&dir.join("missing.db")).unwrap_err(), Error::NotFound(_)));
        assert!(matches!(read(&dir).unwrap_err(), Error::InvalidInput(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
