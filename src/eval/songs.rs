//! The experiment's split of the songs: training and cold-start test songs, and within the
//! training songs the validation songs early stopping watches. Either at random, or by whole
//! artists, so that no held-out song's artist is seen (a song without an artist is its own
//! group). Seeded by `random_state` through numpy's generator (`numpy_rng`), as when the split
//! was numpy's, so a seed still gives the same split.

use super::numpy_rng::NumpyRng;
use crate::ensure;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// What the split holds out: single songs, or whole artists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitBy {
    Songs,
    Artists,
}

impl SplitBy {
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "songs" => Ok(SplitBy::Songs),
            "artists" => Ok(SplitBy::Artists),
            other => Err(Error::invalid(format!(
                "split must be 'songs' or 'artists', got {other:?}"
            ))),
        }
    }
}

/// `round(x)` as Python rounds a float: half to even.
fn python_round(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// (training songs, test songs), each sorted, among the `usable` songs: `test_fraction` of
/// them (at least one, rounded half to even) held out. `artist_ids` has one entry per song,
/// "" for an unknown artist.
pub fn split_songs(
    usable: &[bool],
    artist_ids: &[String],
    test_fraction: f64,
    by: SplitBy,
    random_state: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        test_fraction > 0.0 && test_fraction < 1.0,
        "test_fraction must be in (0, 1), got {test_fraction}"
    );
    let candidates: Vec<usize> = (0..usable.len()).filter(|&i| usable[i]).collect();
    let n_test = python_round(candidates.len() as f64 * test_fraction).max(1);
    ensure!(
        n_test < candidates.len(),
        "{} usable songs are too few to hold out {:.0}%",
        candidates.len(),
        test_fraction * 100.0
    );
    let mut rng = NumpyRng::new(&[random_state]);
    match by {
        SplitBy::Songs => {
            let mut order = candidates;
            rng.shuffle(&mut order);
            let mut test = order[..n_test].to_vec();
            let mut train = order[n_test..].to_vec();
            train.sort_unstable();
            test.sort_unstable();
            Ok((train, test))
        }
        SplitBy::Artists => hold_out_artists(&candidates, n_test, artist_ids, &mut rng),
    }
}

/// (songs to fit on, validation songs) of the training songs: with `SplitBy::Artists` a
/// tenth of them as whole artists (so early stopping and the ridge penalties are chosen for
/// unseen artists, as the test songs are); with `SplitBy::Songs` none (`None`: the model
/// draws its own random tenth).
pub fn validation_songs(
    train: &[usize],
    artist_ids: &[String],
    by: SplitBy,
    random_state: u64,
) -> Result<(Vec<usize>, Option<Vec<usize>>)> {
    if by == SplitBy::Songs {
        return Ok((train.to_vec(), None));
    }
    let mut rng = NumpyRng::new(&[random_state, 1]);
    let n = python_round(0.1 * train.len() as f64).max(1);
    let (fit, validation) = hold_out_artists(train, n, artist_ids, &mut rng)?;
    Ok((fit, Some(validation)))
}

/// (kept, held out) of `songs`: whole artists, in an order drawn by `rng`, until they make at
/// least `n` songs.
fn hold_out_artists(
    songs: &[usize],
    n: usize,
    artist_ids: &[String],
    rng: &mut NumpyRng,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if let Some(&last) = songs.iter().max() {
        ensure!(
            last < artist_ids.len(),
            "song {last} has no artist id ({} artist ids)",
            artist_ids.len()
        );
    }
    // Groups in sorted order of their names, as numpy's unique gives them.
    let group_name = |s: usize| match artist_ids[s].as_str() {
        "" => format!("\0song{s}"),
        artist => artist.to_string(),
    };
    let mut groups: BTreeMap<String, usize> = songs.iter().map(|&s| (group_name(s), 0)).collect();
    for (index, value) in groups.values_mut().enumerate() {
        *value = index;
    }
    let of_song: Vec<usize> = songs.iter().map(|&s| groups[&group_name(s)]).collect();
    let mut sizes = vec![0usize; groups.len()];
    for &g in &of_song {
        sizes[g] += 1;
    }
    let drawn = rng.permutation(groups.len());
    // The shortest prefix of the drawn artists with at least n songs (all of them if none).
    let mut total = 0;
    let taken = drawn
        .iter()
        .position(|&g| {
            total += sizes[g];
            total >= n
        })
        .map_or(drawn.len(), |k| k + 1);
    let mut out = vec![false; groups.len()];
    for &g in &drawn[..taken] {
        out[g] = true;
    }
    ensure!(
        of_song.iter().any(|&g| !out[g]),
        "{} artists are too few to hold out {n} of {} songs",
        groups.len(),
        songs.len()
    );
    let (mut held, mut kept) = (Vec::new(), Vec::new());
    for (&s, &g) in songs.iter().zip(&of_song) {
        if out[g] { held.push(s) } else { kept.push(s) }
    }
    kept.sort_unstable();
    held.sort_unstable();
    Ok((kept, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artists(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_song_split_holds_out_the_fraction_and_keeps_the_rest() {
        let usable: Vec<bool> = (0..50).map(|i| i % 7 != 3).collect();
        let ids = vec![String::new(); 50];
        let (train, test) = split_songs(&usable, &ids, 0.2, SplitBy::Songs, 3).unwrap();
        assert_eq!(test.len(), 9); // round(43 * 0.2) = round(8.6)
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).filter(|i| i % 7 != 3).collect::<Vec<_>>());
        assert!(train.windows(2).all(|w| w[0] < w[1]) && test.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split_songs(&usable, &ids, 0.2, SplitBy::Songs, 3).unwrap().1, test);
        assert_ne!(split_songs(&usable, &ids, 0.2, SplitBy::Songs, 4).unwrap().1, test);
        let err = split_songs(&[true, false], &ids, 0.2, SplitBy::Songs, 0).unwrap_err();
        assert!(
            err.to_string().contains("1 usable songs are too few to hold out 20%"),
            "{err}"
        );
        assert_eq!(
            validation_songs(&train, &ids, SplitBy::Songs, 3).unwrap(),
            (train, None)
        );
    }

    #[test]
    fn an_artist_split_holds_out_whole_artists() {
        let ids = artists(&["a", "a", "b", "b", "b", "c", "", "", "d", "d", "e", "e"]);
        let usable = vec![true; ids.len()];
        for seed in 0..20 {
            let (train, test) = split_songs(&usable, &ids, 0.25, SplitBy::Artists, seed).unwrap();
            assert!(test.len() >= 3 && !train.is_empty());
            for &t in &test {
                // "" songs are each their own group; a named artist is never on both sides
                assert!(
                    ids[t].is_empty() || train.iter().all(|&s| ids[s] != ids[t]),
                    "seed {seed}"
                );
            }
            let (fit, validation) = validation_songs(&train, &ids, SplitBy::Artists, seed).unwrap();
            let validation = validation.unwrap();
            assert_eq!(fit.len() + validation.len(), train.len());
        }
        let err = split_songs(&usable, &artists(&["a"; 12]), 0.25, SplitBy::Artists, 0).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 artists are too few to hold out 3 of 12 songs"),
            "{err}"
        );
    }
}
