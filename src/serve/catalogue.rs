//! The serving core: one catalogue of users and songs (the known songs with their WMF vectors,
//! then the songs added from content), the rankings over it (exact Top-N by inner product,
//! songs similar by cosine, the audience of a song), fold-in of a user from plays, and a new
//! song's vector from its audio and metadata. `musrec.Recommender` and the edge service both
//! run this code, so a notebook result and a served result cannot differ.
//!
//! Reads take `&self` and writes `&mut self`; the service keeps the catalogue behind a lock
//! and computes a new song's vector (the slow part) outside it.

use super::bundle::{Bundle, Manifest};
use crate::audio::clip::ClipPosition;
use crate::audio::extract::extract;
use crate::audio::features::FeatureConfig;
use crate::ensure;
use crate::error::{Error, Result};
use crate::nn::{FusionModel, SongMetadata, Songs};
use crate::parallel::{Threads, ignore_progress};
use crate::sparse::CsrRef;
use crate::topk::{Exclusions, Screened, top_n, unit_rows};
use crate::wmf::{WmfParams, fold_in_gram, fold_in_with_gram};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The largest list length the edge service returns (the library takes any length).
pub const MAX_N: usize = 10_000;

/// A new song's audio: a file to decode, or log-Mel features already computed
/// (excerpts x n_mels x frames, row-major).
#[derive(Clone, Debug)]
pub enum AudioInput {
    File(PathBuf),
    LogMel(Vec<f32>),
}

/// A ranking: ids and scores, best first.
pub type Ranked = Vec<(String, f32)>;

pub struct Catalogue {
    model_version: String,
    params: WmfParams,
    features: FeatureConfig,
    excerpts: usize,
    k: usize,
    user_ids: Vec<String>,
    user_index: HashMap<String, usize>,
    /// n_users x k.
    user_factors: Vec<f32>,
    /// Each user's plays, (song index, count) sorted by song.
    played: Vec<Vec<(i32, f32)>>,
    song_ids: Vec<String>,
    song_index: HashMap<String, usize>,
    /// n_songs x k: the known songs, then the added ones.
    song_factors: Vec<f32>,
    /// `song_factors` scaled to unit length, for cosine similarity.
    unit: Vec<f32>,
    /// int8 screens of `song_factors` and `unit`: a single query reads a quarter of the bytes
    /// and scores only the rows that can make its Top-N in f32 (exact; see `topk::Screened`).
    screen: Screened,
    screen_unit: Screened,
    n_known: usize,
    /// Y^T Y + reg I over the known songs and over all songs: what each fold-in reuses.
    gram_known: Vec<f32>,
    gram_all: Vec<f32>,
    fusion: Option<FusionModel>,
    edge_offsets: BTreeMap<String, u64>,
    threads: Threads,
}

fn check_n(n: usize) -> Result<()> {
    ensure!(n >= 1, "N must be a positive integer, got {n}");
    Ok(())
}

