//! The embedded default data: the listening part of a synthetic music world, a users x songs
//! play-count matrix shaped like the Echo Nest Taste Profile.
//!
//! Songs carry a latent *style* (a vector near their genre's centre) and users a *taste* in
//! the same space; listening follows taste, so a model that recovers the styles from the
//! plays has learnt something real. Later stages derive audio and metadata from the same
//! styles, which is what makes content-based cold start learnable on this data.
//!
//! The generative story, per user: pick 1-3 favourite genres (bigger genres more often);
//! taste = the normalised mix of their centres + noise; draw a long-tailed number of
//! distinct songs, each by choosing a genre from a softmax of `taste_strength * taste ·
//! centre`, a song in it by popularity, and accepting it with probability
//! `sigmoid(taste_strength / 2 * taste · (style - centre) / spread)` (a few tries) — the
//! user's taste for what sets the song apart within its genre — except for a small share of
//! draws that come from global popularity (exploration); the play count is a zeta (discrete
//! power-law) draw, mostly 1, whose tail grows with the user's affinity to the song.

mod catalogue;
pub mod real;
pub mod sound;
pub mod world;

use crate::ensure;
use crate::error::{Error, Result};
use crate::sparse::Csr;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Zeta};
use rayon::prelude::*;
use std::collections::HashSet;

/// Spread (expected norm) of a song's style around its genre centre.
const SONG_SPREAD: f32 = 0.5;
/// Spread of a user's taste around the mix of their favourite genres.
const TASTE_SPREAD: f32 = 0.3;
/// Log-normal sigma of genre sizes: a few big genres, many small ones.
const GENRE_SIZE_SIGMA: f64 = 0.8;
/// Log-normal sigma of user activity; the Taste Profile's heavy users play hundreds of songs.
const ACTIVITY_SIGMA: f64 = 1.0;
/// Share of draws from global popularity, ignoring taste.
const EXPLORATION: f64 = 0.05;
/// Candidates tried per draw before the last one is taken anyway.
const ACCEPT_TRIES: usize = 8;
/// Scales taste_strength for the within-genre choice (logits in units of the song spread).
const WITHIN_GENRE_GAIN: f64 = 0.5;
/// Draw attempts per wanted song: duplicates are redrawn, within this budget.
const ATTEMPTS_PER_SONG: usize = 20;
/// Zeta exponent of play counts at zero affinity; full affinity lowers it by
/// `PLAY_AFFINITY_GAIN` (heavier tail). Overall about 2/3 of the counts are 1 and the mean
/// is about 3, close to the Taste Profile's 2.9.
const PLAY_EXPONENT: f64 = 2.4;
const PLAY_AFFINITY_GAIN: f64 = 0.3;
/// Affinity levels with a precomputed play-count distribution.
const PLAY_LEVELS: usize = 11;
/// Truncation of play counts (the Taste Profile's maximum is in the thousands).
const MAX_PLAYS: f64 = 5000.0;

/// Parameters of the synthetic world.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorldConfig {
    pub n_users: usize,
    pub n_songs: usize,
    /// Mean number of distinct songs per user (the activity distribution is log-normal,
    /// clamped to [1, n_songs / 2], so the realised mean is slightly lower near the cap).
    pub mean_songs_per_user: f64,
    pub n_genres: usize,
    /// Dimension of the latent style space shared by songs and users.
    pub style_dim: usize,
    /// How strongly listening follows taste: 0 makes genres and songs taste-blind.
    pub taste_strength: f64,
    /// Zipf exponent of song popularity: weight of the song of popularity rank r is r^-exp.
    pub popularity_exponent: f64,
    pub seed: u64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            n_users: 2000,
            n_songs: 5000,
            mean_songs_per_user: 40.0,
            n_genres: 24,
            style_dim: 16,
            taste_strength: 10.0,
            popularity_exponent: 0.8,
            seed: 0,
        }
    }
}

