//! The Last.fm dataset's `lastfm_tags.db`: SQLite tables `tids(tid)` (track ids),
//! `tags(tag)` (tag names) and `tid_tag(tid, tag, val)`, where `tid_tag.tid` and `.tag` are
//! rowids into the other two and `val` is Last.fm's 0-100 strength of the tag for the track.
//!
//! Read as a tracks x tags sparse matrix of strengths. References to rowids that do not exist
//! are counted and skipped; a (track, tag) pair given twice keeps its larger strength.

use super::{Problems, sqlite};
use crate::ensure;
use crate::error::Result;
use std::collections::HashMap;
use std::path::Path;

pub const FILE_NAME: &str = "lastfm_tags.db";

/// Tags of tracks: row `i` of (indptr, tag, value) holds the tags of `track_id[i]`, sorted by tag.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TrackTags {
    /// Every track of `tids`, in rowid order (some may have no tags).
    pub track_id: Vec<String>,
    /// Every tag of `tags`, in rowid order.
    pub tag_names: Vec<String>,
    pub indptr: Vec<i64>,
    pub tag: Vec<u32>,
    pub value: Vec<f32>,
    pub report: TagsReport,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TagsReport {
    /// Rows of `tid_tag`.
    pub rows: usize,
    /// Rows pointing at a tid or tag rowid that does not exist.
    pub dangling: Problems,
    /// Rows repeating a (track, tag) pair.
    pub duplicates: usize,
    /// Tracks of `tids` without any tag row.
    pub tracks_without_tags: usize,
}

impl TrackTags {
    /// The (tag indices, strengths) of track row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.indptr[i] as usize..self.indptr[i + 1] as usize;
        (&self.tag[r.clone()], &self.value[r])
    }
}

/// Read all of `path` (a `lastfm_tags.db`).
pub fn read(path: &Path) -> Result<TrackTags> {
    let conn = sqlite::open(
        path,
        FILE_NAME,
        &[
            ("tids", &["tid"]),
            ("tags", &["tag"]),
            ("tid_tag", &["tid", "tag", "val"]),
        ],
    )?;
    let failed = sqlite::failed(path);
    let names = |table: &str, column: &str| -> Result<(Vec<String>, HashMap<i64, u32>)> {
        let mut stmt = conn
            .prepare(&format!("SELECT rowid, {column} FROM {table} ORDER BY rowid"))
            .map_err(&failed)?;
        let mut rows = stmt.query([]).map_err(&failed)?;
        let (mut values, mut position) = (Vec::new(), HashMap::new());
        while let Some(row) = rows.next().map_err(&failed)? {
            let rowid: i64 = row.get(0).map_err(&failed)?;
            position.insert(rowid, values.len() as u32);
            values.push(sqlite::text(row, 1).map_err(&failed)?);
        }
        Ok((values, position))
    };
    let (track_id, track_position) = names("tids", "tid")?;
    let (tag_names, tag_position) = names("tags", "tag")?;

    let mut report = TagsReport::default();
    let mut entries: Vec<(u32, u32, f32)> = Vec::new();
    let mut stmt = conn.prepare("SELECT tid, tag, val FROM tid_tag").map_err(&failed)?;
    let mut rows = stmt.query([]).map_err(&failed)?;
    while let Some(row) = rows.next().map_err(&failed)? {
        report.rows += 1;
        let tid = sqlite::number(row, 0).map_err(&failed)?;
        let tag = sqlite::number(row, 1).map_err(&failed)?;
        let val = sqlite::number(row, 2).map_err(&failed)?.unwrap_or(0.0);
        let t = tid.and_then(|r| track_position.get(&(r as i64)));
        let g = tag.and_then(|r| tag_position.get(&(r as i64)));
        match (t, g) {
            (Some(&t), Some(&g)) => entries.push((t, g, val as f32)),
            _ => report.dangling.add(|| {
                format!(
                    "tid_tag row {}: tid {tid:?} / tag {tag:?} is not a rowid of tids / tags",
                    report.rows
                )
            }),
        }
    }
    entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.total_cmp(&a.2)));
    let mut indptr = vec![0i64; track_id.len() + 1];
    let (mut tag, mut value) = (Vec::with_capacity(entries.len()), Vec::with_capacity(entries.len()));
    let mut last = None;
    for (t, g, v) in entries {
        if last == Some((t, g)) {
            report.duplicates += 1; // sorted strongest first: the kept one is the larger
            continue;
        }
        last = Some((t, g));
        tag.push(g);
        value.push(v);
        indptr[t as usize + 1] += 1;
    }
    report.tracks_without_tags = indptr[1..].iter().filter(|&&n| n == 0).count();
    for i in 0..track_id.len() {
        indptr[i + 1] += indptr[i];
    }
    Ok(TrackTags {
        track_id,
        tag_names,
        indptr,
        tag,
        value,
        report,
    })
}

