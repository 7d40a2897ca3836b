//! Opening an audio file for decoding: the container probed by symphonia (ID3v2 tags
//! skipped first, which the probe does not always do), its first audio track and that
//! track's decoder, what the header says of the length, seeking, and packet timestamps in
//! frames. [`super::decode`] reads windows of samples from the [`Stream`] opened here.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as CodecError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;
use symphonia::core::units::{Time, TimeBase};

pub(super) const SUPPORTED: &str = "WAV, MP3, FLAC, Ogg Vorbis";

/// An open file: the demuxer, the decoder of its first audio track, and what the header says.
pub(super) struct Stream {
    pub(super) reader: Box<dyn FormatReader>,
    pub(super) decoder: Box<dyn AudioDecoder>,
    pub(super) track_id: u32,
    pub(super) sample_rate: u32,
    pub(super) time_base: Option<TimeBase>,
    /// Length in frames per the header (exact for WAV, FLAC, Ogg and MP3 with a Xing/LAME
    /// header; estimated from the bitrate for other MP3s).
    pub(super) num_frames: Option<u64>,
    /// Packets have been read or the reader sought: it is no longer at the start.
    pub(super) used: bool,
}

impl Stream {
    pub(super) fn open(path: &Path) -> Result<Stream> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
        if metadata.is_dir() {
            return Err(Error::format(path, "is a directory, not an audio file"));
        }
        if !metadata.is_file() {
            return Err(Error::format(path, "not a regular file"));
        }
        let len = metadata.len();
        if len == 0 {
            return Err(Error::format(path, "empty file, not audio"));
        }
        let mut source = SkipId3 { file, skip: 0, len };
        source.skip = id3v2_len(&mut source.file, len).map_err(|e| Error::io(path, e))?;
        source
            .file
            .seek(SeekFrom::Start(source.skip))
            .map_err(|e| Error::io(path, e))?;
        let stream = MediaSourceStream::new(Box::new(source), Default::default());
        let mut hint = Hint::new();
        if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(extension);
        }
        let reader = symphonia::default::get_probe()
            .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
            .map_err(|e| match e {
                CodecError::Unsupported(_) => {
                    Error::format(path, format!("not a recognised audio file (supported: {SUPPORTED})"))
                }
                e => header_error(path, e),
            })?;
        let track = reader
            .default_track(TrackType::Audio)
            .ok_or_else(|| Error::format(path, "no audio track"))?;
        let (track_id, time_base, num_frames) = (track.id, track.time_base, track.num_frames);
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| Error::format(path, "no audio track"))?;
        let sample_rate = params
            .sample_rate
            .filter(|&r| r > 0)
            .ok_or_else(|| Error::format(path, "the audio track does not give its sample rate"))?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| match e {
                CodecError::Unsupported(what) => Error::format(
                    path,
                    format!("unsupported audio codec ({what}; supported: {SUPPORTED})"),
                ),
                e => header_error(path, e),
            })?;
        Ok(Stream {
            reader,
            decoder,
            track_id,
            sample_rate,
            time_base,
            num_frames,
            used: false,
        })
    }

    pub(super) fn seek(&mut self, seconds: f64) -> std::result::Result<(), CodecError> {
        let time = Time::try_from_secs_f64(seconds).ok_or(CodecError::SeekError(
            symphonia::core::errors::SeekErrorKind::OutOfRange,
        ))?;
        // Even a failed seek may have moved the reader.
        self.used = true;
        // Accurate: lands at or before the time; coarse may land after it.
        self.reader.seek(
            SeekMode::Accurate,
            SeekTo::Time {
                time,
                track_id: Some(self.track_id),
            },
        )?;
        self.decoder.reset();
        Ok(())
    }

    /// Frame index of the first frame the decoder outputs for `packet` (frames the decoder
    /// trims, such as MP3 encoder delay, come before it).
    pub(super) fn first_frame(&self, packet: &Packet) -> i64 {
        let ts = packet
            .pts
            .get()
            .saturating_add(packet.trim_start.get().min(i64::MAX as u64) as i64);
        match self.time_base {
            Some(tb) if !(tb.numer.get() == 1 && tb.denom.get() == self.sample_rate) => {
                let scaled = i128::from(ts) * i128::from(tb.numer.get()) * i128::from(self.sample_rate);
                let denom = i128::from(tb.denom.get());
                i64::try_from((scaled + denom / 2).div_euclid(denom)).unwrap_or(i64::MAX)
            }
            _ => ts,
        }
    }
}

pub(super) fn header_error(path: &Path, e: CodecError) -> Error {
    match e {
        CodecError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Error::format(path, "the file ends inside its header (truncated or not audio)")
        }
        CodecError::IoError(e) => Error::io(path, e),
        e => Error::format(path, format!("corrupt or unsupported audio header: {e}")),
    }
}

/// Length of the ID3v2 tags at the start of a file (0 when none). symphonia's probe would
/// otherwise scan through them byte by byte, gives up after 1 MB (cover art is often larger),
/// and can mistake bytes of an embedded image for an MPEG frame.
fn id3v2_len(file: &mut File, file_len: u64) -> io::Result<u64> {
    let mut skip = 0u64;
    loop {
        let mut header = [0u8; 10];
        file.seek(SeekFrom::Start(skip))?;
        if file_len - skip < 10 || file.read_exact(&mut header).is_err() {
            return Ok(skip);
        }
        let syncsafe = header[6..10].iter().all(|&b| b < 0x80);
        if &header[..3] != b"ID3" || header[3] == 0xff || header[4] == 0xff || !syncsafe {
            return Ok(skip);
        }
        let body = header[6..10].iter().fold(0u64, |acc, &b| (acc << 7) | u64::from(b));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        let next = skip + 10 + body + footer;
        if next >= file_len {
            // A tag as long as the file is not a tag in front of audio; let the probe decide.
            return Ok(skip);
        }
        skip = next;
    }
}

/// The file seen from just after its ID3v2 tags, so the demuxer starts at the audio.
struct SkipId3 {
    file: File,
    skip: u64,
    len: u64,
}

impl Read for SkipId3 {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for SkipId3 {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => n.checked_add(self.skip),
            SeekFrom::Current(delta) => self.file.stream_position()?.checked_add_signed(delta),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
        }
        .filter(|&target| target >= self.skip)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the audio"))?;
        Ok(self.file.seek(SeekFrom::Start(target))? - self.skip)
    }
}

impl MediaSource for SkipId3 {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len - self.skip)
    }
}