impl WorldConfig {
    /// The paper's size: 10,000 users and enough songs that 50,000 of them are played and
    /// have audio (56,000 drawn at 80 distinct songs per user: about 52,700 get plays and
    /// 51,400 of those audio; at 50,000 drawn and 40 per user only 42,537 were left).
    pub fn paper() -> Self {
        WorldConfig {
            n_users: 10_000,
            n_songs: 56_000,
            mean_songs_per_user: 80.0,
            ..WorldConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.n_users >= 1, "n_users must be at least 1");
        ensure!(
            self.n_songs >= 2 && self.n_songs <= i32::MAX as usize,
            "n_songs must be between 2 and {}, got {}",
            i32::MAX,
            self.n_songs
        );
        ensure!(
            self.n_genres >= 1 && self.n_genres <= self.n_songs,
            "n_genres must be between 1 and n_songs ({}), got {}",
            self.n_songs,
            self.n_genres
        );
        ensure!(self.style_dim >= 1, "style_dim must be at least 1");
        let cap = (self.n_songs / 2) as f64;
        ensure!(
            self.mean_songs_per_user >= 1.0 && self.mean_songs_per_user <= cap,
            "mean_songs_per_user must be between 1 and n_songs / 2 ({cap}), got {}",
            self.mean_songs_per_user
        );
        ensure!(
            self.taste_strength.is_finite() && self.taste_strength >= 0.0,
            "taste_strength must be finite and non-negative, got {}",
            self.taste_strength
        );
        ensure!(
            self.popularity_exponent.is_finite() && self.popularity_exponent >= 0.0,
            "popularity_exponent must be finite and non-negative, got {}",
            self.popularity_exponent
        );
        Ok(())
    }
}

/// The listening log of a synthetic world, with the latent structure that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Listening {
    /// users x songs play counts (f32, each stored count >= 1), canonical rows.
    pub plays: Csr,
    /// The genre of each song.
    pub song_genre: Vec<u32>,
    /// n_songs x style_dim, row-major: each song's latent style.
    pub song_style: Vec<f32>,
    /// Each song's popularity weight (sums to 1): its share of taste-blind draws.
    pub song_popularity: Vec<f32>,
    /// n_users x style_dim, row-major: each user's latent taste.
    pub user_taste: Vec<f32>,
    /// n_genres x style_dim, row-major: the genre centres (unit vectors) styles scatter around.
    pub genre_centre: Vec<f32>,
}

/// Generate the listening log of `cfg`'s world.
///
/// Deterministic for `cfg.seed`: the catalogue draws from ChaCha8 stream 0 and user `u`
/// from stream `u + 1`, so the output does not depend on the number of threads.
pub fn generate_listening(cfg: &WorldConfig) -> Result<Listening> {
    cfg.validate()?;
    listen(cfg, Catalog::build(cfg)?)
}

/// Songs' genres and styles decided elsewhere (derived from real sound): the listening then
/// follows them exactly as it follows drawn ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GivenStyles {
    pub song_genre: Vec<u32>,
    /// n_songs x style_dim.
    pub song_style: Vec<f32>,
    /// n_genres x style_dim.
    pub genre_centre: Vec<f32>,
}

/// The listening of users over songs of given styles (`cfg.n_songs`, `cfg.n_genres` and
/// `cfg.style_dim` must match them).
pub fn generate_listening_for(cfg: &WorldConfig, styles: &GivenStyles) -> Result<Listening> {
    cfg.validate()?;
    listen(cfg, Catalog::given(cfg, styles)?)
}

fn listen(cfg: &WorldConfig, catalog: Catalog) -> Result<Listening> {
    let users: Vec<UserListening> = (0..cfg.n_users)
        .into_par_iter()
        .map(|u| simulate_user(cfg, &catalog, u))
        .collect();

    let nnz: usize = users.iter().map(|u| u.songs.len()).sum();
    let mut plays = Csr::with_capacity(cfg.n_songs, cfg.n_users, nnz);
    let mut user_taste = Vec::with_capacity(cfg.n_users * cfg.style_dim);
    for user in users {
        plays.push_row(user.songs.iter().map(|&(song, count)| (song as i32, count)));
        user_taste.extend_from_slice(&user.taste);
    }
    Ok(Listening {
        plays,
        song_genre: catalog.song_genre,
        song_style: catalog.song_style,
        song_popularity: catalog.song_popularity,
        user_taste,
        genre_centre: catalog.genre_centre,
    })
}

