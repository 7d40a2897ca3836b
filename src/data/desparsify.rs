//! The paper's de-sparsification of the Taste Profile: keep the most played songs that have
//! audio and the most active users, down to a requested size (the paper: 10,000 users x
//! 50,000 songs).
//!
//! The order, each step deterministic (ties by the next key, finally by the lower index):
//! 1. songs: among the eligible songs (those with audio) played by at least one of the
//!    current users, the `n_songs` with the most plays (then the most listeners);
//! 2. users: among those who played at least one kept song, the `n_users` with the most
//!    distinct kept songs (then the most plays of kept songs).
//!
//! One round ranks songs over all users, as the paper describes. More rounds re-rank the songs
//! over the users kept by the previous round, so fewer kept songs end up without any play
//! from a kept user (those get a zero WMF vector; the report counts them).

use crate::ensure;
use crate::error::Result;
use crate::sparse::{Csr, CsrRef};

#[derive(Clone, Debug, PartialEq)]
pub struct Desparsified {
    /// Kept users x kept songs, rows and columns in ascending original order.
    pub plays: Csr,
    /// Original row index of each kept user.
    pub users: Vec<usize>,
    /// Original column index of each kept song.
    pub songs: Vec<usize>,
    pub report: DesparsifyReport,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DesparsifyReport {
    pub users_before: usize,
    pub songs_before: usize,
    /// Songs with audio (the only ones that may be kept).
    pub eligible_songs: usize,
    pub users_kept: usize,
    pub songs_kept: usize,
    pub plays_kept: usize,
    /// Kept songs that no kept user played.
    pub songs_without_plays: usize,
}

/// Reduce `plays` (users x songs) to at most `n_users` x `n_songs`; `eligible[s]` says whether
/// song `s` may be kept; `rounds` >= 1 (see the module notes).
pub fn desparsify(
    plays: CsrRef<'_>,
    eligible: &[bool],
    n_users: usize,
    n_songs: usize,
    rounds: usize,
) -> Result<Desparsified> {
    ensure!(
        eligible.len() == plays.n_cols,
        "eligible has {} entries for {} songs",
        eligible.len(),
        plays.n_cols
    );
    ensure!(n_users >= 1 && n_songs >= 1, "n_users and n_songs must be at least 1");
    ensure!(rounds >= 1, "rounds must be at least 1, got {rounds}");
    let mut users: Vec<usize> = (0..plays.n_rows).collect();
    let mut songs: Vec<usize> = Vec::new();
    for _ in 0..rounds {
        songs = top_songs(plays, &users, eligible, n_songs);
        users = top_users(plays, &songs, n_users);
    }

    let mut column = vec![-1i32; plays.n_cols];
    for (new, &s) in songs.iter().enumerate() {
        column[s] = new as i32;
    }
    let mut sub = Csr::with_capacity(songs.len(), users.len(), 0);
    let mut played = vec![false; songs.len()];
    for &u in &users {
        let (cols, vals) = plays.row(u);
        // Kept songs are in ascending original order, so the new columns stay sorted.
        sub.push_row(
            cols.iter()
                .zip(vals)
                .filter(|&(&c, _)| column[c as usize] >= 0)
                .map(|(&c, &v)| {
                    played[column[c as usize] as usize] = true;
                    (column[c as usize], v)
                }),
        );
    }
    let report = DesparsifyReport {
        users_before: plays.n_rows,
        songs_before: plays.n_cols,
        eligible_songs: eligible.iter().filter(|&&e| e).count(),
        users_kept: users.len(),
        songs_kept: songs.len(),
        plays_kept: sub.indices.len(),
        songs_without_plays: played.iter().filter(|&&p| !p).count(),
    };
    Ok(Desparsified {
        plays: sub,
        users,
        songs,
        report,
    })
}

/// The `n` eligible songs most played by `users`, in ascending index order.
fn top_songs(plays: CsrRef<'_>, users: &[usize], eligible: &[bool], n: usize) -> Vec<usize> {
    let mut total = vec![0f64; plays.n_cols];
    let mut listeners = vec![0u32; plays.n_cols];
    for &u in users {
        let (cols, vals) = plays.row(u);
        for (&c, &v) in cols.iter().zip(vals) {
            total[c as usize] += f64::from(v);
            listeners[c as usize] += 1;
        }
    }
    let mut candidates: Vec<usize> = (0..plays.n_cols).filter(|&s| eligible[s] && listeners[s] > 0).collect();
    candidates.sort_unstable_by(|&a, &b| {
        total[b]
            .total_cmp(&total[a])
            .then(listeners[b].cmp(&listeners[a]))
            .then(a.cmp(&b))
    });
    candidates.truncate(n);
    candidates.sort_unstable();
    candidates
}

/// The `n` users with the most distinct songs among `songs` (sorted), in ascending order.
fn top_users(plays: CsrRef<'_>, songs: &[usize], n: usize) -> Vec<usize> {
    let mut kept = vec![false; plays.n_cols];
    for &s in songs {
        kept[s] = true;
    }
    let stats: Vec<(u32, f64)> = (0..plays.n_rows)
        .map(|u| {
            let (cols, vals) = plays.row(u);
            cols.iter()
                .zip(vals)
                .filter(|&(&c, _)| kept[c as usize])
                .fold((0, 0.0), |(k, p), (_, &v)| (k + 1, p + f64::from(v)))
        })
        .collect();
    let mut candidates: Vec<usize> = (0..plays.n_rows).filter(|&u| stats[u].0 > 0).collect();
    candidates.sort_unstable_by(|&a, &b| {
        stats[b]
            .0
            .cmp(&stats[a].0)
            .then(stats[b].1.total_cmp(&stats[a].1))
            .then(a.cmp(&b))
    });
    candidates.truncate(n);
    candidates.sort_unstable();
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_top_songs_with_audio_then_active_users() {
        // 4 users x 5 songs. Song 0 is the most played but has no audio.
        let m = Csr::from_triplets(
            4,
            5,
            &[
                (0, 0, 50.0),
                (0, 1, 1.0),
                (1, 1, 2.0),
                (1, 2, 9.0),
                (1, 3, 1.0),
                (2, 2, 1.0),
                (2, 4, 1.0),
                (3, 3, 2.0),
            ],
        )
        .unwrap();
        let eligible = [false, true, true, true, true];
        // Song totals: 1 -> 3, 2 -> 10, 3 -> 3, 4 -> 1; 1 and 3 tie on plays and listeners.
        let d = desparsify(m.view(), &eligible, 2, 2, 1).unwrap();
        assert_eq!(d.songs, [1, 2]);
        // Kept songs per user: 0 -> 1, 1 -> 2, 2 -> 1, 3 -> 0; users 0 and 2 tie on plays too.
        assert_eq!(d.users, [0, 1]);
        assert_eq!(d.plays.indptr, [0, 1, 3]);
        assert_eq!(d.plays.indices, [0, 0, 1]);
        assert_eq!(d.plays.data, [1.0, 2.0, 9.0]);
        assert_eq!(d.report.songs_without_plays, 0);
        assert_eq!(d.report.eligible_songs, 4);

        // Asking for more than there is keeps everything eligible and played.
        let all = desparsify(m.view(), &eligible, 100, 100, 2).unwrap();
        assert_eq!(all.songs, [1, 2, 3, 4]);
        assert_eq!(all.users, [0, 1, 2, 3]);
        assert!(desparsify(m.view(), &eligible[..3], 1, 1, 1).is_err());
        assert!(desparsify(m.view(), &eligible, 1, 1, 0).is_err());
    }
}