impl Catalogue {
    /// A catalogue of the bundle's users and songs; `num_threads` (0 = one per core) bounds
    /// the threads that rankings and fold-ins use.
    pub fn from_bundle(bundle: Bundle, num_threads: usize) -> Result<Self> {
        bundle.validate()?;
        let k = bundle.wmf.factors;
        let fusion = match &bundle.fusion {
            Some(bytes) => {
                let model = FusionModel::from_bytes(bytes, Path::new("fusion.safetensors"))?;
                let n_factors = model.fitted()?.net.config.n_factors;
                ensure!(
                    n_factors == k,
                    "the content model predicts {n_factors}-dimensional vectors but WMF has {k} factors"
                );
                Some(model)
            }
            None => None,
        };
        let plays = &bundle.plays;
        let played = (0..plays.n_rows)
            .map(|u| {
                let (lo, hi) = (plays.indptr[u] as usize, plays.indptr[u + 1] as usize);
                plays.indices[lo..hi]
                    .iter()
                    .copied()
                    .zip(plays.data[lo..hi].iter().copied())
                    .collect()
            })
            .collect();
        let index = |ids: &[String]| ids.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        let threads = Threads::new(num_threads)?;
        let unit = unit_rows(&bundle.song_factors, k);
        let (screen, screen_unit) =
            threads.run(|| rayon::join(|| Screened::new(&bundle.song_factors, k), || Screened::new(&unit, k)));
        let gram_known = threads.run(|| fold_in_gram(&bundle.wmf, &bundle.song_factors[..bundle.n_known * k]));
        let gram_all = if bundle.n_known == bundle.song_ids.len() {
            gram_known.clone()
        } else {
            threads.run(|| fold_in_gram(&bundle.wmf, &bundle.song_factors))
        };
        Ok(Catalogue {
            model_version: bundle.model_version.clone().unwrap_or_else(|| "unversioned".into()),
            params: bundle.wmf,
            features: bundle.features,
            excerpts: bundle.excerpts,
            k,
            user_index: index(&bundle.user_ids),
            user_ids: bundle.user_ids,
            user_factors: bundle.user_factors,
            played,
            song_index: index(&bundle.song_ids),
            n_known: bundle.n_known,
            gram_known,
            gram_all,
            song_ids: bundle.song_ids,
            unit,
            screen,
            screen_unit,
            song_factors: bundle.song_factors,
            fusion,
            edge_offsets: bundle.edge_offsets,
            threads,
        })
    }

    /// Read and verify a bundle directory; see [`Bundle::read`].
    pub fn open(dir: &Path, num_threads: usize) -> Result<(Self, Manifest)> {
        let (bundle, manifest) = Bundle::read(dir)?;
        Ok((Self::from_bundle(bundle, num_threads)?, manifest))
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }
    pub fn factors(&self) -> usize {
        self.k
    }
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_songs(&self) -> usize {
        self.song_ids.len()
    }
    pub fn n_known(&self) -> usize {
        self.n_known
    }
    pub fn user_ids(&self) -> &[String] {
        &self.user_ids
    }
    pub fn song_ids(&self) -> &[String] {
        &self.song_ids
    }
    pub fn song_factors(&self) -> &[f32] {
        &self.song_factors
    }
    pub fn user_factors(&self) -> &[f32] {
        &self.user_factors
    }
    pub fn params(&self) -> &WmfParams {
        &self.params
    }
    pub fn features(&self) -> &FeatureConfig {
        &self.features
    }
    pub fn excerpts(&self) -> usize {
        self.excerpts
    }
    pub fn edge_offsets(&self) -> &BTreeMap<String, u64> {
        &self.edge_offsets
    }
    pub fn has_content_model(&self) -> bool {
        self.fusion.is_some()
    }

    fn check_vector(&self, vector: &[f32], what: &str) -> Result<()> {
        ensure!(
            vector.len() == self.k,
            "a {what} vector has {} values, expected {}",
            vector.len(),
            self.k
        );
        ensure!(
            vector.iter().all(|v| v.is_finite()),
            "the {what} vector has NaN or infinite values"
        );
        Ok(())
    }

    pub fn user(&self, user_id: &str) -> Result<usize> {
        self.user_index
            .get(user_id)
            .copied()
            .ok_or_else(|| Error::UnknownId(format!("unknown user {user_id:?}")))
    }

    pub fn song(&self, song_id: &str) -> Result<usize> {
        self.song_index
            .get(song_id)
            .copied()
            .ok_or_else(|| Error::UnknownId(format!("unknown song {song_id:?}")))
    }

    pub fn is_new(&self, song_id: &str) -> Result<bool> {
        Ok(self.song(song_id)? >= self.n_known)
    }

    /// The user's plays as (song id, count), by catalogue order.
    pub fn plays_of(&self, user_id: &str) -> Result<Vec<(String, f32)>> {
        let u = self.user(user_id)?;
        Ok(self.played[u]
            .iter()
            .map(|&(s, c)| (self.song_ids[s as usize].clone(), c))
            .collect())
    }