/// The songs and genres, shared read-only by every user's simulation.
struct Catalog {
    style_dim: usize,
    genre_centre: Vec<f32>,
    song_genre: Vec<u32>,
    song_style: Vec<f32>,
    song_popularity: Vec<f32>,
    /// The songs of each genre, and their popularity as inclusive prefix sums.
    genre_songs: Vec<Vec<u32>>,
    genre_cumulative: Vec<Vec<f64>>,
    /// Number of songs per genre: favourites are drawn in proportion to it.
    genre_size: Vec<f64>,
    global_cumulative: Vec<f64>,
    /// Play-count distributions by affinity level (0 = none, PLAY_LEVELS - 1 = full).
    play_counts: Vec<Zeta<f64>>,
}

impl Catalog {
    fn build(cfg: &WorldConfig) -> Result<Self> {
        let d = cfg.style_dim;
        let mut rng = stream_rng(cfg.seed, 0);
        let genre_centre: Vec<f32> = (0..cfg.n_genres).flat_map(|_| unit_vector(&mut rng, d)).collect();

        let weights: Vec<f64> = (0..cfg.n_genres)
            .map(|_| (GENRE_SIZE_SIGMA * normal(&mut rng)).exp())
            .collect();
        let sizes = apportion(cfg.n_songs, &weights);
        let mut song_genre: Vec<u32> = sizes
            .iter()
            .enumerate()
            .flat_map(|(g, &n)| std::iter::repeat_n(g as u32, n))
            .collect();
        // Song ids carry no information about genre or popularity.
        song_genre.shuffle(&mut rng);

        let spread = SONG_SPREAD / (d as f32).sqrt();
        let mut song_style = Vec::with_capacity(cfg.n_songs * d);
        for &g in &song_genre {
            let centre = &genre_centre[g as usize * d..(g as usize + 1) * d];
            song_style.extend(centre.iter().map(|&c| c + spread * normal(&mut rng) as f32));
        }
        Self::assemble(cfg, genre_centre, song_genre, song_style, &mut rng)
    }

    /// The catalogue of songs whose genres and styles are given (songs of real sound): only
    /// popularity is drawn.
    fn given(cfg: &WorldConfig, styles: &GivenStyles) -> Result<Self> {
        let d = cfg.style_dim;
        ensure!(
            styles.song_genre.len() == cfg.n_songs
                && styles.song_style.len() == cfg.n_songs * d
                && styles.genre_centre.len() == cfg.n_genres * d,
            "the given styles do not match {} songs, {} genres and {d} dimensions",
            cfg.n_songs,
            cfg.n_genres
        );
        let mut rng = stream_rng(cfg.seed, 0);
        Self::assemble(
            cfg,
            styles.genre_centre.clone(),
            styles.song_genre.clone(),
            styles.song_style.clone(),
            &mut rng,
        )
    }

    fn assemble(
        cfg: &WorldConfig,
        genre_centre: Vec<f32>,
        song_genre: Vec<u32>,
        song_style: Vec<f32>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let d = cfg.style_dim;
        let mut sizes = vec![0usize; cfg.n_genres];
        for &g in &song_genre {
            sizes[g as usize] += 1;
        }
        let mut rank: Vec<u32> = (0..cfg.n_songs as u32).collect();
        rank.shuffle(rng);
        let weight: Vec<f64> = rank
            .iter()
            .map(|&r| (r as f64 + 1.0).powf(-cfg.popularity_exponent))
            .collect();
        let total: f64 = weight.iter().sum();
        let song_popularity: Vec<f32> = weight.iter().map(|&w| (w / total) as f32).collect();

        let mut genre_songs: Vec<Vec<u32>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (s, &g) in song_genre.iter().enumerate() {
            genre_songs[g as usize].push(s as u32);
        }
        let genre_cumulative = genre_songs
            .iter()
            .map(|songs| cumulative(songs.iter().map(|&s| weight[s as usize])))
            .collect();

        Ok(Catalog {
            style_dim: d,
            genre_centre,
            song_genre,
            song_style,
            song_popularity,
            genre_songs,
            genre_cumulative,
            genre_size: sizes.iter().map(|&n| n as f64).collect(),
            global_cumulative: cumulative(weight.iter().copied()),
            play_counts: play_count_table()?,
        })
    }

