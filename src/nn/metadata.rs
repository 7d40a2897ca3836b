//! Song metadata (tags, artist, release year) to the integer ids the embedding tables read.
//! Vocabularies are fitted on the training songs; id 0 of each is "unknown", which is where
//! unseen artists and tags, rare ones (below `min_count`), songs without tags and unknown
//! years go — so cold-start songs always encode and the unknown embedding is trained.

use crate::ensure;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One song's metadata as the user gives it. Tag weights (e.g. Last.fm's 0-100 strength)
/// weight the pooling of the tag embeddings; use 1.0 when there are none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SongMetadata {
    pub tags: Vec<(String, f32)>,
    pub artist: Option<String>,
    pub year: Option<i32>,
}

/// String -> id with 0 reserved for unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// `words[id - 1]` is the word of id `id`.
    pub words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// Words seen at least `min_count` times, most frequent first (ties by word), at most
    /// `max_size` of them.
    pub fn fit<'a>(words: impl Iterator<Item = &'a str>, min_count: usize, max_size: usize) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for w in words {
            *counts.entry(w).or_default() += 1;
        }
        let mut kept: Vec<(&str, usize)> = counts.into_iter().filter(|&(_, c)| c >= min_count.max(1)).collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        kept.truncate(max_size);
        Self::from_words(kept.into_iter().map(|(w, _)| w.to_string()).collect())
    }

    pub fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 1))
            .collect();
        Vocabulary { words, index }
    }

    /// Number of ids, the unknown one included.
    pub fn len(&self) -> usize {
        self.words.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// Rebuild the lookup table after deserialisation.
    fn reindex(&mut self) {
        *self = Self::from_words(std::mem::take(&mut self.words));
    }
}

/// Vocabulary sizes and year bucketing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataOptions {
    pub min_count: usize,
    pub max_tags: usize,
    pub max_artists: usize,
    /// Release years are grouped into buckets this many years wide.
    pub year_bucket: i32,
    /// What a song's tag weights become (see [`TagWeighting`]).
    #[serde(default)]
    pub tag_weighting: TagWeighting,
}

/// How a song's tag weights (Last.fm's 0-100) enter the models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagWeighting {
    /// Each weight divided by the largest seen in training, so a weight keeps saying how
    /// strongly the tag applies and how many tags a song has counts too. For new artists it
    /// lifted ridge from 0.217 to 0.248 recall@10 on real sound and from 0.152 to 0.186 on
    /// rendered sound; for new songs of known artists it cost 3% (README).
    #[default]
    Strength,
    /// Each song's weights divided by their sum (shares of the song's tagging): the design
    /// before December 2026, and what models saved before then read.
    Share,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            min_count: 2,
            max_tags: 5_000,
            max_artists: 100_000,
            year_bucket: 5,
            tag_weighting: TagWeighting::Strength,
        }
    }
}

/// Fitted vocabularies: the metadata half of a model's input definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataEncoder {
    pub tags: Vocabulary,
    pub artists: Vocabulary,
    /// Known years map to `1 + (year - year_min) / year_bucket`, clamped to the fitted range.
    pub year_min: i32,
    pub year_bucket: i32,
    pub n_years: usize,
    /// With [`TagWeighting::Strength`], the largest tag weight of the training songs, which
    /// every weight is divided by; None (and every model saved before it existed): weights
    /// are shares of each song's total.
    #[serde(default)]
    pub tag_scale: Option<f32>,
}

/// Encoded metadata of many songs: tags as a weighted sparse list per song (strengths, or
/// shares summing to 1: see [`TagWeighting`]), artist and year bucket as one id each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedMetadata {
    pub tag_indptr: Vec<usize>,
    pub tag_ids: Vec<u32>,
    pub tag_weights: Vec<f32>,
    pub artists: Vec<u32>,
    pub years: Vec<u32>,
    /// How many artists / tag occurrences / known years fell to the unknown id.
    pub unknown_artists: usize,
    pub unknown_tags: usize,
}

impl EncodedMetadata {
    pub fn len(&self) -> usize {
        self.artists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.artists.is_empty()
    }
}

