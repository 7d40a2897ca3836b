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

/// An id of at most 23 bytes (the Taste Profile's 18-byte song ids), padded, with its
/// length in the last byte: stored in the hash table itself, so a lookup compares 24 bytes
/// in place instead of following a pointer to the id's text, a cache miss per lookup on a
/// table of 400k songs. Longer ids are keyed by their text.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Inline([u64; 3]);

impl Inline {
    const MAX: usize = 23;

    fn new(id: &str) -> Option<Inline> {
        let n = id.len();
        if n > Self::MAX {
            return None;
        }
        let mut b = [0u8; 24];
        b[..n].copy_from_slice(id.as_bytes());
        b[23] = n as u8;
        let word = |i: usize| u64::from_le_bytes(b[i * 8..(i + 1) * 8].try_into().expect("8 bytes"));
        Some(Inline([word(0), word(1), word(2)]))
    }

    fn text(self) -> String {
        let mut b = [0u8; 24];
        for (i, w) in self.0.iter().enumerate() {
            b[i * 8..(i + 1) * 8].copy_from_slice(&w.to_le_bytes());
        }
        // Built from a &str, so valid UTF-8: the lossy conversion never replaces anything.
        String::from_utf8_lossy(&b[..b[23] as usize]).into_owned()
    }
}

impl std::hash::Hash for Inline {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.iter().for_each(|&w| h.write_u64(w));
    }
}

/// [`Inline`] ids to indices: open addressing with linear probing, at most 3/4 full, slots
/// of 32 bytes (the id's three words, then its index + 1; 0 marks an empty slot, so a fresh
/// table is zeroed memory the kernel maps lazily). An id's first slot is known from its hash
/// before the lookup, so the reader prefetches it lines ahead ([`IdIndex::prefetch`]): on the
/// Taste Profile's 384k songs, the lookups' cache misses were 39% of the reading.
#[derive(Clone, Debug)]
struct InlineTable {
    words: Vec<u64>,
    len: usize,
}

/// An id's [`Inline`] form and hash, or its text when it is too long to be inline.
#[derive(Clone, Copy)]
enum Probe<'a> {
    Short(Inline, usize),
    Long(&'a str),
}

impl<'a> Probe<'a> {
    fn new(id: &'a str) -> Probe<'a> {
        match Inline::new(id) {
            Some(k) => Probe::Short(k, k.hash_value()),
            None => Probe::Long(id),
        }
    }
}

impl Inline {
    fn hash_value(self) -> usize {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::default().hash_one(self) as usize
    }
}

impl InlineTable {
    fn with_capacity(n: usize) -> InlineTable {
        InlineTable::with_slots((n.saturating_mul(4) / 3 + 1).next_power_of_two().max(16))
    }

    fn with_slots(slots: usize) -> InlineTable {
        InlineTable {
            words: vec![0; slots * 4],
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.words.len() / 4 - 1
    }

    fn slot(&self, i: usize) -> &[u64] {
        &self.words[i * 4..i * 4 + 4]
    }

    /// Where `key` is (`Ok(index)`) or the empty slot where it would go (`Err(slot)`).
    fn find(&self, key: Inline, hash: usize) -> std::result::Result<u32, usize> {
        let mask = self.mask();
        let mut i = hash & mask;
        loop {
            let slot = self.slot(i);
            if slot[3] == 0 {
                return Err(i);
            }
            if slot[..3] == key.0 {
                return Ok(slot[3] as u32 - 1);
            }
            i = (i + 1) & mask;
        }
    }

    fn prefetch(&self, hash: usize) {
        crate::kernels::prefetch(self.slot(hash & self.mask()));
    }

    fn get(&self, key: Inline, hash: usize) -> Option<u32> {
        self.find(key, hash).ok()
    }

    /// The index of `key`, or `next` after inserting it.
    fn get_or_insert(&mut self, key: Inline, hash: usize, next: u32) -> u32 {
        let mut at = match self.find(key, hash) {
            Ok(index) => return index,
            Err(at) => at,
        };
        if (self.len + 1) * 4 > (self.mask() + 1) * 3 {
            self.grow();
            at = self.find(key, hash).expect_err("a new key");
        }
        self.put(at, key, next);
        next
    }

    fn put(&mut self, at: usize, key: Inline, index: u32) {
        self.words[at * 4..at * 4 + 3].copy_from_slice(&key.0);
        self.words[at * 4 + 3] = index as u64 + 1;
        self.len += 1;
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, InlineTable::with_slots(2 * (self.mask() + 1)));
        for (key, index) in old.iter() {
            let at = self.find(key, key.hash_value()).expect_err("distinct keys");
            self.put(at, key, index);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = (Inline, u32)> + '_ {
        self.words
            .chunks_exact(4)
            .filter(|s| s[3] != 0)
            .map(|s| (Inline([s[0], s[1], s[2]]), s[3] as u32 - 1))
    }
}

/// Ids to dense indices, short ids inline ([`Inline`]), long ones by `K` (their text).
#[derive(Clone, Debug)]
struct IdIndex<K> {
    short: InlineTable,
    long: IdMap<K>,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

impl<K> Default for IdIndex<K> {
    fn default() -> Self {
        IdIndex::with_capacity(0)
    }
}

impl<K> IdIndex<K> {
    fn with_capacity(n: usize) -> Self {
        IdIndex {
            short: InlineTable::with_capacity(n),
            long: IdMap::with_hasher(Default::default()),
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }
}

impl<K: std::borrow::Borrow<str> + std::hash::Hash + Eq> IdIndex<K> {
    fn get(&self, id: &str) -> Option<u32> {
        self.get_probe(Probe::new(id))
    }