    fn style(&self, song: u32) -> &[f32] {
        let d = self.style_dim;
        &self.song_style[song as usize * d..(song as usize + 1) * d]
    }

    fn centre(&self, genre: usize) -> &[f32] {
        let d = self.style_dim;
        &self.genre_centre[genre * d..(genre + 1) * d]
    }
}

/// Zeta distributions from PLAY_EXPONENT (no affinity) down by PLAY_AFFINITY_GAIN.
fn play_count_table() -> Result<Vec<Zeta<f64>>> {
    (0..PLAY_LEVELS)
        .map(|level| {
            let s = PLAY_EXPONENT - PLAY_AFFINITY_GAIN * level as f64 / (PLAY_LEVELS - 1) as f64;
            Zeta::new(s).map_err(|e| Error::invalid(format!("play-count exponent {s}: {e}")))
        })
        .collect()
}

/// One user's simulated taste and (song, play count) row, sorted by song.
struct UserListening {
    taste: Vec<f32>,
    songs: Vec<(u32, f32)>,
}

fn simulate_user(cfg: &WorldConfig, catalog: &Catalog, user: usize) -> UserListening {
    let mut rng = stream_rng(cfg.seed, user as u64 + 1);
    let taste = user_taste(cfg, catalog, &mut rng);
    let logits: Vec<f64> = (0..cfg.n_genres)
        .map(|g| cfg.taste_strength * dot(&taste, catalog.centre(g)) as f64)
        .collect();
    let genre_cumulative = softmax_cumulative(&logits);
    let wanted = activity(cfg, &mut rng);

    let mut songs: Vec<(u32, f32)> = Vec::with_capacity(wanted);
    let mut seen: HashSet<u32> = HashSet::with_capacity(wanted);
    // Heavy users can exhaust what their taste reaches; the budget ends the search.
    for _ in 0..ATTEMPTS_PER_SONG * wanted {
        if songs.len() == wanted {
            break;
        }
        let (song, affinity) = draw_song(cfg, catalog, &taste, &genre_cumulative, &mut rng);
        if seen.insert(song) {
            songs.push((song, play_count(catalog, affinity, &mut rng)));
        }
    }
    songs.sort_unstable_by_key(|&(s, _)| s);
    UserListening { taste, songs }
}

/// The normalised mix of 1-3 favourite genres' centres, plus noise.
fn user_taste(cfg: &WorldConfig, catalog: &Catalog, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let d = cfg.style_dim;
    let k = rng.random_range(1..=3usize).min(cfg.n_genres);
    let mut mix = vec![0f32; d];
    for g in weighted_distinct(&catalog.genre_size, k, rng) {
        let w = rng.random_range(0.5f32..1.5);
        for (m, &c) in mix.iter_mut().zip(catalog.centre(g)) {
            *m += w * c;
        }
    }
    let norm = dot(&mix, &mix).sqrt();
    let spread = TASTE_SPREAD / (d as f32).sqrt();
    mix.iter()
        .map(|&m| m / norm.max(f32::MIN_POSITIVE) + spread * normal(rng) as f32)
        .collect()
}

/// Number of distinct songs a user plays: log-normal with the configured mean.
fn activity(cfg: &WorldConfig, rng: &mut ChaCha8Rng) -> usize {
    let mu = cfg.mean_songs_per_user.ln() - ACTIVITY_SIGMA * ACTIVITY_SIGMA / 2.0;
    let n = (mu + ACTIVITY_SIGMA * normal(rng)).exp().round();
    (n as usize).clamp(1, cfg.n_songs / 2)
}