    /// The best `n` rows of `items` for one query. Over a whole table (`candidates` None)
    /// with its `screen`, the int8 screen picks the rows to score; the result is the same.
    fn top(
        &self,
        query: &[f32],
        items: &[f32],
        n: usize,
        skip: &[i32],
        candidates: Option<&[i32]>,
        screen: Option<&Screened>,
    ) -> Result<Vec<(usize, f32)>> {
        if let (Some(screen), None) = (screen, candidates) {
            return Ok(screen
                .top_n(query, items, n, skip)
                .into_iter()
                .map(|(i, s)| (i as usize, s))
                .collect());
        }
        let exclusions = Exclusions {
            per_query: None,
            global: skip,
        };
        let (ids, scores) = self
            .threads
            .run(|| top_n(query, items, self.k, n, exclusions, candidates))?;
        Ok(ids
            .into_iter()
            .zip(scores)
            .filter(|&(i, s)| i >= 0 && s > f32::NEG_INFINITY)
            .map(|(i, s)| (i as usize, s))
            .collect())
    }

    fn named(&self, ranked: Vec<(usize, f32)>, ids: &[String]) -> Ranked {
        ranked.into_iter().map(|(i, s)| (ids[i].clone(), s)).collect()
    }

    /// Top-`n` songs for a user vector, known and new alike, leaving out the songs in `skip`
    /// (sorted); `only_new` ranks only the songs added from content.
    pub fn rank_for_vector(&self, user: &[f32], n: usize, skip: &[i32], only_new: bool) -> Result<Ranked> {
        check_n(n)?;
        self.check_vector(user, "user")?;
        let new: Vec<i32>;
        let candidates = if only_new {
            ensure!(
                self.n_songs() > self.n_known,
                "no new songs in the catalogue: add some from their content first"
            );
            new = (self.n_known as i32..self.n_songs() as i32).collect();
            Some(new.as_slice())
        } else {
            None
        };
        let ranked = self.top(user, &self.song_factors, n, skip, candidates, Some(&self.screen))?;
        Ok(self.named(ranked, &self.song_ids))
    }

    /// Top-`n` songs for a known user; `exclude_played` leaves out what they played.
    pub fn recommend(&self, user_id: &str, n: usize, exclude_played: bool, only_new: bool) -> Result<Ranked> {
        let u = self.user(user_id)?;
        let skip: Vec<i32> = if exclude_played {
            self.played[u].iter().map(|p| p.0).collect()
        } else {
            Vec::new()
        };
        self.rank_for_vector(&self.user_factors[u * self.k..(u + 1) * self.k], n, &skip, only_new)
    }

    /// (sorted song indices, counts) of `plays`, checked; repeated songs add up.
    fn play_row(&self, plays: &[(String, f32)], known_only: bool) -> Result<Vec<(i32, f32)>> {
        ensure!(!plays.is_empty(), "plays must name at least one song");
        let mut row: BTreeMap<i32, f32> = BTreeMap::new();
        for (song, count) in plays {
            let s = self.song(song)?;
            ensure!(
                !known_only || s < self.n_known,
                "plays can only name songs with listening history (not songs added from content): {song:?}"
            );
            ensure!(
                count.is_finite() && *count > 0.0,
                "play counts must be positive numbers, got {count} for {song:?}"
            );
            *row.entry(s as i32).or_default() += count;
        }
        Ok(row.into_iter().collect())
    }

    /// The exact WMF vector of a user with these plays against the current song vectors.
    fn fold(&self, row: &[(i32, f32)], n_cols: usize) -> Result<Vec<f32>> {
        let indptr = [0i64, row.len() as i64];
        let indices: Vec<i32> = row.iter().map(|p| p.0).collect();
        let data: Vec<f32> = row.iter().map(|p| p.1).collect();
        let csr = CsrRef::new(1, n_cols, &indptr, &indices, &data)?;
        let gram = if n_cols == self.n_known {
            &self.gram_known
        } else {
            &self.gram_all
        };
        fold_in_with_gram(
            &self.params,
            &self.song_factors[..n_cols * self.k],
            gram,
            csr,
            &self.threads,
        )
    }

