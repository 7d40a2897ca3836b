//! The reference rows of the experiment that use no model: the cold-start popularity
//! ranking (a new song scored by its artist's popularity among the training songs), the
//! training mean (every test song given the training songs' mean vector), and the ranking
//! metrics of the popularity and random rankings of known songs.

use super::metrics::{RankingMetrics, ranking_metrics_with};
use super::numpy_rng::NumpyRng;
use super::vector_errors::{VectorErrors, vector_errors};
use crate::ensure;
use crate::error::Result;
use crate::sparse::CsrRef;
use std::collections::HashMap;

/// A cold-start popularity score for each of the `new` songs: the mean number of listeners
/// (stored plays) of the `known` songs by the same artist, or the mean over all known songs
/// for an unknown ("") or new artist. Uses nothing of the new songs but their artist.
pub fn artist_popularity(plays: CsrRef<'_>, artist_ids: &[String], known: &[usize], new: &[usize]) -> Result<Vec<f64>> {
    ensure!(
        artist_ids.len() == plays.n_cols,
        "{} artist ids for {} songs",
        artist_ids.len(),
        plays.n_cols
    );
    if let Some(&bad) = known.iter().chain(new).find(|&&s| s >= plays.n_cols) {
        return Err(crate::error::Error::invalid(format!(
            "song index {bad} is out of range for {} songs",
            plays.n_cols
        )));
    }
    let mut listeners = vec![0.0f64; plays.n_cols];
    let stored = plays.indptr[plays.n_rows] as usize;
    for &song in &plays.indices[..stored] {
        listeners[song as usize] += 1.0;
    }
    // Sums in the order of `known` (numpy's bincount does the same); the counts are whole
    // numbers, so every sum is exact.
    let mut by_artist: HashMap<&str, (f64, usize)> = HashMap::new();
    for &s in known {
        let entry = by_artist.entry(artist_ids[s].as_str()).or_insert((0.0, 0));
        entry.0 += listeners[s];
        entry.1 += 1;
    }
    let fallback = if known.is_empty() {
        0.0
    } else {
        known.iter().map(|&s| listeners[s]).sum::<f64>() / known.len() as f64
    };
    Ok(new
        .iter()
        .map(
            |&s| match (artist_ids[s].as_str(), by_artist.get(artist_ids[s].as_str())) {
                ("", _) | (_, None) => fallback,
                (_, Some(&(total, count))) => total / count as f64,
            },
        )
        .collect())
}

/// `scores` with ties broken at random (seeded), by less than a millionth of the largest
/// score: the songs of new or unknown artists all get the same fallback score, and a
/// dataset's song order (which may follow popularity) must not decide among them.
pub fn break_ties(scores: &mut [f64], random_state: u64) {
    let largest = scores.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    let scale = largest.max(1.0);
    let mut rng = NumpyRng::new(&[random_state, 2]);
    for s in scores.iter_mut() {
        *s += rng.random() * 1e-6 * scale;
    }
}

/// Table 1's errors of knowing nothing of a song: every `test` song's vector predicted as the
/// mean of the `train` songs' vectors (`vectors` is songs x `k`, row-major).
pub fn training_mean_errors(vectors: &[f32], k: usize, train: &[usize], test: &[usize]) -> Result<VectorErrors> {
    ensure!(
        k > 0 && vectors.len().is_multiple_of(k),
        "vectors of {} values are not rows of {k}",
        vectors.len()
    );
    let n = vectors.len() / k;
    ensure!(!train.is_empty(), "the training mean needs training songs");
    ensure!(
        train.iter().chain(test).all(|&s| s < n),
        "a song index is out of range for {n} songs"
    );
    // Row after row in f32, as numpy's mean over axis 0 of a float32 array adds them.
    let mut mean = vec![0.0f32; k];
    for &s in train {
        for (m, v) in mean.iter_mut().zip(&vectors[s * k..(s + 1) * k]) {
            *m += v;
        }
    }
    for m in mean.iter_mut() {
        *m /= train.len() as f32;
    }
    let predicted: Vec<f32> = test.iter().flat_map(|_| mean.iter().copied()).collect();
    let actual: Vec<f32> = test
        .iter()
        .flat_map(|&s| vectors[s * k..(s + 1) * k].iter().copied())
        .collect();
    vector_errors(&predicted, &actual)
}

