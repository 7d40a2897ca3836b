//! The Echo Nest Taste Profile `train_triplets.txt`: `user_id \t song_id \t play_count` per
//! line (48,373,586 lines, 1,019,318 users, 384,546 songs in the full file).
//!
//! The reader streams chunks of lines, parsed in parallel with per-chunk vocabularies that
//! are merged in file order; the triplets are kept as 12-byte (user, song, count) records
//! (~600 MB for the full file), then one in-place sort makes the users x songs CSR matrix. Malformed lines are counted and the
//! first few quoted with their line numbers; they stop the reading only in strict mode.

use super::{Problems, QUOTED_PROBLEMS};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::parallel::{Progress, Step};
use crate::sparse::{Csr, CsrRef};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The reader parses chunks of about this many bytes in parallel (progress is reported
/// after every batch of chunks).
const CHUNK_BYTES: usize = 32 << 20;

/// foldhash (hashbrown's own default hash: fast on short strings, well distributed), with a
/// fixed seed: the ids come from a file, not from an adversary.
type IdMap<K> = HashMap<K, u32, foldhash::fast::FixedState>;

/// String ids to dense indices in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    index: IdMap<Box<str>>,
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

    /// The index of each of `ids` (distinct), adding the new ones in order: as interning
    /// them one by one, but the lookups of the ones already known run in parallel.
    pub fn intern_all(&mut self, ids: &[&str]) -> Result<Vec<u32>> {
        let known: Vec<Option<u32>> = ids.par_iter().map(|id| self.index.get(*id).copied()).collect();
        ids.iter()
            .zip(known)
            .map(|(id, k)| match k {
                Some(i) => Ok(i),
                None => self.intern(id),
            })
            .collect()
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
///
/// The file is read in chunks of [`CHUNK_BYTES`] cut at line ends; a batch of chunks is
/// parsed in parallel (on the current rayon pool), each with vocabularies of its own, then
/// merged in file order, so ids are numbered by first appearance exactly as a line-by-line
/// reader numbers them, and the result does not depend on the number of threads.
pub fn read(path: &Path, strict: bool, progress: Progress<'_>) -> Result<Triplets> {
    read_chunked(path, strict, progress, CHUNK_BYTES)
}

fn read_chunked(path: &Path, strict: bool, progress: Progress<'_>, chunk_bytes: usize) -> Result<Triplets> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let total = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let (mut users, mut songs) = (Vocabulary::default(), Vocabulary::default());
    let mut records: Vec<(u32, u32, f32)> = Vec::with_capacity((total / 40).min(1 << 28));
    let mut report = TripletsReport::default();
    let batch = 2 * rayon::current_num_threads().max(1);
    let mut carry: Vec<u8> = Vec::new();
    let (mut done, mut at_end) = (0usize, false);
    while !at_end {
        // Read a batch of chunks, each ending at a line end (the last one at the file's end).
        let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(batch);
        while chunks.len() < batch && !at_end {
            let mut buf = std::mem::take(&mut carry);
            let start = buf.len();
            buf.resize(start + chunk_bytes, 0);
            let mut filled = start;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    at_end = true;
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            done += filled - start;
            if !at_end {
                match memchr::memrchr(b'\n', &buf) {
                    Some(last) => carry = buf.split_off(last + 1),
                    None => {
                        carry = buf; // one line longer than a chunk: read on
                        continue;
                    }
                }
            }
            if !buf.is_empty() {
                chunks.push(buf);
            }
        }
        let parsed: Vec<Chunk<'_>> = chunks.par_iter().map(|c| parse_chunk(c)).collect();
        for chunk in parsed {
            let before = report.lines;
            report.lines += chunk.lines;
            report.blank_lines += chunk.blank_lines;
            if let (true, Some((line, why))) = (strict, chunk.malformed.first()) {
                return Err(Error::format(path, format!("line {}: {why}", before + line)));
            }
            for (line, why) in &chunk.malformed {
                report.malformed.add(|| format!("line {}: {why}", before + line));
            }
            report.malformed.count += chunk.more_malformed;
            let user_map = users.intern_all(&chunk.users)?;
            let song_map = songs.intern_all(&chunk.songs)?;
            records.par_extend(
                chunk
                    .records
                    .par_iter()
                    .map(|&(u, s, c)| (user_map[u as usize], song_map[s as usize], c)),
            );
        }
        progress(Step {
            done,
            total: total.max(done),
            loss: None,
        })?;
    }
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

/// One chunk of lines parsed on its own: its ids in order of first appearance (borrowed
/// from the chunk), its records in those local indices, and its line counts.
struct Chunk<'a> {
    users: Vec<&'a str>,
    songs: Vec<&'a str>,
    records: Vec<(u32, u32, f32)>,
    lines: usize,
    blank_lines: usize,
    /// (1-based line within the chunk, why) of the first few malformed lines...
    malformed: Vec<(usize, String)>,
    /// ...and how many more there were.
    more_malformed: usize,
}

fn parse_chunk(text: &[u8]) -> Chunk<'_> {
    // About one distinct song per 100 bytes in the Taste Profile's shape; users are grouped.
    let mut users: IdMap<&str> = IdMap::with_capacity_and_hasher(text.len() / 2000, Default::default());
    let mut songs: IdMap<&str> = IdMap::with_capacity_and_hasher(text.len() / 100, Default::default());
    let mut chunk = Chunk {
        users: Vec::new(),
        songs: Vec::new(),
        records: Vec::with_capacity(text.len() / 40),
        lines: 0,
        blank_lines: 0,
        malformed: Vec::new(),
        more_malformed: 0,
    };
    // The real file is grouped by user: remember the last one and skip its hash lookup.
    let mut last_user: Option<(&str, u32)> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        chunk.lines += 1;
        match parse_line(line) {
            Ok(None) => chunk.blank_lines += 1,
            Ok(Some((user, song, count))) => {
                let u = match last_user {
                    Some((name, u)) if name == user => u,
                    _ => {
                        let next = chunk.users.len() as u32;
                        let u = *users.entry(user).or_insert_with(|| {
                            chunk.users.push(user);
                            next
                        });
                        last_user = Some((user, u));
                        u
                    }
                };
                let next = chunk.songs.len() as u32;
                let s = *songs.entry(song).or_insert_with(|| {
                    chunk.songs.push(song);
                    next
                });
                chunk.records.push((u, s, count as f32));
            }
            Err(why) if chunk.malformed.len() < QUOTED_PROBLEMS => chunk.malformed.push((chunk.lines, why)),
            Err(_) => chunk.more_malformed += 1,
        }
    }
    chunk
}

