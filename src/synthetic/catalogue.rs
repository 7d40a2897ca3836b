//! The catalogue of a synthetic world: ids of users, songs and tracks, artists assigned by
//! style, titles and releases, durations, years, Last.fm-style tags, the sound parameters of
//! each song, and which songs lack a track, audio or tags (real data's gaps). Drawn from its
//! own random stream, so the listening does not change with it; [`super::world`] writes it
//! out in the real datasets' formats.

use super::sound::N_SOUND_PARAMS;
use super::world::WorldFilesConfig;
use super::{Listening, dot, normal, stream_rng, unit_vector};
use crate::data::Problems;
use crate::data::metadata::Tracks;
use crate::data::tags::TrackTags;
use crate::data::unique_tracks::UniqueTracks;
use rand::RngExt;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Separates the catalogue's random stream from the listening's (and the audio's).
const CATALOGUE_SALT: u64 = 0x6d75_7372_6563_0001;

/// Share of songs assigned to the nearest artist in metadata space (the rest at random
/// within the genre): artists carry style, not perfectly.
const ARTIST_FIDELITY: f64 = 0.8;
const MOOD_TAGS: [&str; 12] = [
    "happy",
    "sad",
    "mellow",
    "energetic",
    "dark",
    "chill",
    "romantic",
    "aggressive",
    "dreamy",
    "upbeat",
    "melancholic",
    "epic",
];
/// Tags that say nothing about style.
const NOISE_TAGS: [&str; 6] = ["favorites", "seen live", "00s", "british", "female vocalists", "cover"];
const GENRE_TAGS: [&str; 24] = [
    "rock",
    "pop",
    "jazz",
    "electronic",
    "hip-hop",
    "metal",
    "folk",
    "blues",
    "classical",
    "country",
    "reggae",
    "soul",
    "punk",
    "ambient",
    "indie",
    "funk",
    "disco",
    "techno",
    "house",
    "rnb",
    "latin",
    "gospel",
    "trance",
    "ska",
];
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ra", "ven", "to", "sa", "dri", "mo", "zel", "fa", "no", "bel", "ti", "gor", "an", "shi", "ul",
    "pe", "dor", "ny", "ex", "qua", "rin",
];

/// The catalogue drawn for the listening's songs: ids, artists, metadata, tags, sound.
pub(super) struct Catalogue {
    pub(super) user_ids: Vec<String>,
    pub(super) song_ids: Vec<String>,
    /// The song's own track ("" when the song has no track).
    pub(super) track_id: Vec<String>,
    /// A duplicate track without audio or tags ("" when none).
    pub(super) extra_track_id: Vec<String>,
    pub(super) has_audio: Vec<bool>,
    pub(super) song_artist: Vec<u32>,
    pub(super) artist_ids: Vec<String>,
    pub(super) artist_names: Vec<String>,
    pub(super) artist_familiarity: Vec<f32>,
    pub(super) title: Vec<String>,
    pub(super) release: Vec<String>,
    pub(super) duration: Vec<f32>,
    pub(super) year: Vec<i32>,
    pub(super) tags: TrackTags,
    pub(super) has_tags: Vec<bool>,
    pub(super) sound: Vec<[f32; N_SOUND_PARAMS]>,
    pub(super) audio_dims: Vec<usize>,
    pub(super) metadata_dims: Vec<usize>,
}