    fn get_probe(&self, probe: Probe<'_>) -> Option<u32> {
        match probe {
            Probe::Short(k, hash) => self.short.get(k, hash),
            Probe::Long(id) => self.long.get(id).copied(),
        }
    }

    /// Start loading the slot a lookup of `probe` reads first (short ids only).
    fn prefetch(&self, probe: Probe<'_>) {
        if let Probe::Short(_, hash) = probe {
            self.short.prefetch(hash);
        }
    }

    /// The index of `id`, or `next` after inserting it (`key` makes the long-id key).
    fn get_or_insert(&mut self, id: &str, next: u32, key: impl FnOnce() -> K) -> u32 {
        match Probe::new(id) {
            Probe::Short(k, hash) => self.short.get_or_insert(k, hash, next),
            Probe::Long(id) => match self.long.get(id) {
                Some(&i) => i,
                None => *self.long.entry(key()).or_insert(next),
            },
        }
    }
}

/// String ids to dense indices in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    index: IdIndex<Box<str>>,
}

impl Vocabulary {
    /// The index of `id`, adding it if new. Indices stay below i32::MAX, the CSR's limit.
    pub fn intern(&mut self, id: &str) -> Result<u32> {
        let next = self.index.len();
        if next >= i32::MAX as usize {
            return self
                .index
                .get(id)
                .ok_or_else(|| Error::invalid(format!("more than {} distinct ids", i32::MAX)));
        }
        Ok(self.index.get_or_insert(id, next as u32, || id.into()))
    }

    /// The index of each of `ids` (distinct), adding the new ones in order: as interning
    /// them one by one, but the lookups of the ones already known run in parallel.
    pub fn intern_all(&mut self, ids: &[&str]) -> Result<Vec<u32>> {
        let known: Vec<Option<u32>> = ids.par_iter().map(|id| self.index.get(id)).collect();
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
        self.len() == 0
    }