/// One song for the user and the user's affinity (taste · style) to it.
fn draw_song(
    cfg: &WorldConfig,
    catalog: &Catalog,
    taste: &[f32],
    genre_cumulative: &[f64],
    rng: &mut ChaCha8Rng,
) -> (u32, f32) {
    if rng.random::<f64>() < EXPLORATION {
        let song = pick(&catalog.global_cumulative, rng) as u32;
        return (song, dot(taste, catalog.style(song)));
    }
    let genre = pick(genre_cumulative, rng);
    let songs = &catalog.genre_songs[genre];
    // Within a genre every song has about the same affinity; what sets a user apart is
    // taste for the song's own deviation from the genre centre, measured in units of the
    // spread of those deviations, so it weighs as much as popularity does.
    let genre_affinity = dot(taste, catalog.centre(genre));
    let unit = SONG_SPREAD / (catalog.style_dim as f32).sqrt();
    let mut candidate = (0, 0.0);
    for _ in 0..ACCEPT_TRIES {
        let song = songs[pick(&catalog.genre_cumulative[genre], rng)];
        let affinity = dot(taste, catalog.style(song));
        candidate = (song, affinity);
        let personal = ((affinity - genre_affinity) / unit) as f64;
        if rng.random::<f64>() < sigmoid(WITHIN_GENRE_GAIN * cfg.taste_strength * personal) {
            break;
        }
    }
    candidate
}

/// A zeta draw, truncated at MAX_PLAYS by redrawing (clamping would pile counts up there).
fn play_count(catalog: &Catalog, affinity: f32, rng: &mut ChaCha8Rng) -> f32 {
    let level = (affinity.clamp(0.0, 1.0) * (PLAY_LEVELS - 1) as f32).round() as usize;
    let zeta = &catalog.play_counts[level.min(PLAY_LEVELS - 1)];
    let mut count = MAX_PLAYS;
    for _ in 0..16 {
        count = zeta.sample(rng);
        if count <= MAX_PLAYS {
            break;
        }
    }
    count.min(MAX_PLAYS) as f32
}

fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// A uniformly random direction.
fn unit_vector(rng: &mut ChaCha8Rng, d: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d).map(|_| normal(rng) as f32).collect();
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        (0..d).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Split `total` into one part per weight, each at least 1, the rest in proportion to the
/// weights (largest remainders, ties to the lower index). Needs total >= weights.len().
fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let spare = total.saturating_sub(weights.len()) as f64;
    let sum: f64 = weights.iter().sum();
    let shares: Vec<f64> = weights.iter().map(|w| spare * w / sum).collect();
    let mut parts: Vec<usize> = shares.iter().map(|s| 1 + s.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (shares[b] - shares[b].floor())
            .total_cmp(&(shares[a] - shares[a].floor()))
            .then(a.cmp(&b))
    });
    let assigned: usize = parts.iter().sum();
    for &i in order.iter().cycle().take(total.saturating_sub(assigned)) {
        parts[i] += 1;
    }
    parts
}

/// Inclusive prefix sums, the table [`pick`] searches.
fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// Prefix sums of softmax(logits), shifted by the maximum so exp cannot overflow.
fn softmax_cumulative(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    cumulative(logits.iter().map(|&l| (l - max).exp()))
}