impl MetadataEncoder {
    pub fn fit(songs: &[SongMetadata], options: &MetadataOptions) -> Result<Self> {
        ensure!(options.year_bucket > 0, "year_bucket must be positive");
        let tags = Vocabulary::fit(
            songs.iter().flat_map(|s| s.tags.iter().map(|(t, _)| t.as_str())),
            options.min_count,
            options.max_tags,
        );
        let artists = Vocabulary::fit(
            songs.iter().filter_map(|s| s.artist.as_deref()),
            options.min_count,
            options.max_artists,
        );
        let years: Vec<i32> = songs.iter().filter_map(|s| s.year).filter(|&y| y > 0).collect();
        let (year_min, year_max) = match (years.iter().min(), years.iter().max()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0, 0),
        };
        let n_years = if years.is_empty() {
            1
        } else {
            2 + ((year_max - year_min) / options.year_bucket) as usize
        };
        let tag_scale = match options.tag_weighting {
            TagWeighting::Share => None,
            TagWeighting::Strength => Some(
                songs
                    .iter()
                    .flat_map(|s| s.tags.iter().map(|&(_, w)| w))
                    .filter(|w| w.is_finite())
                    .fold(0f32, f32::max),
            )
            .map(|m| if m > 0.0 { m } else { 1.0 }),
        };
        Ok(MetadataEncoder {
            tags,
            artists,
            year_min,
            year_bucket: options.year_bucket,
            n_years,
            tag_scale,
        })
    }

    pub fn year_id(&self, year: Option<i32>) -> u32 {
        match year {
            // Year 0 is the MSD's "unknown".
            Some(y) if y > 0 && self.n_years > 1 => {
                let bucket = (y - self.year_min).div_euclid(self.year_bucket);
                1 + bucket.clamp(0, self.n_years as i32 - 2) as u32
            }
            _ => 0,
        }
    }

    pub fn encode(&self, songs: &[SongMetadata]) -> Result<EncodedMetadata> {
        let mut out = EncodedMetadata {
            tag_indptr: vec![0],
            ..Default::default()
        };
        for (i, song) in songs.iter().enumerate() {
            let start = out.tag_ids.len();
            for (tag, weight) in &song.tags {
                ensure!(
                    weight.is_finite() && *weight >= 0.0,
                    "song {i}: tag {tag:?} has weight {weight}; weights must be finite and >= 0"
                );
                if *weight == 0.0 {
                    continue;
                }
                let id = self.tags.id(tag).unwrap_or_else(|| {
                    out.unknown_tags += 1;
                    0
                });
                // Repeated (or several unknown) tags pool into one entry.
                match out.tag_ids[start..].iter().position(|&t| t == id) {
                    Some(p) => out.tag_weights[start + p] += weight,
                    None => {
                        out.tag_ids.push(id);
                        out.tag_weights.push(*weight);
                    }
                }
            }
            if out.tag_ids.len() == start {
                // No tags: the unknown tag embedding stands for "untagged", at weight 1.
                out.tag_ids.push(0);
                out.tag_weights.push(1.0);
            } else {
                let total: f32 = match self.tag_scale {
                    Some(scale) => scale,
                    None => out.tag_weights[start..].iter().sum(),
                };
                out.tag_weights[start..].iter_mut().for_each(|w| *w /= total);
            }
            out.tag_indptr.push(out.tag_ids.len());
            let artist = match song.artist.as_deref() {
                Some(a) => self.artists.id(a).unwrap_or_else(|| {
                    out.unknown_artists += 1;
                    0
                }),
                None => 0,
            };
            out.artists.push(artist);
            out.years.push(self.year_id(song.year));
        }
        Ok(out)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metadata encoder serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let mut encoder: MetadataEncoder =
            serde_json::from_str(text).map_err(|e| crate::Error::invalid(format!("bad metadata vocabularies: {e}")))?;
        encoder.reindex();
        Ok(encoder)
    }

    /// Rebuild the word lookups, which are not serialised.
    pub fn reindex(&mut self) {
        self.tags.reindex();
        self.artists.reindex();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(tags: &[&str], artist: Option<&str>, year: Option<i32>) -> SongMetadata {
        SongMetadata {
            tags: tags.iter().map(|t| (t.to_string(), 1.0)).collect(),
            artist: artist.map(str::to_string),
            year,
        }
    }

    #[test]
    fn unknowns_map_to_zero_and_weights_normalise() {
        let train = vec![
            song(&["rock", "indie"], Some("a"), Some(1994)),
            song(&["rock"], Some("a"), Some(2003)),
            song(&["indie", "rare"], Some("b"), None),
            song(&["indie"], Some("b"), Some(0)),
        ];
        let share = MetadataOptions {
            tag_weighting: TagWeighting::Share,
            ..MetadataOptions::default()
        };
        let enc = MetadataEncoder::fit(&train, &share).unwrap();
        assert_eq!(enc.tags.words, vec!["indie", "rock"]); // "rare" is below min_count
        assert_eq!(enc.artists.words, vec!["a", "b"]);
        assert_eq!(enc.n_years, 3); // unknown + buckets 1990-94 .. 2000-04
        let coded = enc
            .encode(&[
                song(&["rock", "indie"], Some("a"), Some(1994)),
                song(&[], Some("zzz"), Some(2030)),
                song(&["new", "other", "rock"], None, Some(1950)),
            ])
            .unwrap();
        assert_eq!(coded.tag_indptr, vec![0, 2, 3, 5]);
        assert_eq!(coded.tag_ids, vec![2, 1, 0, 0, 2]);
        assert_eq!(coded.tag_weights, vec![0.5, 0.5, 1.0, 2.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(coded.artists, vec![1, 0, 0]);
        assert_eq!(coded.years, vec![1, 2, 1]);
        assert_eq!((coded.unknown_artists, coded.unknown_tags), (1, 2));
    }

    #[test]
    fn strengths_divide_by_the_largest_training_weight() {
        let tagged = |tags: &[(&str, f32)]| SongMetadata {
            tags: tags.iter().map(|&(t, w)| (t.to_string(), w)).collect(),
            artist: None,
            year: None,
        };
        let train = [
            tagged(&[("rock", 100.0), ("sad", 40.0)]),
            tagged(&[("rock", 50.0), ("sad", 20.0)]),
        ];
        let enc = MetadataEncoder::fit(&train, &MetadataOptions::default()).unwrap();
        assert_eq!(enc.tag_scale, Some(100.0));
        let coded = enc
            .encode(&[
                tagged(&[("rock", 50.0), ("sad", 20.0)]),
                tagged(&[]),
                tagged(&[("new", 30.0)]),
            ])
            .unwrap();
        // Weights keep their strength (a share would make the first song 5/7 and 2/7); an
        // untagged song's unknown entry is 1, an unknown tag keeps its own strength.
        assert_eq!(coded.tag_weights, vec![0.5, 0.2, 1.0, 0.3]);
        assert_eq!(coded.tag_ids, vec![1, 2, 0, 0]);
    }

    #[test]
    fn encoders_saved_without_a_tag_scale_read_shares() {
        let train = [song(&["x", "y"], None, None), song(&["x", "y"], None, None)];
        let enc = MetadataEncoder::fit(&train, &MetadataOptions::default()).unwrap();
        let mut old: serde_json::Value = serde_json::from_str(&enc.to_json()).unwrap();
        old.as_object_mut().unwrap().remove("tag_scale");
        let back = MetadataEncoder::from_json(&old.to_string()).unwrap();
        assert_eq!(back.tag_scale, None);
        let coded = back.encode(&[song(&["x", "y"], None, None)]).unwrap();
        assert_eq!(coded.tag_weights, vec![0.5, 0.5]);
        let options: MetadataOptions =
            serde_json::from_str(r#"{"min_count":2,"max_tags":5,"max_artists":5,"year_bucket":5}"#).unwrap();
        assert_eq!(options.tag_weighting, TagWeighting::Strength);
    }

    #[test]
    fn json_round_trip_restores_lookup() {
        let enc = MetadataEncoder::fit(
            &[song(&["x"], Some("a"), Some(2000)), song(&["x"], Some("a"), None)],
            &MetadataOptions::default(),
        )
        .unwrap();
        let back = MetadataEncoder::from_json(&enc.to_json()).unwrap();
        assert_eq!(back.tags.id("x"), Some(1));
        assert_eq!(back.artists.id("a"), Some(1));
        assert_eq!(back, enc);
    }

    #[test]
    fn negative_weight_is_refused() {
        let enc = MetadataEncoder::fit(&[], &MetadataOptions::default()).unwrap();
        let bad = SongMetadata {
            tags: vec![("x".into(), -1.0)],
            ..Default::default()
        };
        assert!(enc.encode(&[bad]).is_err());
    }
}