/// Write `tags` as a `lastfm_tags.db` with the Last.fm dataset's schema (rowids from 1).
pub fn write(path: &Path, tags: &TrackTags) -> Result<()> {
    let n = tags.track_id.len();
    ensure!(
        tags.indptr.len() == n + 1 && tags.indptr[n] as usize == tags.tag.len() && tags.tag.len() == tags.value.len(),
        "inconsistent track-tag matrix: {} tracks, indptr of length {}, {} tags, {} values",
        n,
        tags.indptr.len(),
        tags.tag.len(),
        tags.value.len()
    );
    ensure!(
        tags.tag.iter().all(|&g| (g as usize) < tags.tag_names.len()),
        "tag index out of range for {} tag names",
        tags.tag_names.len()
    );
    sqlite::write_atomic(path, |tx| {
        tx.execute_batch(
            "CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT); \
             CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);",
        )?;
        let mut insert = tx.prepare("INSERT INTO tids (rowid, tid) VALUES (?1, ?2)")?;
        for (i, t) in tags.track_id.iter().enumerate() {
            insert.execute(rusqlite::params![i as i64 + 1, t])?;
        }
        let mut insert = tx.prepare("INSERT INTO tags (rowid, tag) VALUES (?1, ?2)")?;
        for (i, t) in tags.tag_names.iter().enumerate() {
            insert.execute(rusqlite::params![i as i64 + 1, t])?;
        }
        let mut insert = tx.prepare("INSERT INTO tid_tag (tid, tag, val) VALUES (?1, ?2, ?3)")?;
        for i in 0..n {
            let (g, v) = tags.row(i);
            for (&g, &v) in g.iter().zip(v) {
                insert.execute(rusqlite::params![i as i64 + 1, i64::from(g) + 1, f64::from(v)])?;
            }
        }
        tx.execute_batch(
            "CREATE INDEX idx_tids ON tids (tid); CREATE INDEX idx_tags ON tags (tag); \
             CREATE INDEX idx_tid_tag_tid ON tid_tag (tid); CREATE INDEX idx_tid_tag_tag ON tid_tag (tag);",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_counts_dangling_rows() {
        let dir = std::env::temp_dir().join(format!("musrec-tags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let tags = TrackTags {
            track_id: s(&["TRA", "TRB", "TRC"]),
            tag_names: s(&["rock", "sad", "90s"]),
            indptr: vec![0, 2, 2, 3],
            tag: vec![0, 2, 1],
            value: vec![100.0, 7.5, 50.0],
            report: TagsReport::default(),
        };
        write(&path, &tags).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.track_id, tags.track_id);
        assert_eq!(back.tag_names, tags.tag_names);
        assert_eq!(
            (back.indptr.clone(), back.tag.clone(), back.value.clone()),
            (tags.indptr, tags.tag, tags.value)
        );
        assert_eq!(back.report.tracks_without_tags, 1);

        // Append rows pointing nowhere and a weaker duplicate.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("INSERT INTO tid_tag VALUES (99, 1, 1.0); INSERT INTO tid_tag VALUES (1, 42, 1.0); INSERT INTO tid_tag VALUES (1, 1, 3.0);")
            .unwrap();
        drop(conn);
        let back = read(&path).unwrap();
        assert_eq!(back.report.dangling.count, 2);
        assert_eq!(back.report.duplicates, 1);
        assert_eq!(back.row(0), (&[0u32, 2][..], &[100.0f32, 7.5][..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