    /// The vector a user with `plays` (song id, count) of known songs would have, folded in
    /// exactly against the known songs' vectors without refitting.
    pub fn fold_in_plays(&self, plays: &[(String, f32)]) -> Result<Vec<f32>> {
        let row = self.play_row(plays, true)?;
        self.fold(&row, self.n_known)
    }

    /// Top-`n` for a user the catalogue has never seen, from their plays of known songs
    /// (which are left out of the list).
    pub fn recommend_for_plays(&self, plays: &[(String, f32)], n: usize, only_new: bool) -> Result<Ranked> {
        let row = self.play_row(plays, true)?;
        let user = self.fold(&row, self.n_known)?;
        let skip: Vec<i32> = row.iter().map(|p| p.0).collect();
        self.rank_for_vector(&user, n, if only_new { &[] } else { &skip }, only_new)
    }

    /// Add `plays` to a user's history (a new user id is added) and fold their vector in
    /// again at once against every song of the catalogue, new songs included.
    pub fn record_plays(&mut self, user_id: &str, plays: &[(String, f32)]) -> Result<()> {
        ensure!(
            !user_id.is_empty() && user_id.len() <= 256,
            "a user id must be 1-256 characters, got {} characters",
            user_id.len()
        );
        let added = self.play_row(plays, false)?;
        let u = self.user_index.get(user_id).copied();
        let mut merged: BTreeMap<i32, f32> = u.map_or_else(BTreeMap::new, |u| self.played[u].iter().copied().collect());
        for (s, c) in added {
            *merged.entry(s).or_default() += c;
        }
        let row: Vec<(i32, f32)> = merged.into_iter().collect();
        let vector = self.fold(&row, self.n_songs())?;
        let u = match u {
            Some(u) => u,
            None => {
                self.user_index.insert(user_id.to_string(), self.user_ids.len());
                self.user_ids.push(user_id.to_string());
                self.user_factors.extend(std::iter::repeat_n(0.0, self.k));
                self.played.push(Vec::new());
                self.user_ids.len() - 1
            }
        };
        self.user_factors[u * self.k..(u + 1) * self.k].copy_from_slice(&vector);
        self.played[u] = row;
        Ok(())
    }

    /// Top-`n` catalogue songs by cosine similarity to a catalogue song (itself left out).
    pub fn similar(&self, song_id: &str, n: usize) -> Result<Ranked> {
        check_n(n)?;
        let s = self.song(song_id)?;
        let query = &self.unit[s * self.k..(s + 1) * self.k];
        let ranked = self.top(query, &self.unit, n, &[s as i32], None, Some(&self.screen_unit))?;
        Ok(self.named(ranked, &self.song_ids))
    }

    /// Top-`n` catalogue songs by cosine similarity to any song vector.
    pub fn similar_to_vector(&self, vector: &[f32], n: usize) -> Result<Ranked> {
        check_n(n)?;
        self.check_vector(vector, "song")?;
        let query = unit_rows(vector, self.k);
        let ranked = self.top(&query, &self.unit, n, &[], None, Some(&self.screen_unit))?;
        Ok(self.named(ranked, &self.song_ids))
    }

    /// The `n` users with the highest predicted preference for a song vector.
    pub fn audience_of_vector(&self, vector: &[f32], n: usize) -> Result<Ranked> {
        check_n(n)?;
        self.check_vector(vector, "song")?;
        let ranked = self.top(vector, &self.user_factors, n, &[], None, None)?;
        Ok(self.named(ranked, &self.user_ids))
    }

    /// The `n` users to push a catalogue song to.
    pub fn audience(&self, song_id: &str, n: usize) -> Result<Ranked> {
        let s = self.song(song_id)?;
        self.audience_of_vector(&self.song_factors[s * self.k..(s + 1) * self.k], n)
    }

    /// The shape of one song's log-Mel input: (excerpts, n_mels, frames).
    pub fn log_mel_shape(&self) -> Result<(usize, usize, usize)> {
        let (_, n_mels, frames) = crate::audio::extract::plan_transform(&self.features)?;
        Ok((self.excerpts, n_mels, frames))
    }