/// An index drawn with probability proportional to the increments of `cumulative`
/// (non-empty).
fn pick(cumulative: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

/// `k` distinct indices drawn with probability proportional to `weights` (Efraimidis-
/// Spirakis: the k largest of u^(1/w), compared through their logarithms).
fn weighted_distinct(weights: &[f64], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut keys: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (rng.random::<f64>().ln() / w, i))
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    keys.into_iter().take(k).map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::with_threads;
    use crate::sparse::CsrRef;
    use std::sync::OnceLock;

    fn small(seed: u64) -> WorldConfig {
        WorldConfig {
            n_users: 300,
            n_songs: 800,
            mean_songs_per_user: 20.0,
            n_genres: 8,
            seed,
            ..Default::default()
        }
    }

    /// The default-size world, generated once for the tests that look at its statistics.
    fn default_world() -> &'static Listening {
        static WORLD: OnceLock<Listening> = OnceLock::new();
        WORLD.get_or_init(|| generate_listening(&WorldConfig::default()).unwrap())
    }

    #[test]
    fn shapes_and_counts_look_like_the_taste_profile() {
        let cfg = WorldConfig::default();
        let w = default_world();
        let p = &w.plays;
        CsrRef::new(p.n_rows, p.n_cols, &p.indptr, &p.indices, &p.data).unwrap();
        assert_eq!((p.n_rows, p.n_cols), (cfg.n_users, cfg.n_songs));
        assert_eq!(w.song_genre.len(), cfg.n_songs);
        assert!(w.song_genre.iter().all(|&g| (g as usize) < cfg.n_genres));
        assert_eq!(w.song_style.len(), cfg.n_songs * cfg.style_dim);
        assert_eq!(w.user_taste.len(), cfg.n_users * cfg.style_dim);
        assert_eq!(w.genre_centre.len(), cfg.n_genres * cfg.style_dim);
        assert!((w.song_popularity.iter().sum::<f32>() - 1.0).abs() < 1e-3);

        let want = cfg.n_users as f64 * cfg.mean_songs_per_user;
        let nnz = p.indices.len() as f64;
        assert!((nnz / want - 1.0).abs() < 0.15, "nnz {nnz} vs {want}");
        assert!(
            (0..p.n_rows).all(|u| p.view().row_nnz(u) >= 1),
            "every user plays something"
        );

        assert!(p.data.iter().all(|&c| c >= 1.0 && c.fract() == 0.0));
        let mut counts = p.data.clone();
        counts.sort_by(f32::total_cmp);
        assert_eq!(counts[counts.len() / 2], 1.0, "median play count");
        assert!(
            counts[counts.len() - 1] > 20.0,
            "max play count {}",
            counts[counts.len() - 1]
        );
        assert!(counts[counts.len() - 1] <= MAX_PLAYS as f32);
        // User activity is long-tailed too: the busiest user plays many times the mean.
        let busiest = (0..p.n_rows).map(|u| p.view().row_nnz(u)).max().unwrap_or(0);
        assert!(busiest as f64 > 5.0 * cfg.mean_songs_per_user, "busiest user {busiest}");
    }

    #[test]
    fn song_popularity_is_long_tailed() {
        let w = default_world();
        let mut listeners = vec![0usize; w.plays.n_cols];
        for &s in &w.plays.indices {
            listeners[s as usize] += 1;
        }
        listeners.sort_unstable_by(|a, b| b.cmp(a));
        let top = listeners.len() / 100;
        let share = listeners[..top].iter().sum::<usize>() as f64 / w.plays.indices.len() as f64;
        assert!(share > 0.08, "top 1% of songs hold {share:.3} of the listening");
    }

    #[test]
    fn listening_follows_the_planted_genres() {
        // Recover each genre's centre from the song styles alone, take each user's
        // favourite as the genre closest to their taste, and compare how much of the user's
        // listening falls there with that genre's share of all listening.
        let cfg = WorldConfig::default();
        let w = default_world();
        let d = cfg.style_dim;
        let mut centroid = vec![0f32; cfg.n_genres * d];
        for (s, &g) in w.song_genre.iter().enumerate() {
            for k in 0..d {
                centroid[g as usize * d + k] += w.song_style[s * d + k];
            }
        }
        let mut genre_plays = vec![0usize; cfg.n_genres];
        for &s in &w.plays.indices {
            genre_plays[w.song_genre[s as usize] as usize] += 1;
        }
        let nnz = w.plays.indices.len() as f64;
        let (mut own, mut base) = (0.0, 0.0);
        for u in 0..cfg.n_users {
            let taste = &w.user_taste[u * d..(u + 1) * d];
            let fav = (0..cfg.n_genres)
                .max_by(|&a, &b| {
                    let n = |g: usize| {
                        dot(taste, &centroid[g * d..(g + 1) * d])
                            / dot(&centroid[g * d..(g + 1) * d], &centroid[g * d..(g + 1) * d]).sqrt()
                    };
                    n(a).total_cmp(&n(b))
                })
                .unwrap_or(0);
            let songs = w.plays.view().row(u).0;
            let in_fav = songs
                .iter()
                .filter(|&&s| w.song_genre[s as usize] as usize == fav)
                .count();
            own += in_fav as f64 / songs.len() as f64;
            base += genre_plays[fav] as f64 / nnz;
        }
        let (own, base) = (own / cfg.n_users as f64, base / cfg.n_users as f64);
        assert!(
            own > 3.0 * base,
            "users put {own:.3} of their plays in their favourite genre, base rate {base:.3}"
        );
        assert!(own > 0.4, "{own}");
    }

    #[test]
    fn deterministic_and_independent_of_threads() {
        let cfg = small(11);
        let one = with_threads(1, || generate_listening(&cfg).unwrap()).unwrap();
        let two = with_threads(2, || generate_listening(&cfg).unwrap()).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, generate_listening(&cfg).unwrap());
    }

    #[test]
    fn different_seeds_give_different_worlds() {
        let a = generate_listening(&small(1)).unwrap();
        let b = generate_listening(&small(2)).unwrap();
        assert_ne!(a.plays, b.plays);
        assert_ne!(a.song_style, b.song_style);
        assert_ne!(a.user_taste, b.user_taste);
    }

    #[test]
    fn taste_blind_world_still_generates() {
        let cfg = WorldConfig {
            taste_strength: 0.0,
            popularity_exponent: 0.0,
            ..small(3)
        };
        let w = generate_listening(&cfg).unwrap();
        let nnz = w.plays.indices.len() as f64;
        assert!((nnz / (cfg.n_users as f64 * cfg.mean_songs_per_user) - 1.0).abs() < 0.15);
        // One genre, as many genres as songs: both extremes are valid.
        for n_genres in [1, 800] {
            let w = generate_listening(&WorldConfig { n_genres, ..small(4) }).unwrap();
            assert_eq!(w.song_genre.iter().map(|&g| g as usize).max(), Some(n_genres - 1));
        }
    }

    #[test]
    fn apportion_gives_every_part_at_least_one() {
        assert_eq!(apportion(10, &[1.0, 1.0]), vec![5, 5]);
        assert_eq!(apportion(3, &[100.0, 1.0, 1.0]), vec![1, 1, 1]);
        let parts = apportion(1000, &[5.0, 1.0, 0.001, 3.0]);
        assert_eq!(parts.iter().sum::<usize>(), 1000);
        assert!(parts.iter().all(|&p| p >= 1) && parts[0] > parts[3] && parts[3] > parts[1]);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = small(0);
        let cases: Vec<(WorldConfig, &str)> = vec![
            (
                WorldConfig {
                    n_users: 0,
                    ..base.clone()
                },
                "n_users",
            ),
            (
                WorldConfig {
                    n_songs: 1,
                    ..base.clone()
                },
                "n_songs",
            ),
            (
                WorldConfig {
                    n_genres: 0,
                    ..base.clone()
                },
                "n_genres",
            ),
            (
                WorldConfig {
                    n_genres: 801,
                    ..base.clone()
                },
                "n_genres",
            ),
            (
                WorldConfig {
                    style_dim: 0,
                    ..base.clone()
                },
                "style_dim",
            ),
            (
                WorldConfig {
                    mean_songs_per_user: 0.5,
                    ..base.clone()
                },
                "mean_songs_per_user",
            ),
            (
                WorldConfig {
                    mean_songs_per_user: 401.0,
                    ..base.clone()
                },
                "mean_songs_per_user",
            ),
            (
                WorldConfig {
                    mean_songs_per_user: f64::NAN,
                    ..base.clone()
                },
                "mean_songs_per_user",
            ),
            (
                WorldConfig {
                    taste_strength: -1.0,
                    ..base.clone()
                },
                "taste_strength",
            ),
            (
                WorldConfig {
                    taste_strength: f64::INFINITY,
                    ..base.clone()
                },
                "taste_strength",
            ),
            (
                WorldConfig {
                    popularity_exponent: f64::NAN,
                    ..base.clone()
                },
                "popularity_exponent",
            ),
        ];
        for (cfg, field) in cases {
            let err = generate_listening(&cfg).unwrap_err().to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
        assert!(WorldConfig::default().validate().is_ok());
        assert!(WorldConfig::paper().validate().is_ok());
    }

    /// Paper size; run with `cargo test --release -- --ignored paper_size` to time it.
    #[test]
    #[ignore]
    fn paper_size_generates() {
        let cfg = WorldConfig::paper();
        let t = std::time::Instant::now();
        let w = generate_listening(&cfg).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let nnz = w.plays.indices.len() as f64;
        eprintln!("paper-size world: {nnz} plays in {secs:.2} s");
        assert!((nnz / (cfg.n_users as f64 * cfg.mean_songs_per_user) - 1.0).abs() < 0.15);
    }
}
