"""Loaders of the real dataset formats, the joins, the de-sparsification and the synthetic
world. The fixtures are written here with the standard library (sqlite3, wave), in exactly
the formats of the Taste Profile, the MSD and the Last.fm dataset — independently of
musrec's own writers."""

import json
import sqlite3

import musrec
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import write_tone
from musrec import data

# The size of the worlds these tests write: the "tiny" preset's (600 x 800) halved, quick to write.
HALF_TINY = {"n_users": 300, "n_songs": 400}
USER_A = "b80344d063b5ccb3212f76538f3d9e43d87dca9e"
USER_B = "85c1f87fea955d09b4bec2e36aee110927aab4d6"
USER_C = "4bd88bfb25263a75bbdd467e74018f4ae570e5df"

TRIPLETS = (
    f"{USER_A}\tSOAKIMP12A8C130995\t1\n"
    f"{USER_A}\tSOAPDEY12A81C210A9\t3\n"
    f"{USER_A}\tSOBBMDR12A8C13253B\t2\n"
    f"{USER_A}\tSOAKIMP12A8C130995\t4\n"  # duplicate pair: summed to 5
    f"{USER_B}\tSOAPDEY12A81C210A9\t7\n"
    f"{USER_B}\tSONOTRACK12A8C1309\t1\n"  # song without any track
    "\n"
    f"{USER_B}\tSOBBMDR12A8C13253B\tx\n"  # malformed count
    f"{USER_B}\tSOBBMDR12A8C13253B\n"  # two fields
    f"{USER_C}\tSOBXHDL12A81C204C0\t0\n"  # zero count
    f"{USER_C}\tSOBXHDL12A81C204C0\t2\n"
    f"{USER_C}\tSOAPDEY12A81C210A9\t1\r\n"
)

SONGS_SCHEMA = (
    "CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, release text, artist_id text, "
    "artist_mbid text, artist_name text, duration real, artist_familiarity real, artist_hotttnesss real, year int)"
)


def track(track_id, title, song_id, artist_id, artist_name, year):
    """A row of the MSD's songs table (release, mbid, duration etc. filled in)."""
    return (track_id, title, song_id, "Rel", artist_id, "", artist_name, 218.9, 0.58, 0.40, year)


# SOAKIMP has two tracks; only the second (by id) has audio. SOBXHDL's track has no audio.
TRACKS = [
    track("TRAAAAW128F429D538", "Hello", "SOAKIMP12A8C130995", "ARD7TVE1187B99BFB1", "Casual", 0),
    track("TRAAABD128F429CF47", "Hello (dup)", "SOAKIMP12A8C130995", "ARD7TVE1187B99BFB1", "Casual", 0),
    track("TRAAADZ128F9348C2E", "Pink", "SOAPDEY12A81C210A9", "ARKRRTF1187B9984DA", "Sonora", 1995),
    track("TRAAAEF128F4273421", "Blue", "SOBBMDR12A8C13253B", "AR7G5I41187FB4CE6C", None, 1982),
    track("TRAAAFD128F92F423A", "Red", "SOBXHDL12A81C204C0", "ARXR32B1187FB57099", "Gob", 2007),
    track("TRUNPLAYED128F9XYZ", "Nobody", "SOUNPLAYED12A8C1XY", "ARUNPLAYED1187B999", "Nobody", 2001),
]
AUDIO_TRACKS = ["TRAAABD128F429CF47", "TRAAADZ128F9348C2E", "TRAAAEF128F4273421", "TRUNPLAYED128F9XYZ"]


def write_metadata(path, rows=TRACKS):
    con = sqlite3.connect(path)
    con.execute(SONGS_SCHEMA)
    con.executemany("INSERT INTO songs VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def write_tags(path):
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);"
    )
    con.executemany(
        "INSERT INTO tids VALUES (?)", [("TRAAABD128F429CF47",), ("TRAAADZ128F9348C2E",), ("TRNOTAG128F0000000",)]
    )
    con.executemany("INSERT INTO tags VALUES (?)", [("rock",), ("sad",), ("90s",)])
    # rowids: TRAAABD -> rock 100, 90s 12; TRAAADZ -> sad 3 (weak); a row pointing nowhere.
    con.executemany("INSERT INTO tid_tag VALUES (?,?,?)", [(1, 1, 100.0), (1, 3, 12.0), (2, 2, 3.0), (7, 1, 50.0)])
    con.commit()
    con.close()