    /// The ids ordered by index (moves the long strings, no copies).
    pub fn into_ids(self) -> Vec<String> {
        let IdIndex { short, long } = self.index;
        let mut pairs: Vec<(u32, String)> = short.iter().map(|(k, v)| (v, k.text())).collect();
        pairs.extend(long.into_iter().map(|(k, v)| (v, k.into_string())));
        pairs.sort_unstable_by_key(|&(v, _)| v);
        pairs.into_iter().map(|(_, k)| k).collect()
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
/// parsed in parallel (on the current rayon pool), each looking its songs up in the
/// vocabulary of the batches before and keeping vocabularies of its own for the ids new to
/// it, then merged in file order, so ids are numbered by first appearance exactly as a line-by-line
/// reader numbers them, and the result does not depend on the number of threads.
pub fn read(path: &Path, strict: bool, progress: Progress<'_>) -> Result<Triplets> {
    read_chunked(path, strict, progress, CHUNK_BYTES)
}

fn read_chunked(path: &Path, strict: bool, progress: Progress<'_>, chunk_bytes: usize) -> Result<Triplets> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let total = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let (mut users, mut songs) = (Vocabulary::default(), Vocabulary::default());
    let mut records: Vec<(u32, u32, f32)> = Vec::with_capacity((total / 40).min(1 << 28));
    let mut report = TripletsReport::default();
    let batch = 2 * rayon::current_num_threads().max(1);
    // A thread of its own reads the next batch while the pool parses this one (the copy from
    // the page cache was 15% of a read, on the caller's thread while the pool waited). The
    // hand-over is a rendezvous, so at most two batches of buffers exist at once; the
    // buffers of a parsed batch go back to the reader for reuse (fresh 32 MB buffers are
    // fresh pages, which the kernel zeroes and faults in one by one).
    std::thread::scope(|scope| -> Result<()> {
        let (full, batches) = std::sync::mpsc::sync_channel::<std::io::Result<Batch>>(0);
        let (give_back, spares) = std::sync::mpsc::channel::<Vec<Vec<u8>>>();
        scope.spawn(move || read_batches(file, chunk_bytes, batch, &full, &spares));
        // The reader ends when the file does, on an error, or when this side stops receiving.
        for next in batches {
            let Batch { chunks, done } = next.map_err(|e| Error::io(path, e))?;
            let parsed: Vec<Chunk<'_>> = chunks.par_iter().map(|c| parse_chunk(c, &songs)).collect();
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
                records.par_extend(chunk.records.par_iter().map(|&(u, s, c)| {
                    let song = if s & NEW_SONG != 0 {
                        song_map[(s & !NEW_SONG) as usize]
                    } else {
                        s
                    };
                    (user_map[u as usize], song, c)
                }));
            }
            // The reader may have finished; then the buffers are simply dropped.
            let _ = give_back.send(chunks);
            progress(Step {
                done,
                total: total.max(done),
                loss: None,
            })?;
        }
        Ok(())
    })?;
    crate::memory::release_free_memory();
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

/// A batch of chunks as [`read_batches`] hands it over, with the bytes read so far.
struct Batch {
    chunks: Vec<Vec<u8>>,
    done: usize,
}

/// Read `file` in batches of up to `batch` chunks of about `chunk_bytes`, each ending at a
/// line end (the last one at the file's end), reusing the buffers that come back through
/// `spares`; stops at the end of the file, after sending an error, or when nobody receives.
fn read_batches(
    mut file: File,
    chunk_bytes: usize,
    batch: usize,
    out: &std::sync::mpsc::SyncSender<std::io::Result<Batch>>,
    spares: &std::sync::mpsc::Receiver<Vec<Vec<u8>>>,
) {
    let mut carry: Vec<u8> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let (mut done, mut at_end) = (0usize, false);
    while !at_end {
        spare.extend(spares.try_iter().flatten());
        let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(batch);
        while chunks.len() < batch && !at_end {
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            buf.append(&mut carry);
            let start = buf.len();
            let n = match (&mut file).take(chunk_bytes as u64).read_to_end(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = out.send(Err(e));
                    return;
                }
            };
            at_end = n < chunk_bytes;
            done += n;
            if !at_end {
                match memchr::memrchr(b'\n', &buf[start..]) {
                    Some(last) => {
                        carry.extend_from_slice(&buf[start + last + 1..]);
                        buf.truncate(start + last + 1);
                    }
                    None => {
                        std::mem::swap(&mut carry, &mut buf); // one line longer than a chunk: read on
                        spare.push(buf);
                        continue;
                    }
                }
            }
            if !buf.is_empty() {
                chunks.push(buf);
            }
        }
        if out.send(Ok(Batch { chunks, done })).is_err() {
            return;
        }
    }
}

/// Set on a chunk record's song when it indexes the chunk's own new songs (global indices
/// stay below i32::MAX).
const NEW_SONG: u32 = 1 << 31;

/// One chunk of lines parsed on its own: its ids in order of first appearance (borrowed
/// from the chunk), its records in those local indices, and its line counts.
struct Chunk<'a> {
    users: Vec<&'a str>,
    /// The songs not in the vocabulary of the chunks before this batch; a record's song is
    /// an index into these when it carries [`NEW_SONG`], else a global index.
    songs: Vec<&'a str>,
    records: Vec<(u32, u32, f32)>,
    lines: usize,
    blank_lines: usize,
    /// (1-based line within the chunk, why) of the first few malformed lines...
    malformed: Vec<(usize, String)>,
    /// ...and how many more there were.
    more_malformed: usize,
}

/// Parse one chunk. `known` is the song vocabulary of the batches before: its songs are
/// recorded by global index straight away (one lookup per line, in one table, instead of a
/// chunk table and a merge lookup per distinct song), the rest through the chunk's own.
fn parse_chunk<'a>(text: &'a [u8], known: &Vocabulary) -> Chunk<'a> {
    // About one distinct song per 100 bytes in the Taste Profile's shape; users are grouped.
    let mut users: IdIndex<&str> = IdIndex::with_capacity(text.len() / 2000);
    let mut songs: IdIndex<&str> = IdIndex::with_capacity(if known.is_empty() { text.len() / 100 } else { 1024 });
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
    // A line's song is looked up in `known` LOOKAHEAD lines after it was parsed, its table
    // slot prefetched in between; records still go out (and new songs are numbered) in
    // line order.
    const LOOKAHEAD: usize = 16;
    let mut pending: std::collections::VecDeque<(u32, &str, Probe<'_>, f32)> =
        std::collections::VecDeque::with_capacity(LOOKAHEAD + 1);
    let mut resolve = |chunk: &mut Chunk<'a>, (u, song, probe, count): (u32, &'a str, Probe<'a>, f32)| {
        let s = match known.index.get_probe(probe) {
            Some(s) => s,
            None => local_index(&mut songs, &mut chunk.songs, song) | NEW_SONG,
        };
        chunk.records.push((u, s, count));
    };
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
                        let u = local_index(&mut users, &mut chunk.users, user);
                        last_user = Some((user, u));
                        u
                    }
                };
                let probe = Probe::new(song);
                known.index.prefetch(probe);
                pending.push_back((u, song, probe, count as f32));
                if pending.len() > LOOKAHEAD {
                    let next = pending.pop_front().expect("a pending line");
                    resolve(&mut chunk, next);
                }
            }
            Err(why) if chunk.malformed.len() < QUOTED_PROBLEMS => chunk.malformed.push((chunk.lines, why)),
            Err(_) => chunk.more_malformed += 1,
        }
    }
    for next in pending {
        resolve(&mut chunk, next);
    }
    chunk
}