impl Catalogue {
    pub(super) fn build(cfg: &WorldFilesConfig, w: &Listening) -> Catalogue {
        let lc = &cfg.listening;
        let (n_songs, d) = (lc.n_songs, lc.style_dim);
        let mut rng = stream_rng(lc.seed ^ CATALOGUE_SALT, 0);
        let mut taken = HashSet::new();
        let user_ids = (0..lc.n_users)
            .map(|_| unique_id(&mut rng, &mut taken, |r| hex(r, 40, false)))
            .collect();
        let song_ids = (0..n_songs)
            .map(|_| {
                unique_id(&mut rng, &mut taken, |r| {
                    format!("SO{}12A{}", letters(r, 5), hex(r, 8, true))
                })
            })
            .collect();

        // Each style dimension standardised over the songs, so one gain fits every dimension.
        let z = standardise(&w.song_style, n_songs, d);
        let n_audio = (3 * d).div_ceil(4).max(1);
        let audio_dims: Vec<usize> = (0..n_audio).collect();
        let metadata_dims: Vec<usize> = (d - n_audio.min(d)..d).collect();
        let zs = |s: usize, dims: &[usize]| dims.iter().map(|&k| z[s * d + k]).collect::<Vec<f32>>();

        // Planted messiness.
        let mut track_id = Vec::with_capacity(n_songs);
        let mut extra_track_id = Vec::with_capacity(n_songs);
        let mut has_audio = Vec::with_capacity(n_songs);
        let track = |r: &mut ChaCha8Rng| format!("TR{}128F{}", letters(r, 5), hex(r, 7, true));
        for _ in 0..n_songs {
            let has_track = rng.random::<f64>() >= cfg.share_without_track;
            let audio = has_track && rng.random::<f64>() >= cfg.share_without_audio;
            let extra = has_track && rng.random::<f64>() < cfg.share_second_track;
            track_id.push(if has_track {
                unique_id(&mut rng, &mut taken, track)
            } else {
                String::new()
            });
            extra_track_id.push(if extra {
                unique_id(&mut rng, &mut taken, track)
            } else {
                String::new()
            });
            has_audio.push(audio);
        }

        let (song_artist, n_artists) = assign_artists(cfg, w, &z, &metadata_dims, &mut rng);
        let artist_ids: Vec<String> = (0..n_artists)
            .map(|_| {
                unique_id(&mut rng, &mut taken, |r| {
                    format!("AR{}1187B{}", letters(r, 5), hex(r, 6, true))
                })
            })
            .collect();
        let artist_names: Vec<String> = (0..n_artists)
            .map(|_| {
                let n = 1 + rng.random_range(0..2);
                words(&mut rng, n)
            })
            .collect();
        let mut artist_popularity = vec![0f64; n_artists];
        for (s, &a) in song_artist.iter().enumerate() {
            artist_popularity[a as usize] += f64::from(w.song_popularity[s]);
        }
        let most = artist_popularity.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
        let artist_familiarity = artist_popularity.iter().map(|&p| (p / most).powf(0.3) as f32).collect();
        let albums: Vec<Vec<String>> = (0..n_artists)
            .map(|_| (0..3).map(|_| words(&mut rng, 2)).collect())
            .collect();

        let (mut title, mut release, mut duration, mut year) = (vec![], vec![], vec![], vec![]);
        let (last, first) = (metadata_dims[metadata_dims.len() - 1], metadata_dims[0]);
        for s in 0..n_songs {
            let n_words = 1 + rng.random_range(0..3);
            title.push(words(&mut rng, n_words));
            release.push(albums[song_artist[s] as usize][rng.random_range(0..3)].clone());
            duration.push(rng.random_range(120.0f32..400.0));
            let known = rng.random::<f64>() >= cfg.share_unknown_year;
            let era = 0.9 * z[s * d + last] + 0.5 * z[s * d + first];
            let era = sigmoid(f64::from(era) + cfg.content_noise * normal(&mut rng));
            year.push(if known { 1955 + (55.0 * era).round() as i32 } else { 0 });
        }

        let (tags, has_tags) = draw_tags(cfg, w, &track_id, &metadata_dims, &zs, &mut rng);

        let sound = (0..n_songs)
            .map(|s| {
                let mut p = [0f32; N_SOUND_PARAMS];
                for (k, v) in p.iter_mut().enumerate() {
                    let zk = f64::from(z[s * d + audio_dims[k % n_audio]]);
                    *v = sigmoid(1.2 * zk + cfg.content_noise * normal(&mut rng)) as f32;
                }
                p
            })
            .collect();

        Catalogue {
            user_ids,
            song_ids,
            track_id,
            extra_track_id,
            has_audio,
            song_artist,
            artist_ids,
            artist_names,
            artist_familiarity,
            title,
            release,
            duration,
            year,
            tags,
            has_tags,
            sound,
            audio_dims,
            metadata_dims,
        }
    }

    /// One metadata row per track: the song's own and its duplicate (same metadata).
    pub(super) fn tracks(&self) -> Tracks {
        let mut t = Tracks::default();
        for s in 0..self.song_ids.len() {
            for track in [&self.track_id[s], &self.extra_track_id[s]] {
                if track.is_empty() {
                    continue;
                }
                let a = self.song_artist[s] as usize;
                t.track_id.push(track.clone());
                t.title.push(self.title[s].clone());
                t.song_id.push(self.song_ids[s].clone());
                t.release.push(self.release[s].clone());
                t.artist_id.push(self.artist_ids[a].clone());
                t.artist_mbid.push(String::new());
                t.artist_name.push(self.artist_names[a].clone());
                t.duration.push(self.duration[s]);
                t.artist_familiarity.push(self.artist_familiarity[a]);
                t.artist_hotttnesss.push(0.8 * self.artist_familiarity[a]);
                t.year.push(self.year[s]);
            }
        }
        t.skipped = Problems::default();
        t
    }

    pub(super) fn unique_tracks(&self) -> UniqueTracks {
        let t = self.tracks();
        UniqueTracks {
            track_id: t.track_id,
            song_id: t.song_id,
            artist_name: t.artist_name,
            title: t.title,
            malformed: Problems::default(),
        }
    }
}