@pytest.fixture
def msd_dir(tmp_path):
    """A dataset directory in the MSD layout, with every kind of miss."""
    (tmp_path / "train_triplets.txt").write_text(TRIPLETS)
    write_metadata(tmp_path / "track_metadata.db")
    write_tags(tmp_path / "lastfm_tags.db")
    lines = [f"{t[0]}<SEP>{t[2]}<SEP>{t[6] or ''}<SEP>{t[1]}" for t in TRACKS]
    (tmp_path / "unique_tracks.txt").write_text("\n".join(lines) + "\n")
    audio = tmp_path / "audio"
    for i, track in enumerate(AUDIO_TRACKS):
        folder = audio / track[2] / track[3] / track[4]  # MSD-style nesting
        folder.mkdir(parents=True, exist_ok=True)
        write_tone(folder / f"{track}.wav", freq=220.0 * (i + 1))
    (audio / "README.txt").write_text("not audio")
    (audio / "TRAAAFD128F92F423A.mp3").write_bytes(b"")  # empty file: no audio
    return tmp_path


def test_read_triplets_counts_malformed_lines_and_sums_duplicates(msd_dir):
    t = data.read_triplets(msd_dir / "train_triplets.txt", show_progress=False)
    assert t.user_ids == [USER_A, USER_B, USER_C]
    assert t.song_ids == [
        "SOAKIMP12A8C130995",
        "SOAPDEY12A81C210A9",
        "SOBBMDR12A8C13253B",
        "SONOTRACK12A8C1309",
        "SOBXHDL12A81C204C0",
    ]
    dense = t.plays.toarray()
    np.testing.assert_array_equal(dense, [[5, 3, 2, 0, 0], [0, 7, 0, 1, 0], [0, 1, 0, 0, 2]])
    assert t.plays.dtype == np.float32 and t.plays.has_canonical_format
    r = t.report
    assert (r["lines"], r["records"], r["blank_lines"], r["duplicates"]) == (12, 8, 1, 1)
    assert r["malformed"]["count"] == 3
    assert [m.split(":")[0] for m in r["malformed"]["first"]] == ["line 8", "line 9", "line 10"]

    with pytest.raises(musrec.FormatError, match="line 8"):
        data.read_triplets(msd_dir / "train_triplets.txt", strict=True, show_progress=False)
    with pytest.raises(FileNotFoundError):
        data.read_triplets(msd_dir / "nope.txt", show_progress=False)


def test_read_triplets_reports_progress_in_bytes(msd_dir):
    seen = []
    data.read_triplets(
        msd_dir / "train_triplets.txt", show_progress=False, callback=lambda d, t, _: seen.append((d, t))
    )
    size = (msd_dir / "train_triplets.txt").stat().st_size
    assert seen[-1] == (size, size)


