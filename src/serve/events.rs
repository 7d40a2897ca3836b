//! The edge's durable event log: append-only segment files of framed records.
//!
//! A segment is `{first sequence number:020}.seg`: an 8-byte magic, then frames. A frame is
//! `len` (u32 LE, the body's length), `crc` (u32 LE, CRC32C of the body), then the body:
//! `seq` (u64 LE), `edge_len` (u16 LE), the edge id (UTF-8), the payload (one event as
//! JSON). Sequence numbers start at 1 and rise by one per record across segments, so "the
//! offset consumed" is one number per edge. A segment is created as a temporary file and
//! renamed into place; a new one starts when the current one would pass the size limit.
//!
//! Opening the log scans the last segment and truncates it after the last whole, valid frame
//! (a write torn by a crash); readers stop at the first bad frame, so nothing corrupt is read.
//! Appends go straight to the file with one write per batch: in `Buffered` mode a batch is
//! acknowledged once the kernel has it (it survives kill -9, not power loss); in `Fsync` mode
//! once it is on disk, with concurrent appenders sharing one fsync (group commit).

use crate::ensure;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MAGIC: &[u8; 8] = b"musrlog1";
const HEADER: usize = 8;
/// seq + edge_len.
const BODY_FIXED: usize = 10;
/// A record's body is at most this long; anything longer is a corrupt length field.
pub const MAX_RECORD: usize = 1 << 20;
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Written to the kernel: survives the process being killed.
    Buffered,
    /// fsynced (shared between concurrent appends): survives power loss.
    Fsync,
}

impl Durability {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "buffered" => Ok(Durability::Buffered),
            "fsync" => Ok(Durability::Fsync),
            other => Err(Error::invalid(format!(
                "unknown durability {other:?}; expected 'buffered' or 'fsync'"
            ))),
        }
    }
}

/// One listening event, as the service receives it and the payload stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub user_id: String,
    pub song_id: String,
    pub plays: f32,
    /// Seconds since the Unix epoch, as the client says.
    pub timestamp: f64,
}

impl Event {
    /// Whether the event can be logged: user and song ids of 1-256 characters, a positive
    /// finite play count and a finite timestamp. Whether the song is known is the
    /// service's question, not the log's.
    pub fn validate(&self) -> Result<()> {
        for (what, id) in [("user_id", &self.user_id), ("song_id", &self.song_id)] {
            crate::ensure!(
                !id.is_empty() && id.len() <= 256,
                "{what} must be 1-256 characters, got {} bytes",
                id.len()
            );
        }
        crate::ensure!(
            self.plays.is_finite() && self.plays > 0.0,
            "plays must be a positive number, got {}",
            self.plays
        );
        crate::ensure!(
            self.timestamp.is_finite(),
            "timestamp must be a finite number, got {}",
            self.timestamp
        );
        Ok(())
    }
}

/// A song the edge added from its content, as the log keeps it: enough to add it again after
/// a restart with the same model (its vector), or to embed it again for another model (its
/// metadata and the uploaded audio, kept under the log's [`SONGS_DIR`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SongAdded {
    pub song_id: String,
    pub tags: Vec<(String, f32)>,
    pub artist: Option<String>,
    pub year: Option<i32>,
    /// The audio's file name under `SONGS_DIR` (named by its SHA-256), if it was uploaded.
    pub audio: Option<String>,
    /// The bundle's model version that computed `vector`.
    pub model_version: String,
    pub vector: Vec<f32>,
    /// Seconds since the Unix epoch, the edge's clock.
    pub timestamp: f64,
}

/// The folder of the log's directory that keeps the audio of added songs.
pub const SONGS_DIR: &str = "songs";

/// What a record holds: a listening event (most of them), or a song the edge added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Song { song_added: SongAdded },
    Play(Event),
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub edge_id: String,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn entry(&self) -> Result<Entry> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::invalid(format!("record {} is neither an event nor a song: {e}", self.seq)))
    }

    /// The listening event of the record, or None for a song record.
    pub fn event(&self) -> Result<Option<Event>> {
        Ok(match self.entry()? {
            Entry::Play(event) => Some(event),
            Entry::Song { .. } => None,
        })
    }
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The segments of `dir` as (first sequence number, path), in order.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg")
            && stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn encode(seq: u64, edge_id: &str, payload: &[u8], out: &mut Vec<u8>) {
    let body_len = BODY_FIXED + edge_id.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(edge_id.len() as u16).to_le_bytes());
    out.extend_from_slice(edge_id.as_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The whole valid frames at the start of `bytes` (after the magic), with the byte offset
/// where the valid part ends. `expect` is the sequence number the first frame must have.
fn decode_frames(bytes: &[u8], mut expect: u64) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = HEADER;
    if bytes.len() < HEADER || &bytes[..HEADER] != MAGIC {
        return (records, 0);
    }
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        if !(BODY_FIXED..=MAX_RECORD).contains(&len) || at + 8 + len > bytes.len() {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let edge_len = u16::from_le_bytes([body[8], body[9]]) as usize;
        if seq != expect || BODY_FIXED + edge_len > len {
            break;
        }
        let Ok(edge_id) = std::str::from_utf8(&body[BODY_FIXED..BODY_FIXED + edge_len]) else {
            break;
        };
        records.push(Record {
            seq,
            edge_id: edge_id.to_string(),
            payload: body[BODY_FIXED + edge_len..].to_vec(),
        });
        expect += 1;
        at += 8 + len;
    }
    (records, at)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Create an empty segment starting at `first_seq`: temp file, magic, fsync, rename.
fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_name(first_seq));
    let tmp = dir.join(format!(".{}.tmp", segment_name(first_seq)));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    result.map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok((file, path))
}