/// Artists: each genre's songs split among about `len / songs_per_artist` artists centred on
/// some of its songs; a song goes to the artist nearest in the metadata dimensions (or, with
/// probability 1 - ARTIST_FIDELITY, to a random artist of its genre).
fn assign_artists(
    cfg: &WorldFilesConfig,
    w: &Listening,
    z: &[f32],
    dims: &[usize],
    rng: &mut ChaCha8Rng,
) -> (Vec<u32>, usize) {
    let d = cfg.listening.style_dim;
    let mut by_genre: Vec<Vec<usize>> = vec![Vec::new(); cfg.listening.n_genres];
    for (s, &g) in w.song_genre.iter().enumerate() {
        by_genre[g as usize].push(s);
    }
    let mut song_artist = vec![0u32; w.song_genre.len()];
    let mut n_artists = 0usize;
    for songs in by_genre.iter().filter(|s| !s.is_empty()) {
        let k = ((songs.len() as f64 / cfg.songs_per_artist).round() as usize).clamp(1, songs.len());
        let mut seeds = songs.clone();
        seeds.shuffle(rng);
        seeds.truncate(k);
        for &s in songs {
            let local = if rng.random::<f64>() < ARTIST_FIDELITY {
                let dist = |c: usize| -> f32 { dims.iter().map(|&j| (z[s * d + j] - z[c * d + j]).powi(2)).sum() };
                (0..k)
                    .min_by(|&a, &b| dist(seeds[a]).total_cmp(&dist(seeds[b])))
                    .unwrap_or(0)
            } else {
                rng.random_range(0..k)
            };
            song_artist[s] = (n_artists + local) as u32;
        }
        n_artists += k;
    }
    (song_artist, n_artists)
}

/// Last.fm-style tags of each song's own track: its genre's name (usually), moods that are
/// directions in the metadata dimensions, and now and then a tag that means nothing.
fn draw_tags(
    cfg: &WorldFilesConfig,
    w: &Listening,
    track_id: &[String],
    dims: &[usize],
    zs: &dyn Fn(usize, &[usize]) -> Vec<f32>,
    rng: &mut ChaCha8Rng,
) -> (TrackTags, Vec<bool>) {
    let n_genres = cfg.listening.n_genres;
    let mut tag_names: Vec<String> = (0..n_genres)
        .map(|g| match GENRE_TAGS.get(g) {
            Some(name) => name.to_string(),
            None => format!("genre {g}"),
        })
        .collect();
    let mood_base = tag_names.len();
    tag_names.extend(MOOD_TAGS.iter().map(|s| s.to_string()));
    let noise_base = tag_names.len();
    tag_names.extend(NOISE_TAGS.iter().map(|s| s.to_string()));
    let directions: Vec<Vec<f32>> = MOOD_TAGS.iter().map(|_| unit_vector(rng, dims.len())).collect();

    let mut tags = TrackTags {
        tag_names,
        indptr: vec![0],
        ..TrackTags::default()
    };
    let mut has_tags = vec![false; track_id.len()];
    for (s, track) in track_id.iter().enumerate() {
        if track.is_empty() || rng.random::<f64>() < cfg.share_without_tags {
            continue;
        }
        let mut row: Vec<(u32, f32)> = Vec::new();
        if rng.random::<f64>() < 0.75 {
            row.push((w.song_genre[s], rng.random_range(60..=100) as f32));
        }
        let view = zs(s, dims);
        for (m, dir) in directions.iter().enumerate() {
            let strength = sigmoid(2.0 * f64::from(dot(&view, dir)) - 2.0 + cfg.content_noise * normal(rng));
            if rng.random::<f64>() < strength {
                row.push(((mood_base + m) as u32, (100.0 * strength).round().max(1.0) as f32));
            }
        }
        if rng.random::<f64>() < 0.15 {
            let noise = noise_base + rng.random_range(0..NOISE_TAGS.len());
            row.push((noise as u32, rng.random_range(1..=40) as f32));
        }
        if row.is_empty() {
            continue;
        }
        row.sort_unstable_by_key(|&(g, _)| g);
        has_tags[s] = true;
        tags.track_id.push(track.clone());
        for (g, v) in row {
            tags.tag.push(g);
            tags.value.push(v);
        }
        tags.indptr.push(tags.tag.len() as i64);
    }
    (tags, has_tags)
}

/// Each column minus its mean, over its standard deviation (1 when constant).
fn standardise(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for k in 0..cols {
        let mean = (0..rows).map(|r| f64::from(x[r * cols + k])).sum::<f64>() / rows as f64;
        let var = (0..rows)
            .map(|r| (f64::from(x[r * cols + k]) - mean).powi(2))
            .sum::<f64>()
            / rows as f64;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for r in 0..rows {
            out[r * cols + k] = ((f64::from(x[r * cols + k]) - mean) / sd) as f32;
        }
    }
    out
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn unique_id(rng: &mut ChaCha8Rng, taken: &mut HashSet<String>, make: impl Fn(&mut ChaCha8Rng) -> String) -> String {
    loop {
        let id = make(rng);
        if taken.insert(id.clone()) {
            return id;
        }
    }
}

fn hex(rng: &mut ChaCha8Rng, n: usize, upper: bool) -> String {
    let digits: &[u8] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    (0..n).map(|_| digits[rng.random_range(0..16)] as char).collect()
}

fn letters(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n).map(|_| (b'A' + rng.random_range(0..26u8)) as char).collect()
}

/// `n` capitalised made-up words.
fn words(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| {
            let word: String = (0..rng.random_range(1..=3))
                .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                .collect();
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