/// `id`'s index in a chunk's vocabulary, appending it to `ids` if new.
fn local_index<'a>(index: &mut IdIndex<&'a str>, ids: &mut Vec<&'a str>, id: &'a str) -> u32 {
    let next = ids.len() as u32;
    let i = index.get_or_insert(id, next, || id);
    if i == next {
        ids.push(id); // indices already given are below `next`: this one is new
    }
    i
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
                _ => {
                    // Ids on both sides of the 23-byte inline limit, multi-byte ones too.
                    let song = match (i * 31) % 53 {
                        s if s % 3 == 0 => format!("{:x<w$}", format!("song{s}-"), w = 20 + s % 5),
                        s if s % 3 == 1 => format!("chanson-é-{s}-{}", "ü".repeat(s % 9)),
                        s => format!("song{s}"),
                    };
                    text.push_str(&format!(
                        "user{}-{}\t{song}\t{}\n",
                        i / 7,
                        "u".repeat(i % 30),
                        1 + i % 4
                    ))
                }
            }
        }
        text.push_str("user0\tsong1\t2"); // no final line end
        let path = scratch("chunks", &text);
        let whole = read_chunked(&path, false, &mut ignore_progress, 1 << 20).unwrap();
        assert_eq!(whole.report.lines, 301);
        for (i, id) in whole.song_ids.iter().enumerate() {
            let hits = text
                .lines()
                .filter(|l| l.split('\t').nth(1) == Some(id.as_str()))
                .count();
            assert!(hits > 0, "song id {id:?} (index {i}) is not in the file");
        }
        assert!(whole.song_ids.iter().any(|id| id.len() == 24) && whole.song_ids.iter().any(|id| id.len() == 23));
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
    fn vocabularies_number_ids_by_first_appearance_through_growth() {
        // Short (inline) and long ids, from an empty table through many doublings.
        let ids: Vec<String> = (0..20_000)
            .map(|i| match i % 3 {
                0 => format!("SO{i:016X}"),
                1 => format!("u{i}"),
                _ => format!("a-user-id-longer-than-23-bytes-{i}"),
            })
            .collect();
        let mut vocabulary = Vocabulary::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(vocabulary.intern(id).unwrap(), i as u32);
        }
        for (i, id) in ids.iter().enumerate().step_by(7) {
            assert_eq!(vocabulary.intern(id).unwrap(), i as u32, "{id} again");
            assert_eq!(vocabulary.index.get(id), Some(i as u32));
        }
        assert_eq!(vocabulary.index.get("SO-not-there"), None);
        assert_eq!(vocabulary.index.get(""), None);
        assert_eq!(vocabulary.len(), ids.len());
        assert_eq!(vocabulary.into_ids(), ids);
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