    /// The log-Mel features of an audio file as the content model reads them: `excerpts`
    /// excerpts spread over the file (or the configured one when there is one excerpt).
    pub fn log_mel_of_file(&self, path: &Path) -> Result<Vec<f32>> {
        let configs: Vec<FeatureConfig> = if self.excerpts == 1 {
            vec![self.features.clone()]
        } else {
            (0..self.excerpts)
                .map(|index| FeatureConfig {
                    position: ClipPosition::Spread {
                        index,
                        count: self.excerpts,
                    },
                    ..self.features.clone()
                })
                .collect()
        };
        let mut out = Vec::new();
        let paths = [path.to_path_buf()];
        for cfg in &configs {
            let result = extract(&paths, cfg, &self.threads, &mut ignore_progress)?;
            if let Some(failure) = result.failures.first() {
                return Err(Error::invalid(format!(
                    "cannot use the audio: {}: {}",
                    failure.kind.as_str(),
                    failure.message
                )));
            }
            out.extend_from_slice(&result.features);
        }
        Ok(out)
    }

    /// A song's predicted vector from its content; the model's kind decides which of the
    /// audio and the metadata it reads (the other may be `None`).
    pub fn song_vector(&self, audio: Option<&AudioInput>, metadata: &SongMetadata) -> Result<Vec<f32>> {
        let model = self.fusion.as_ref().ok_or_else(|| {
            Error::invalid("this catalogue has no content model, so songs cannot be added from content")
        })?;
        let kind = model.kind();
        let (excerpts, n_mels, frames) = self.log_mel_shape()?;
        let spec = if kind.uses_audio() {
            match audio {
                None => {
                    return Err(Error::invalid(format!(
                        "a {kind:?} model needs the song's audio (a file or a log-Mel array)"
                    )));
                }
                Some(AudioInput::File(path)) => self.log_mel_of_file(path)?,
                Some(AudioInput::LogMel(values)) => {
                    ensure!(
                        values.len() == excerpts * n_mels * frames,
                        "a log-Mel input must hold excerpts x n_mels x frames = {excerpts} x {n_mels} x {frames} \
                         values for these features, got {}",
                        values.len()
                    );
                    ensure!(
                        values.iter().all(|v| v.is_finite()),
                        "the log-Mel input has NaN or infinite values"
                    );
                    values.clone()
                }
            }
        } else {
            Vec::new()
        };
        let meta = [metadata.clone()];
        let songs = Songs {
            n: 1,
            spectrograms: kind.uses_audio().then_some(spec.as_slice()),
            n_excerpts: excerpts,
            n_mels,
            n_frames: frames,
            metadata: kind.uses_metadata().then_some(&meta[..]),
            targets: None,
            n_factors: self.k,
        };
        model.predict(&songs, 1, &self.threads)
    }

    /// Every user's plays as a users x songs matrix.
    pub fn plays(&self) -> crate::sparse::Csr {
        let mut plays = crate::sparse::Csr {
            n_rows: self.n_users(),
            n_cols: self.n_songs(),
            indptr: Vec::with_capacity(self.n_users() + 1),
            indices: Vec::new(),
            data: Vec::new(),
        };
        plays.indptr.push(0);
        for row in &self.played {
            plays.indices.extend(row.iter().map(|p| p.0));
            plays.data.extend(row.iter().map(|p| p.1));
            plays.indptr.push(plays.indices.len() as i64);
        }
        plays
    }

    /// The content model's file bytes, if the catalogue has one.
    pub fn content_model_bytes(&self) -> Result<Option<Vec<u8>>> {
        self.fusion.as_ref().map(FusionModel::to_bytes).transpose()
    }

    /// The catalogue as a bundle to write: its users (folded-in ones included) with their
    /// plays, its songs (added ones after the known ones), the content model.
    pub fn to_bundle(&self) -> Result<Bundle> {
        let plays = self.plays();
        let fusion = self.content_model_bytes()?;
        Ok(Bundle {
            model_version: None,
            wmf: self.params.clone(),
            features: self.features.clone(),
            excerpts: self.excerpts,
            user_ids: self.user_ids.clone(),
            song_ids: self.song_ids.clone(),
            user_factors: self.user_factors.clone(),
            song_factors: self.song_factors.clone(),
            n_known: self.n_known,
            plays,
            fusion,
            edge_offsets: self.edge_offsets.clone(),
        })
    }