/// One line: `Ok(None)` when blank, the (user, song, count) record, or why it is malformed.
fn parse_line(line: &[u8]) -> std::result::Result<Option<(&str, &str, u32)>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut fields = text.split('\t');
    let (Some(user), Some(song), Some(count), None) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(format!(
            "expected 3 tab-separated fields (user, song, play count), found {}",
            text.split('\t').count()
        ));
    };
    let (user, song, count) = (user.trim(), song.trim(), count.trim());
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
    use crate::parallel::{ignore_progress, with_threads};

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

    /// Chunks cut anywhere (even inside a line, or smaller than one) give what one chunk
    /// gives: the same ids in the same order, counts, line numbers and strict error.
    #[test]
    fn chunked_reading_equals_one_chunk() {
        let mut text = String::new();
        for i in 0..300 {
            match i % 37 {
                5 => text.push_str("broken line\n"),
                9 => text.push('\n'),
                _ => text.push_str(&format!("user{}\tsong{}\t{}\n", i / 7, (i * 31) % 53, 1 + i % 4)),
            }
        }
        text.push_str("user0\tsong1\t2"); // no final line end
        let path = scratch("chunks", &text);
        let whole = read_chunked(&path, false, &mut ignore_progress, 1 << 20).unwrap();
        assert_eq!(whole.report.lines, 301);
        for chunk in [1, 7, 64, 1000] {
            let cut = with_threads(2, || read_chunked(&path, false, &mut ignore_progress, chunk))
                .unwrap()
                .unwrap();
            assert_eq!(cut, whole, "chunks of {chunk} bytes");
            let err = read_chunked(&path, true, &mut ignore_progress, chunk)
                .unwrap_err()
                .to_string();
            assert!(err.contains("line 6:"), "{err}");
        }
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