struct Writer {
    file: File,
    path: PathBuf,
    size: u64,
    next_seq: u64,
}

/// An open log that appends records of one edge.
pub struct EventLog {
    dir: PathBuf,
    edge_id: String,
    durability: Durability,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    /// The highest sequence number known to be on disk (Fsync mode); held while syncing.
    synced: Mutex<u64>,
}

/// What opening a log found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// The last sequence number in the log (0 when empty).
    pub last_seq: u64,
}

impl EventLog {
    /// Open (or create) the log in `dir` for `edge_id`, repairing a torn tail.
    pub fn open(dir: &Path, edge_id: &str, durability: Durability, segment_bytes: u64) -> Result<(Self, Recovery)> {
        ensure!(
            !edge_id.is_empty() && edge_id.len() <= 256,
            "an edge id must be 1-256 bytes, got {}",
            edge_id.len()
        );
        ensure!(
            segment_bytes >= 4096,
            "segment_bytes must be at least 4096, got {segment_bytes}"
        );
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut recovery = Recovery::default();
        let segs = segments(dir)?;
        let writer = match segs.last() {
            None => {
                let (file, path) = create_segment(dir, 1)?;
                Writer {
                    file,
                    path,
                    size: HEADER as u64,
                    next_seq: 1,
                }
            }
            Some((first, path)) => {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                let (records, valid) = decode_frames(&bytes, *first);
                let valid = valid.max(HEADER);
                if valid < bytes.len() || bytes.len() < HEADER {
                    recovery.truncated_bytes = bytes.len().saturating_sub(valid) as u64;
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| Error::io(path, e))?;
                    file.set_len(valid as u64).map_err(|e| Error::io(path, e))?;
                    if bytes.len() < HEADER || &bytes[..HEADER] != MAGIC {
                        let mut f = &file;
                        f.seek(SeekFrom::Start(0))
                            .and_then(|_| f.write_all(MAGIC))
                            .map_err(|e| Error::io(path, e))?;
                    }
                    file.sync_all().map_err(|e| Error::io(path, e))?;
                }
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                Writer {
                    file,
                    path: path.clone(),
                    size: valid as u64,
                    next_seq: records.last().map_or(*first, |r| r.seq + 1),
                }
            }
        };
        recovery.last_seq = writer.next_seq - 1;
        let synced = writer.next_seq - 1;
        Ok((
            EventLog {
                dir: dir.to_path_buf(),
                edge_id: edge_id.to_string(),
                durability,
                segment_bytes,
                writer: Mutex::new(writer),
                synced: Mutex::new(synced),
            },
            recovery,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn edge_id(&self) -> &str {
        &self.edge_id
    }
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The last sequence number appended (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.writer.lock().map_or(0, |w| w.next_seq - 1)
    }

    /// Append `payloads` as consecutive records and return their (first, last) sequence
    /// numbers once they are as durable as the log's mode promises.
    pub fn append(&self, payloads: &[Vec<u8>]) -> Result<(u64, u64)> {
        ensure!(!payloads.is_empty(), "nothing to append");
        for p in payloads {
            ensure!(
                BODY_FIXED + self.edge_id.len() + p.len() <= MAX_RECORD,
                "a record of {} bytes is over the limit of {MAX_RECORD}",
                p.len()
            );
        }
        let (first, last) = {
            let mut w = self
                .writer
                .lock()
                .map_err(|_| Error::invalid("the event log is poisoned"))?;
            let mut buffer = Vec::with_capacity(payloads.iter().map(|p| p.len() + 40).sum());
            for (i, p) in payloads.iter().enumerate() {
                encode(w.next_seq + i as u64, &self.edge_id, p, &mut buffer);
            }
            if w.size > HEADER as u64 && w.size + buffer.len() as u64 > self.segment_bytes {
                if self.durability == Durability::Fsync {
                    w.file.sync_data().map_err(|e| Error::io(&w.path, e))?;
                }
                let (file, path) = create_segment(&self.dir, w.next_seq)?;
                *w = Writer {
                    file,
                    path,
                    size: HEADER as u64,
                    next_seq: w.next_seq,
                };
            }
            if let Err(e) = w.file.write_all(&buffer) {
                // Leave no partial frame behind for the next append to follow.
                let _ = w.file.set_len(w.size);
                return Err(Error::io(&w.path, e));
            }
            w.size += buffer.len() as u64;
            let first = w.next_seq;
            w.next_seq += payloads.len() as u64;
            (first, w.next_seq - 1)
        };
        if self.durability == Durability::Fsync {
            self.sync_through(last)?;
        }
        Ok((first, last))
    }

    /// Group commit: whoever holds `synced` fsyncs everything written so far, so the appends
    /// that queued behind it find their records already on disk.
    fn sync_through(&self, seq: u64) -> Result<()> {
        let mut synced = self
            .synced
            .lock()
            .map_err(|_| Error::invalid("the event log is poisoned"))?;
        if *synced >= seq {
            return Ok(());
        }
        let (file, path, upto) = {
            let w = self
                .writer
                .lock()
                .map_err(|_| Error::invalid("the event log is poisoned"))?;
            let file = w.file.try_clone().map_err(|e| Error::io(&w.path, e))?;
            (file, w.path.clone(), w.next_seq - 1)
        };
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        *synced = upto;
        Ok(())
    }

    /// Append events as JSON payloads, all or none: an invalid event (see
    /// [`Event::validate`]) is an error naming its position, and nothing is written.
    pub fn append_events(&self, events: &[Event]) -> Result<(u64, u64)> {
        for (i, e) in events.iter().enumerate() {
            e.validate()
                .map_err(|err| Error::invalid(format!("event {i}: {err}")))?;
        }
        let payloads: Vec<Vec<u8>> = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(|e| Error::invalid(e.to_string())))
            .collect::<Result<_>>()?;
        self.append(&payloads)
    }
}

impl EventLog {
    /// Log a song added from its content (one durable record, acknowledged as events are).
    pub fn append_song(&self, song: &SongAdded) -> Result<u64> {
        let payload = serde_json::to_vec(&Entry::Song {
            song_added: song.clone(),
        })
        .map_err(|e| Error::invalid(e.to_string()))?;
        Ok(self.append(&[payload])?.0)
    }