def test_read_track_metadata_and_bad_sqlite_files(msd_dir, tmp_path_factory):
    m = data.read_track_metadata(msd_dir / "track_metadata.db")
    assert m["track_id"] == sorted(t[0] for t in TRACKS)
    i = m["track_id"].index("TRAAAEF128F4273421")
    assert m["artist_name"][i] == ""  # NULL reads as empty
    assert m["year"][m["track_id"].index("TRAAAAW128F429D538")] == 0
    assert m["report"]["count"] == 0

    bad = tmp_path_factory.mktemp("bad")
    (bad / "corrupt.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    with pytest.raises(musrec.FormatError, match="corrupt.db"):
        data.read_track_metadata(bad / "corrupt.db")
    (bad / "text.db").write_text("hello, not a database\n" * 100)
    with pytest.raises(musrec.FormatError, match="text.db"):
        data.read_track_metadata(bad / "text.db")
    with pytest.raises(musrec.FormatError, match="songs"):
        data.read_track_metadata(msd_dir / "lastfm_tags.db")  # a real SQLite file, the wrong one
    with pytest.raises(FileNotFoundError):
        data.read_track_metadata(bad / "missing.db")


def test_read_tags_counts_dangling_rows(msd_dir):
    t = data.read_tags(msd_dir / "lastfm_tags.db")
    assert t["track_id"] == ["TRAAABD128F429CF47", "TRAAADZ128F9348C2E", "TRNOTAG128F0000000"]
    assert t["tag_names"] == ["rock", "sad", "90s"]
    np.testing.assert_array_equal(t["matrix"].toarray(), [[100, 0, 12], [0, 3, 0], [0, 0, 0]])
    r = t["report"]
    assert (r["rows"], r["dangling"]["count"], r["tracks_without_tags"]) == (4, 1, 1)


def test_read_unique_tracks_and_index_audio(msd_dir):
    u = data.read_unique_tracks(msd_dir / "unique_tracks.txt")
    assert u["track_id"] == [t[0] for t in TRACKS]
    assert u["song_id"][0] == "SOAKIMP12A8C130995"
    tracks, paths, report = data.index_audio(msd_dir / "audio")
    assert tracks == sorted(AUDIO_TRACKS)
    assert all(p.endswith(".wav") for p in paths)
    assert (report["files"], report["empty"]["count"], report["ignored"], report["duplicates"]) == (5, 1, 1, 0)
    with pytest.raises(FileNotFoundError):
        data.index_audio(msd_dir / "no-audio-here")


def test_load_joins_with_exact_miss_counts(msd_dir):
    ds = data.load(msd_dir, show_progress=False)
    j = ds.report["join"]
    assert j == {
        "songs": 5,
        "songs_without_track": 1,  # SONOTRACK
        "songs_with_several_tracks": 1,  # SOAKIMP
        "songs_without_metadata": 0,
        "songs_without_audio": 2,  # SONOTRACK, SOBXHDL (its file is empty)
        "songs_without_tags": 3,  # SOBBMDR, SONOTRACK, SOBXHDL; SOAPDEY's weak tag is kept (min 0)
        "songs_with_unknown_year": 2,  # SOAKIMP (year 0), SONOTRACK
        "audio_files_unused": 1,  # TRUNPLAYED
    }
    assert ds.report["tags"]["dangling"]["count"] == 1
    assert ds.report["audio"]["empty"]["count"] == 1
    assert ds.report["triplets"]["malformed"]["count"] == 3
    # Songs with audio only; the duplicate track with audio is chosen.
    assert ds.songs.song_id == ["SOAKIMP12A8C130995", "SOAPDEY12A81C210A9", "SOBBMDR12A8C13253B"]
    assert ds.songs.track_id == ["TRAAABD128F429CF47", "TRAAADZ128F9348C2E", "TRAAAEF128F4273421"]
    assert list(ds.songs.year) == [0, 1995, 1982]
    assert ds.songs.artist_id[1] == "ARKRRTF1187B9984DA"
    assert ds.songs.tag_names == ["rock", "90s", "sad"]
    np.testing.assert_array_equal(ds.songs.tags.toarray(), [[100, 12, 0], [0, 0, 3], [0, 0, 0]])
    np.testing.assert_array_equal(ds.plays.toarray(), [[5, 3, 2], [0, 7, 0], [0, 1, 0]])
    assert ds.user_ids == [USER_A, USER_B, USER_C]
    y, sr = musrec.audio.load(ds.songs.audio_path[0], sr=None)
    assert sr == 8000 and len(y) == 4000
    assert "without audio" in ds.summary()

    # A stricter tag threshold drops the weak tag; de-sparsify to 2 x 2.
    small = data.load(msd_dir, n_users=2, n_songs=2, min_tag_value=10, show_progress=False)
    assert small.songs.song_id == ["SOAKIMP12A8C130995", "SOAPDEY12A81C210A9"]  # 11 and 5 plays
    assert small.user_ids == [USER_A, USER_B]
    assert small.report["join"]["songs_without_tags"] == 4
    assert small.plays.shape == (2, 2)


def test_load_without_optional_files(msd_dir):
    (msd_dir / "lastfm_tags.db").unlink()
    (msd_dir / "track_metadata.db").unlink()
    ds = data.load(msd_dir, show_progress=False)
    assert any("lastfm_tags.db" in note for note in ds.report["notes"])
    assert ds.report["join"]["songs_without_metadata"] == 4  # every song with a track
    assert ds.songs.artist_name[:2] == ["Casual", "Sonora"]  # from unique_tracks.txt
    assert ds.songs.tags.nnz == 0


def test_wrong_directories_name_what_is_missing(msd_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="train_triplets.txt"):
        data.load(empty, show_progress=False)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        data.load(empty / "does-not-exist", show_progress=False)
    (empty / "train_triplets.txt").write_text(TRIPLETS)
    with pytest.raises(FileNotFoundError, match="track_metadata.db"):
        data.load(empty, show_progress=False)
    (empty / "unique_tracks.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="audio"):
        data.load(empty, show_progress=False)
    (empty / "audio").mkdir()
    with pytest.raises(ValueError, match="no audio file"):
        data.load(empty, show_progress=False)
    (msd_dir / "lastfm_tags.db").write_bytes(b"\x00garbage" * 300)
    with pytest.raises(musrec.FormatError, match="lastfm_tags.db"):
        data.load(msd_dir, show_progress=False)


def reference_desparsify(m, eligible, n_users, n_songs, rounds):
    """The documented rule, in plain numpy."""
    m = m.tocsr()
    users = np.arange(m.shape[0])
    songs = np.array([], dtype=int)
    binary = (m > 0).astype(np.int64)
    for _ in range(rounds):
        sub = m[users]
        total = np.asarray(sub.sum(axis=0)).ravel()
        listeners = np.asarray(binary[users].sum(axis=0)).ravel()
        cand = [s for s in range(m.shape[1]) if eligible[s] and listeners[s] > 0]
        cand.sort(key=lambda s: (-total[s], -listeners[s], s))
        songs = np.sort(np.array(cand[:n_songs], dtype=int))
        kept = m[:, songs]
        count = np.asarray((kept > 0).sum(axis=1)).ravel()
        plays = np.asarray(kept.sum(axis=1)).ravel()
        cand = [u for u in range(m.shape[0]) if count[u] > 0]
        cand.sort(key=lambda u: (-count[u], -plays[u], u))
        users = np.sort(np.array(cand[:n_users], dtype=int))
    return users, songs


@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_desparsify_matches_a_plain_implementation(rounds):
    rng = np.random.default_rng(rounds)
    # Small integer counts make ties common, so the tie-breaks are exercised.
    dense = rng.integers(0, 3, size=(60, 90)) * (rng.random((60, 90)) < 0.15)
    m = sp.csr_matrix(dense.astype(np.float32))
    eligible = rng.random(90) < 0.8
    sub, users, songs, report = data.desparsify(m, eligible, 25, 30, rounds=rounds)
    ref_users, ref_songs = reference_desparsify(m, eligible, 25, 30, rounds)
    np.testing.assert_array_equal(users, ref_users)
    np.testing.assert_array_equal(songs, ref_songs)
    np.testing.assert_array_equal(sub.toarray(), dense[np.ix_(ref_users, ref_songs)])
    assert report["songs_without_plays"] == int(((dense[np.ix_(ref_users, ref_songs)] > 0).sum(axis=0) == 0).sum())
    with pytest.raises(ValueError, match="eligible"):
        data.desparsify(m, eligible[:5], 2, 2)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("world")
    summary = musrec.synthetic.write_world(
        path,
        preset="tiny",
        seed=5,
        **HALF_TINY,
        sample_rate=8000,
        duration=3.0,
        show_progress=False,
        share_without_track=0.02,
    )
    return path, summary


def test_world_writes_the_real_formats(world_dir):
    path, summary = world_dir
    for name in ["train_triplets.txt", "track_metadata.db", "unique_tracks.txt", "lastfm_tags.db", "world.json"]:
        assert (path / name).is_file(), name
    assert summary["n_users"] == 300 and summary["n_songs"] == 400
    assert summary["audio_files"] == len(list((path / "audio").glob("*.wav")))
    line = (path / "train_triplets.txt").read_text().splitlines()[0].split("\t")
    assert len(line[0]) == 40 and all(c in "0123456789abcdef" for c in line[0])
    assert len(line[1]) == 18 and line[1].startswith("SO")
    assert int(line[2]) >= 1
    con = sqlite3.connect(path / "track_metadata.db")
    (n,) = con.execute("SELECT COUNT(*) FROM songs").fetchone()
    (unknown,) = con.execute("SELECT COUNT(*) FROM songs WHERE year = 0").fetchone()
    con.close()
    assert n == summary["n_tracks"] and unknown > 0


def test_world_loads_back_with_the_planted_misses(world_dir):
    path, summary = world_dir
    truth = musrec.synthetic.load_truth(path)
    ds = data.load(path, show_progress=False)
    t = data.read_triplets(path / "train_triplets.txt", show_progress=False)
    played = set(t.song_ids)
    index = {s: i for i, s in enumerate(truth["song_ids"])}
    rows = [index[s] for s in t.song_ids]
    j = ds.report["join"]
    assert j["songs"] == len(played)
    assert j["songs_without_track"] == sum(truth["track_id"][i] == "" for i in rows)
    assert j["songs_without_audio"] == sum(not truth["has_audio"][i] for i in rows)
    assert j["songs_with_several_tracks"] == sum(truth["extra_track_id"][i] != "" for i in rows)
    assert j["songs_without_tags"] == sum(not truth["has_tags"][i] for i in rows)
    assert ds.report["triplets"]["malformed"]["count"] == 0
    # Every kept song has audio, its own (not the duplicate) track, and its planted year.
    kept = [index[s] for s in ds.songs.song_id]
    assert all(truth["has_audio"][i] for i in kept)
    assert ds.songs.track_id == [truth["track_id"][i] for i in kept]
    assert list(ds.songs.year) == [truth["year"][i] for i in kept]
    y, sr = musrec.audio.load(ds.songs.audio_path[0], sr=None)
    assert sr == 8000 and len(y) == 24000 and np.abs(y).max() > 0.1
    assert truth["song_style"].shape == (400, 16) and truth["sound_params"].shape == (400, 12)


def test_world_content_carries_style_partly(world_dir):
    path, _ = world_dir
    truth = musrec.synthetic.load_truth(path)
    style, params = truth["song_style"], truth["sound_params"]
    # Sound parameter k renders audio dimension k: correlated, not determined.
    for k in range(12):
        r = np.corrcoef(style[:, truth["audio_dims"][k]], params[:, k])[0, 1]
        assert 0.5 < r < 0.99, (k, r)
    # The pitch parameter is audible: low-Mel energy share follows it.
    ds = data.load(path, show_progress=False)
    index = {s: i for i, s in enumerate(truth["song_ids"])}
    pitch = np.array([params[index[s], 0] for s in ds.songs.song_id])
    config = musrec.audio.FeatureConfig.paper()
    feats = musrec.audio.extract(ds.songs.audio_path, config, show_progress=False).features
    band = np.argmax(feats.mean(axis=2), axis=1)  # loudest Mel band of each clip
    assert np.corrcoef(band, pitch)[0, 1] > 0.4
    # Years follow the last (metadata-only) style dimension.
    years = np.array(truth["year"], float)
    known = years > 0
    r = np.corrcoef(style[known, truth["metadata_dims"][-1]], years[known])[0, 1]
    assert r > 0.3, r


def test_world_is_deterministic_for_a_seed(world_dir, tmp_path):
    path, _ = world_dir
    again = tmp_path / "again"
    musrec.synthetic.write_world(
        again,
        preset="tiny",
        seed=5,
        **HALF_TINY,
        sample_rate=8000,
        duration=3.0,
        share_without_track=0.02,
        show_progress=False,
        num_threads=1,
    )
    for name in ["train_triplets.txt", "unique_tracks.txt", "world.json"]:
        assert (path / name).read_bytes() == (again / name).read_bytes(), name
    first = sorted((path / "audio").glob("*.wav"))[0]
    assert first.read_bytes() == (again / "audio" / first.name).read_bytes()
    other = tmp_path / "other"
    musrec.synthetic.write_world(
        other, preset="tiny", seed=6, **HALF_TINY, sample_rate=8000, duration=3.0, show_progress=False
    )
    assert (other / "train_triplets.txt").read_bytes() != (path / "train_triplets.txt").read_bytes()


def test_world_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown world setting"):
        musrec.synthetic.write_world(tmp_path, n_songz=3, show_progress=False)
    with pytest.raises(ValueError, match="`wav`, `flac`, `ogg`, `mp3`"):
        musrec.synthetic.write_world(tmp_path, audio_format="aiff", show_progress=False)
    if "mp3" in musrec.synthetic.audio_formats():
        with pytest.raises(ValueError, match="sample_rate must be one of"):
            musrec.synthetic.write_world(tmp_path, audio_format="mp3", sample_rate=10_000, show_progress=False)
    with pytest.raises(ValueError, match="preset"):
        musrec.synthetic.write_world(tmp_path, preset="huge", show_progress=False)
    with pytest.raises(ValueError, match="duration"):
        musrec.synthetic.write_world(tmp_path, duration=-1.0, show_progress=False)
    cfg = musrec.synthetic.world_config("paper")
    # 56,000 songs so that about 51,400 get plays and audio: the paper's 50,000 after de-sparsification
    assert (cfg.n_users, cfg.n_songs) == (10_000, 56_000)
    assert json.dumps(cfg.to_dict())
    assert cfg.to_dict()["listening"]["n_songs"] == 56_000


def test_world_config_is_a_typed_rust_class(tmp_path):
    """The world's settings are the core's WorldFilesConfig, given and read flat."""
    import pickle

    WorldConfig = musrec.synthetic.WorldConfig
    cfg = WorldConfig("tiny", n_users=300, sample_rate=8000, source_audio=tmp_path)
    assert (cfg.n_users, cfg.n_songs, cfg.sample_rate, cfg.source_audio) == (300, 800, 8000, str(tmp_path))
    assert cfg == musrec.synthetic.world_config("tiny", n_users=300, sample_rate=8000, source_audio=str(tmp_path))
    assert cfg != WorldConfig("tiny") and hash(cfg) == hash(cfg.replace())
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        WorldConfig.from_dict({**cfg.to_dict(), "sample_rate": 0})
    assert eval(repr(cfg), {"WorldConfig": WorldConfig}) == cfg
    assert cfg.replace(n_users=10).n_users == 10 and cfg.n_users == 300
    assert set(WorldConfig.SETTINGS) >= {"n_users", "seed", "duration", "audio_format", "source_audio"}
    with pytest.raises(TypeError, match="n_users"):
        WorldConfig(n_users="many")
    with pytest.raises(ValueError, match="seed"):
        WorldConfig(seed=-1)
    with pytest.raises(ValueError, match="n_songs"):
        WorldConfig(n_songs=1)
    with pytest.raises(AttributeError):
        _ = cfg.colour


def test_world_progress_counts_audio_files_and_can_be_stopped(tmp_path):
    seen = []

    def stop(done, total, _):
        seen.append((done, total))
        if done >= 64:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        musrec.synthetic.write_world(
            tmp_path,
            preset="tiny",
            seed=1,
            **HALF_TINY,
            sample_rate=8000,
            duration=0.5,
            show_progress=False,
            callback=stop,
        )
    # The total is the number of songs with audio, and what was written is whole.
    assert seen[0][0] == 0 and seen[0][1] < 400
    written = sorted((tmp_path / "audio").glob("*.wav"))
    assert len(written) == 64 and not list((tmp_path / "audio").glob(".*"))
    y, sr = musrec.audio.load(written[-1], sr=None)
    assert (len(y), sr) == (4000, 8000)
