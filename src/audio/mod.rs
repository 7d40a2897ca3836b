//! Audio front end: real audio files to log-Mel spectrograms.
//!
//! decode (symphonia: WAV, MP3, FLAC, Ogg Vorbis; `container` opens and probes the file) -> mono -> resample (rubato, band-limited)
//! -> clip (random with a seed, centred, or from an offset; zero-padded when short)
//! -> STFT (rustfft, f64; `spectrum`) -> Mel filterbank, a block of frames at a time -> power_to_db / log(1 + C x) (`db`), matching librosa;
//! `extract` runs that over many files in parallel; `cache` keeps the results on disk.

pub mod cache;
pub mod clip;
mod container;
pub mod db;
pub mod decode;
pub mod encode;
pub mod extract;
pub mod features;
pub mod mel;
pub mod resample;
pub mod spectrum;
#[cfg(test)]
pub(crate) mod test_files;
