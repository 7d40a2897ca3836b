//! The Echo Nest Taste Profile `train_triplets.txt`: `user_id \t song_id \t play_count` per
//! line (48,373,586 lines, 1,019,318 users, 384,546 songs in the full file).
//!
//! The reader streams: one reusable line buffer, string ids interned once into vocabularies,
//! the triplets kept as 12-byte (user, song, count) records (~600 MB for the full file), then
//! one in-place sort into a users x songs CSR matrix. Malformed lines are counted and the
//! first few quoted with their line numbers; they stop the reading only in strict mode.

use super::Problems;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::parallel::{Progress, Step};
use crate::sparse::{Csr, CsrRef};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Report progress after about this many bytes (and at the end).
const PROGRESS_BYTES: usize = 16 << 20;

/// String ids to dense indices in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    index: HashMap<Box<str>, u32>,
}

impl Vocabulary {
    /// The index of `id`, adding it if new. Indices stay below i32::MAX, the CSR's limit.
    pub fn intern(&mut self, id: &str) -> Result<u32> {
        if let Some(&i) = self.index.get(id) {
            return Ok(i);
        }
        let i = self.index.len();
        if i >= i32::MAX as usize {
            return Err(Error::invalid(format!("more than {} distinct ids", i32::MAX)));
        }
        self.index.insert(id.into(), i as u32);
        Ok(i as u32)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The ids ordered by index (moves the strings, no copies).
    pub fn into_ids(self) -> Vec<String> {
        let mut pairs: Vec<(u32, Box<str>)> = self.index.into_iter().map(|(k, v)| (v, k)).collect();
        pairs.sort_unstable_by_key(|&(v, _)| v);
        pairs.into_iter().map(|(_, k)| k.into_string()).collect()
    }
}

/// What the reader saw besides the plays it kept.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TripletsReport {
    /// Lines in the file, blank ones included.
    pub lines: usize,
    /// Well-formed lines (each one (user, song, count) record).
    pub records: usize,
    pub blank_lines: usize,
    /// Lines with the wrong number of fields, an empty id, or a count that is not a positive
    /// integer; they are skipped.
    pub malformed: Problems,
    /// Records whose (user, song) pair appeared before; their counts are summed.
    pub duplicates: usize,
}

/// A Taste Profile file as a users x songs play-count matrix with its id vocabularies.
#[derive(Clone, Debug, PartialEq)]
pub struct Triplets {
    pub plays: Csr,
    pub user_ids: Vec<String>,
    pub song_ids: Vec<String>,
    pub report: TripletsReport,
}

/// Read `path`. `strict` makes the first malformed line an error instead of a count.
pub fn read(path: &Path, strict: bool, progress: Progress<'_>) -> Result<Triplets> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let total = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut users, mut songs) = (Vocabulary::default(), Vocabulary::default());
    let mut records: Vec<(u32, u32, f32)> = Vec::new();
    let mut report = TripletsReport::default();
    let mut line = Vec::with_capacity(128);
    // The real file is grouped by user: remember the last one and skip its hash lookup.
    let mut last_user: (Vec<u8>, u32) = (Vec::new(), 0);
    let (mut done, mut reported) = (0usize, 0usize);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        done += n;
        report.lines += 1;
        match parse_line(&line) {
            Ok(None) => report.blank_lines += 1,
            Ok(Some((user, song, count))) => {
                let u = if !records.is_empty() && last_user.0 == user.as_bytes() {
                    last_user.1
                } else {
                    let u = users.intern(user)?;
                    last_user = (user.as_bytes().to_vec(), u);
                    u
                };
                records.push((u, songs.intern(song)?, count as f32));
            }
            Err(why) => {
                if strict {
                    return Err(Error::format(path, format!("line {}: {why}", report.lines)));
                }
                report.malformed.add(|| format!("line {}: {why}", report.lines));
            }
        }
        if done - reported >= PROGRESS_BYTES {
            reported = done;
            progress(Step {
                done,
                total,
                loss: None,
            })?;
        }
    }
    progress(Step {
        done,
        total: total.max(done),
        loss: None,
    })?;
    report.records = records.len();
    if records.is_empty() {
        let detail = match report.malformed.first.first() {
            Some(first) => format!(" ({} malformed lines; {first})", report.malformed.count),
            None => String::new(),
        };
        return Err(Error::format(
            path,
            format!("no user\\tsong\\tplay_count lines{detail}"),
        ));
    }
    let plays = Csr::from_triplet_vec(users.len(), songs.len(), records)?;
    report.duplicates = report.records - plays.indices.len();
    Ok(Triplets {
        plays,
        user_ids: users.into_ids(),
        song_ids: songs.into_ids(),
        report,
    })
}