    /// Keep an uploaded song's audio under the log's `SONGS_DIR`, named by its SHA-256 (so
    /// two uploads never clobber each other), written atomically; returns the file name.
    pub fn keep_audio(&self, bytes: &[u8], extension: &str) -> Result<String> {
        let dir = self.dir.join(SONGS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let name = format!("{}.{extension}", crate::serve::bundle::sha256_hex(bytes));
        let path = dir.join(&name);
        if !path.exists() {
            crate::io::write_atomic(&path, |w| w.write_all(bytes))?;
        }
        Ok(name)
    }
}

/// Every record of the log in `dir` with a sequence number above `after`, in order, at most
/// `limit` of them. Reading stops at the first frame that is torn or fails its CRC.
pub fn read(dir: &Path, after: u64, limit: Option<usize>) -> Result<Vec<Record>> {
    if !dir.is_dir() {
        return Err(Error::NotFound(dir.to_path_buf()));
    }
    let segs = segments(dir)?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    // The sequence number the next segment must start at: a gap means a lost segment, and
    // nothing after it can be trusted to be in order.
    let mut expect: Option<u64> = None;
    for (i, (first, path)) in segs.iter().enumerate() {
        if expect.is_some_and(|e| e != *first) {
            break;
        }
        if let Some((next, _)) = segs.get(i + 1)
            && *next <= after + 1
        {
            expect = Some(*next);
            continue;
        }
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io(path, e))?;
        let (records, valid) = decode_frames(&bytes, *first);
        expect = Some(records.last().map_or(*first, |r| r.seq + 1));
        out.extend(records.into_iter().filter(|r| r.seq > after));
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
        if valid != bytes.len() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::bundle::tests::scratch;

    fn event(i: usize) -> Event {
        Event {
            user_id: format!("u{}", i % 7),
            song_id: format!("s{}", i % 11),
            plays: 1.0 + (i % 3) as f32,
            timestamp: 1.7e9 + i as f64,
        }
    }

    #[test]
    fn appends_read_back_in_order_across_segments() {
        let dir = scratch("log-roll");
        let (log, rec) = EventLog::open(&dir, "edge-a", Durability::Buffered, 4096).unwrap();
        assert_eq!(rec.last_seq, 0);
        let events: Vec<Event> = (0..300).map(event).collect();
        for chunk in events.chunks(7) {
            log.append_events(chunk).unwrap();
        }
        assert_eq!(log.last_seq(), 300);
        assert!(segments(&dir).unwrap().len() > 3, "segments roll at the size limit");
        let all = read(&dir, 0, None).unwrap();
        assert_eq!(all.len(), 300);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, r)| r.seq == i as u64 + 1 && r.edge_id == "edge-a")
        );
        let back: Vec<Event> = all.iter().map(|r| r.event().unwrap().unwrap()).collect();
        assert_eq!(back, events);
        let tail = read(&dir, 250, None).unwrap();
        assert_eq!(tail.first().map(|r| r.seq), Some(251));
        assert_eq!(tail.len(), 50);
        assert_eq!(read(&dir, 10, Some(5)).unwrap().len(), 5);
        assert!(read(&dir, 300, None).unwrap().is_empty());
        // Reopening continues the numbering.
        drop(log);
        let (log, rec) = EventLog::open(&dir, "edge-a", Durability::Fsync, 4096).unwrap();
        assert_eq!((rec.last_seq, rec.truncated_bytes), (300, 0));
        assert_eq!(log.append_events(&[event(0)]).unwrap(), (301, 301));
        // An invalid event fails the whole batch, and nothing of it is written.
        let bad = |f: fn(&mut Event)| {
            let mut e = event(1);
            f(&mut e);
            crate::error::invalid_message(log.append_events(&[event(0), e]))
        };
        assert!(bad(|e| e.plays = f32::NAN).starts_with("event 1: plays must be a positive number"));
        assert!(bad(|e| e.plays = 0.0).contains("plays"));
        assert!(bad(|e| e.timestamp = f64::INFINITY).contains("timestamp must be a finite number"));
        assert!(bad(|e| e.user_id.clear()).contains("user_id must be 1-256 characters"));
        assert!(bad(|e| e.song_id = "s".repeat(257)).contains("song_id must be 1-256 characters"));
        assert_eq!(log.last_seq(), 301);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_truncated_on_open_and_never_read() {
        let dir = scratch("log-torn");
        let (log, _) = EventLog::open(&dir, "edge-b", Durability::Buffered, 1 << 20).unwrap();
        for i in 0..10 {
            log.append_events(&[event(i)]).unwrap();
        }
        drop(log);
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let whole = std::fs::read(&path).unwrap();
        // Every cut inside the last frame, and a flipped byte in it, loses only that frame.
        let frame = {
            let mut b = Vec::new();
            encode(10, "edge-b", &serde_json::to_vec(&event(9)).unwrap(), &mut b);
            b.len()
        };
        for cut in [1, 5, frame / 2, frame - 1] {
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            assert_eq!(read(&dir, 0, None).unwrap().len(), 9, "cut {cut}");
            let (log, rec) = EventLog::open(&dir, "edge-b", Durability::Buffered, 1 << 20).unwrap();
            assert_eq!(rec.last_seq, 9);
            assert_eq!(rec.truncated_bytes, (frame - cut) as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, whole.len() - frame);
            // The next append takes the lost record's number; the log reads whole again.
            assert_eq!(log.append_events(&[event(9)]).unwrap(), (10, 10));
            drop(log);
            assert_eq!(std::fs::read(&path).unwrap(), whole);
        }
        let mut flipped = whole.clone();
        let at = whole.len() - 3;
        flipped[at] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(read(&dir, 0, None).unwrap().len(), 9);
        let (_, rec) = EventLog::open(&dir, "edge-b", Durability::Buffered, 1 << 20).unwrap();
        assert_eq!(rec.last_seq, 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_fsync_appends_get_distinct_numbers() {
        let dir = scratch("log-group");
        let (log, _) = EventLog::open(&dir, "edge-c", Durability::Fsync, 1 << 20).unwrap();
        let log = std::sync::Arc::new(log);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| log.append_events(&[event(t * 100 + i)]).unwrap().0)
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
        assert_eq!(read(&dir, 0, None).unwrap().len(), 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        let dir = scratch("log-bad");
        assert!(EventLog::open(&dir, "", Durability::Buffered, 1 << 20).is_err());
        assert!(EventLog::open(&dir, "e", Durability::Buffered, 10).is_err());
        let (log, _) = EventLog::open(&dir, "e", Durability::Buffered, 1 << 20).unwrap();
        assert!(log.append(&[]).is_err());
        assert!(log.append(&[vec![0; MAX_RECORD]]).is_err());
        assert!(matches!(read(&dir.join("missing"), 0, None), Err(Error::NotFound(_))));
        assert!(Durability::parse("sometimes").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