    /// Put a song with a known vector into the catalogue; recommendable from then on.
    pub fn add_song(&mut self, song_id: &str, vector: &[f32]) -> Result<()> {
        ensure!(
            !song_id.is_empty() && song_id.len() <= 256,
            "a song id must be 1-256 characters, got {} characters",
            song_id.len()
        );
        ensure!(
            !self.song_index.contains_key(song_id),
            "song {song_id:?} is already in the catalogue"
        );
        self.check_vector(vector, "song")?;
        self.song_index.insert(song_id.to_string(), self.song_ids.len());
        self.song_ids.push(song_id.to_string());
        self.song_factors.extend_from_slice(vector);
        let unit = unit_rows(vector, self.k);
        self.screen.push_rows(vector);
        self.screen_unit.push_rows(&unit);
        self.unit.extend(unit);
        // Y^T Y grows by the new row's outer product.
        for (i, gi) in self.gram_all.chunks_exact_mut(self.k).enumerate() {
            for (g, v) in gi.iter_mut().zip(vector) {
                *g += vector[i] * v;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::bundle::tests::tiny_bundle;

    fn catalogue() -> Catalogue {
        Catalogue::from_bundle(tiny_bundle(), 1).unwrap()
    }

    fn brute_force(query: &[f32], items: &[f32], k: usize, skip: &[usize]) -> Vec<usize> {
        let mut scored: Vec<(usize, f32)> = items
            .chunks_exact(k)
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(i, row)| (i, row.iter().zip(query).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().map(|p| p.0).collect()
    }

    #[test]
    fn recommend_is_exact_and_leaves_out_plays() {
        let c = catalogue();
        let b = tiny_bundle();
        let k = c.factors();
        let u = 4;
        let played: Vec<usize> = c.played[u].iter().map(|p| p.0 as usize).collect();
        assert!(!played.is_empty());
        let expected = brute_force(&b.user_factors[u * k..(u + 1) * k], &b.song_factors, k, &played);
        let got = c.recommend("user4", 10, true, false).unwrap();
        let got_idx: Vec<usize> = got.iter().map(|(s, _)| c.song(s).unwrap()).collect();
        assert_eq!(got_idx, expected[..10]);
        let with_played = c.recommend("user4", 40, false, false).unwrap();
        assert_eq!(with_played.len(), 40);
        assert!(matches!(
            c.recommend("nobody", 10, true, false),
            Err(Error::UnknownId(_))
        ));
        assert!(c.recommend("user4", 0, true, false).is_err());
        assert_eq!(c.recommend("user4", MAX_N + 1, false, false).unwrap().len(), 40);
        assert!(
            c.recommend("user4", 10, true, true)
                .unwrap_err()
                .to_string()
                .contains("no new songs")
        );
    }

    #[test]
    fn added_songs_are_ranked_and_only_new_ranks_them_alone() {
        let mut c = catalogue();
        let k = c.factors();
        let user: Vec<f32> = c.user_factors()[..k].to_vec();
        // A song pointing exactly along user0 scores highest for them.
        let boosted: Vec<f32> = user.iter().map(|v| v * 100.0).collect();
        c.add_song("fresh", &boosted).unwrap();
        c.add_song("other", &vec![0.01; k]).unwrap();
        assert!(
            c.add_song("fresh", &boosted)
                .unwrap_err()
                .to_string()
                .contains("already")
        );
        assert!(c.add_song("bad", &vec![f32::NAN; k]).is_err());
        let top = c.recommend("user0", 3, true, false).unwrap();
        assert_eq!(top[0].0, "fresh");
        let new = c.recommend("user0", 10, true, true).unwrap();
        let names: Vec<&str> = new.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["fresh", "other"]);
        assert!(c.is_new("fresh").unwrap() && !c.is_new("song0").unwrap());
        let similar = c.similar("fresh", 5).unwrap();
        assert!(similar.iter().all(|(s, _)| s != "fresh"));
        let audience = c.audience("fresh", 1).unwrap();
        let best = brute_force(&boosted, c.user_factors(), k, &[])[0];
        assert_eq!(audience[0].0, c.user_ids()[best]);
    }

    #[test]
    fn similar_is_cosine() {
        let c = catalogue();
        let k = c.factors();
        let unit = unit_rows(c.song_factors(), k);
        let expected = brute_force(&unit[3 * k..4 * k], &unit, k, &[3]);
        let got: Vec<usize> = c
            .similar("song3", 5)
            .unwrap()
            .iter()
            .map(|(s, _)| c.song(s).unwrap())
            .collect();
        assert_eq!(got, expected[..5]);
        let scores: Vec<f32> = c.similar("song3", 5).unwrap().iter().map(|p| p.1).collect();
        assert!(scores.iter().all(|s| *s <= 1.0 + 1e-5));
    }

    #[test]
    fn recorded_plays_fold_the_user_in_at_once() {
        let mut c = catalogue();
        let plays = vec![("song5".to_string(), 3.0), ("song9".to_string(), 1.0)];
        let expected = c.fold_in_plays(&plays).unwrap();
        c.record_plays("newcomer", &plays).unwrap();
        let u = c.user("newcomer").unwrap();
        let k = c.factors();
        assert_eq!(&c.user_factors()[u * k..(u + 1) * k], expected.as_slice());
        // More plays add up and move the vector; recommendations leave them out.
        c.record_plays("newcomer", &[("song5".to_string(), 2.0)]).unwrap();
        assert_eq!(
            c.plays_of("newcomer").unwrap(),
            vec![("song5".into(), 5.0), ("song9".into(), 1.0)]
        );
        let recs = c.recommend("newcomer", 38, true, false).unwrap();
        assert!(recs.iter().all(|(s, _)| s != "song5" && s != "song9"));
        assert!(c.record_plays("newcomer", &[("song5".to_string(), -1.0)]).is_err());
        assert!(c.record_plays("newcomer", &[("nope".to_string(), 1.0)]).is_err());
        assert!(c.record_plays("newcomer", &[]).is_err());
        // The same as recommend_for_plays for a user with only those plays.
        let anonymous = c.recommend_for_plays(&plays, 5, false).unwrap();
        assert_eq!(anonymous.len(), 5);
    }

    #[test]
    fn the_kept_gram_matrix_follows_added_songs() {
        let mut c = catalogue();
        let k = c.factors();
        c.add_song("a", &vec![0.3; k]).unwrap();
        c.add_song("b", &(0..k).map(|i| i as f32 / 10.0).collect::<Vec<_>>())
            .unwrap();
        let fresh = fold_in_gram(&c.params, c.song_factors());
        let worst = fresh
            .iter()
            .zip(&c.gram_all)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
        let plays = vec![("a".to_string(), 2.0), ("song3".to_string(), 1.0)];
        c.record_plays("mixed", &plays).unwrap();
        let u = c.user("mixed").unwrap();
        let row = c.play_row(&plays, false).unwrap();
        let indptr = [0i64, row.len() as i64];
        let (indices, data): (Vec<i32>, Vec<f32>) = row.into_iter().unzip();
        let csr = CsrRef::new(1, c.n_songs(), &indptr, &indices, &data).unwrap();
        let exact = crate::wmf::fold_in(&c.params, c.song_factors(), csr, &c.threads).unwrap();
        let got = &c.user_factors()[u * k..(u + 1) * k];
        assert!(got.iter().zip(&exact).all(|(a, b)| (a - b).abs() < 1e-4));
    }

    #[test]
    fn no_content_model_is_a_clear_error() {
        let c = catalogue();
        let err = c.song_vector(None, &SongMetadata::default()).unwrap_err();
        assert!(err.to_string().contains("no content model"), "{err}");
    }
}