/// One line: `Ok(None)` when blank, the (user, song, count) record, or why it is malformed.
fn parse_line(line: &[u8]) -> std::result::Result<Option<(&str, &str, u32)>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = text.split('\t').collect();
    if fields.len() != 3 {
        return Err(format!(
            "expected 3 tab-separated fields (user, song, play count), found {}",
            fields.len()
        ));
    }
    let (user, song, count) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
    if user.is_empty() || song.is_empty() {
        return Err("empty user or song id".to_string());
    }
    match count.parse::<u32>() {
        Ok(c) if c > 0 => Ok(Some((user, song, c))),
        _ => Err(format!("play count {count:?} is not a positive integer")),
    }
}

/// Write `plays` (users x songs, integer counts) in the Taste Profile format, row by row.
pub fn write(path: &Path, plays: CsrRef<'_>, user_ids: &[String], song_ids: &[String]) -> Result<()> {
    crate::ensure!(
        user_ids.len() == plays.n_rows && song_ids.len() == plays.n_cols,
        "{} user ids and {} song ids for a {} x {} matrix",
        user_ids.len(),
        song_ids.len(),
        plays.n_rows,
        plays.n_cols
    );
    write_atomic(path, |w| {
        for (u, user) in user_ids.iter().enumerate() {
            let (songs, counts) = plays.row(u);
            for (&s, &c) in songs.iter().zip(counts) {
                writeln!(w, "{user}\t{}\t{}", song_ids[s as usize], c.round() as u64)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::ignore_progress;

    fn scratch(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("musrec-triplets-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train_triplets.txt");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_counts_and_reports_malformed_lines() {
        let text =
            "u1\tS1\t3\nu1\tS2\t1\r\n\nu2\tS1\t2\nu2\tS1\t5\nbad line\nu3\tS3\t0\nu3\t\t4\nu3\tS3\tx\nu3\tS3\t1\t9\n";
        let path = scratch("ok", text);
        let t = read(&path, false, &mut ignore_progress).unwrap();
        assert_eq!(t.user_ids, ["u1", "u2"]);
        assert_eq!(t.song_ids, ["S1", "S2"]);
        assert_eq!(t.plays.indptr, [0, 2, 3]);
        assert_eq!(t.plays.indices, [0, 1, 0]);
        assert_eq!(t.plays.data, [3.0, 1.0, 7.0]);
        let r = &t.report;
        assert_eq!((r.lines, r.records, r.blank_lines, r.duplicates), (10, 4, 1, 1));
        assert_eq!(r.malformed.count, 5);
        assert!(r.malformed.first[0].starts_with("line 6:"), "{:?}", r.malformed.first);
        assert!(r.malformed.first[1].contains("\"0\""));

        let err = read(&path, true, &mut ignore_progress).unwrap_err().to_string();
        assert!(err.contains("line 6") && err.contains("train_triplets.txt"), "{err}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn write_then_read_round_trips() {
        let path = scratch("round", "");
        let plays = Csr::from_triplets(2, 3, &[(0, 2, 4.0), (1, 0, 1.0), (1, 1, 12.0)]).unwrap();
        let users = vec!["a".to_string(), "b".to_string()];
        let songs = vec!["x".to_string(), "y".to_string(), "z".to_string()];
        write(&path, plays.view(), &users, &songs).unwrap();
        let t = read(&path, true, &mut ignore_progress).unwrap();
        // Songs are numbered by first appearance: z, x, y.
        assert_eq!(t.song_ids, ["z", "x", "y"]);
        assert_eq!(t.plays.data, [4.0, 1.0, 12.0]);
        assert_eq!(t.plays.indices, [0, 1, 2]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn empty_or_missing_files_are_clear_errors() {
        let path = scratch("empty", "garbage\n");
        let err = read(&path, false, &mut ignore_progress).unwrap_err().to_string();
        assert!(err.contains("no user") && err.contains("line 1"), "{err}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        let err = read(
            Path::new("/nonexistent/train_triplets.txt"),
            false,
            &mut ignore_progress,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
    }
}