/// How many train users played each item: the popularity baseline's score, the same for
/// every user.
pub fn popularity_scores(train: CsrRef<'_>) -> Vec<f32> {
    let mut counts = vec![0f32; train.n_cols];
    for &c in train.indices {
        counts[c as usize] += 1.0;
    }
    counts
}

/// Ranking metrics of the popularity baseline: every user gets the items most train users
/// played, minus their own train items.
pub fn popularity_ranking_metrics(train: CsrRef<'_>, test: CsrRef<'_>, n: usize) -> Result<RankingMetrics> {
    let popularity = popularity_scores(train);
    ranking_metrics_with(train.n_rows, train.n_cols, train, test, n, |_users, items, out| {
        if items.is_empty() {
            return;
        }
        for row in out.chunks_exact_mut(items.len()) {
            row.copy_from_slice(&popularity[items.clone()]);
        }
    })
}

/// Ranking metrics of a random ranking: each (user, item) pair gets a pseudo-random score
/// from a hash of (seed, user, item), so the scores do not depend on how blocks are cut.
pub fn random_ranking_metrics(train: CsrRef<'_>, test: CsrRef<'_>, n: usize, seed: u64) -> Result<RankingMetrics> {
    ranking_metrics_with(train.n_rows, train.n_cols, train, test, n, |users, items, out| {
        let width = items.len();
        if width == 0 {
            return;
        }
        for (u, row) in users.zip(out.chunks_exact_mut(width)) {
            for (i, score) in items.clone().zip(row.iter_mut()) {
                *score = hash_unit(seed, u as u64, i as u64);
            }
        }
    })
}

/// splitmix64 of the mixed key, mapped to [0, 1).
fn hash_unit(seed: u64, a: u64, b: u64) -> f32 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artist_popularity_uses_only_the_known_songs() {
        // listeners per song: 3, 1, 1, 2, 2
        let dense = [
            [1.0, 1.0, 0.0, 1.0, 1.0],
            [1.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 1.0, 0.0, 1.0],
        ];
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for row in dense {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(j as i32);
                    data.push(v as f32);
                }
            }
            indptr.push(indices.len() as i64);
        }
        let plays = CsrRef::new(3, 5, &indptr, &indices, &data).unwrap();
        let ids: Vec<String> = ["a", "a", "b", "", "c"].iter().map(|s| s.to_string()).collect();
        let mean = artist_popularity(plays, &ids, &[0, 1, 2], &[3, 4, 1, 2]).unwrap();
        assert_eq!(mean, [5.0 / 3.0, 5.0 / 3.0, 2.0, 1.0]);
        let mut scores = mean.clone();
        break_ties(&mut scores, 0);
        assert!(scores.iter().zip(&mean).all(|(s, m)| s > m && s - m < 1e-5));
        assert_ne!(scores[0], scores[1]);
    }

    #[test]
    fn the_training_mean_is_the_mean_of_the_training_rows() {
        let vectors = [1.0f32, 2.0, 3.0, 4.0, 10.0, 10.0];
        let e = training_mean_errors(&vectors, 2, &[0, 1], &[2]).unwrap();
        // the mean (2, 3) against (10, 10): errors 8 and 7
        assert!((e.mse - (64.0 + 49.0) / 2.0).abs() < 1e-9 && (e.mae - 7.5).abs() < 1e-9);
        assert!(training_mean_errors(&vectors, 2, &[], &[2]).is_err());
    }
}
