//! The MSD's `unique_tracks.txt`: `track_id<SEP>song_id<SEP>artist_name<SEP>title` per line,
//! the song <-> track map without SQLite. Titles may themselves contain "<SEP>", so a line is
//! split at the first three separators only; bytes that are not UTF-8 are replaced.

use super::Problems;
use crate::ensure;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use std::io::{BufRead, BufReader};
use std::path::Path;

pub const FILE_NAME: &str = "unique_tracks.txt";
const SEP: &str = "<SEP>";

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct UniqueTracks {
    pub track_id: Vec<String>,
    pub song_id: Vec<String>,
    pub artist_name: Vec<String>,
    pub title: Vec<String>,
    /// Lines without four fields or with an empty track or song id; skipped.
    pub malformed: Problems,
}

pub fn read(path: &Path) -> Result<UniqueTracks> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = UniqueTracks::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))? == 0 {
            break;
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.splitn(4, SEP).collect();
        if fields.len() != 4 || fields[0].trim().is_empty() || fields[1].trim().is_empty() {
            out.malformed.add(|| {
                format!("line {number}: expected track_id<SEP>song_id<SEP>artist_name<SEP>title with both ids")
            });
            continue;
        }
        out.track_id.push(fields[0].trim().to_string());
        out.song_id.push(fields[1].trim().to_string());
        out.artist_name.push(fields[2].to_string());
        out.title.push(fields[3].to_string());
    }
    Ok(out)
}

pub fn write(path: &Path, tracks: &UniqueTracks) -> Result<()> {
    let n = tracks.track_id.len();
    ensure!(
        tracks.song_id.len() == n && tracks.artist_name.len() == n && tracks.title.len() == n,
        "unique tracks: columns differ in length"
    );
    write_atomic(path, |w| {
        for i in 0..n {
            // A newline inside a name would break the line structure.
            let clean = |s: &str| s.replace(['\n', '\r'], " ");
            writeln!(
                w,
                "{}{SEP}{}{SEP}{}{SEP}{}",
                tracks.track_id[i],
                tracks.song_id[i],
                clean(&tracks.artist_name[i]),
                clean(&tracks.title[i])
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_lines_and_counts_bad_ones() {
        let dir = std::env::temp_dir().join(format!("musrec-unique-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        let text = "TRMMMYQ128F932D901<SEP>SOQMMHC12AB0180CBB<SEP>Faster Pussy cat<SEP>Silent Night\n\
                    TRMMMKD128F425225D<SEP>SOVFVAK12A8C1350D9<SEP>Karkkiautomaatti<SEP>Tanssi vaan <SEP> remix\n\
                    broken line\n\
                    <SEP>SOX<SEP>a<SEP>b\n";
        std::fs::write(&path, text).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.track_id, ["TRMMMYQ128F932D901", "TRMMMKD128F425225D"]);
        assert_eq!(t.title[1], "Tanssi vaan <SEP> remix");
        assert_eq!(t.malformed.count, 2);
        assert!(t.malformed.first[0].starts_with("line 3"));
        write(&path, &t).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.track_id, t.track_id);
        assert_eq!(back.title, t.title);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
