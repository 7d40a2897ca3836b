"""The synthetic world written in each audio format (WAV, FLAC, Ogg Vorbis, MP3), loaded back
with musrec.data.load and featurised with musrec.audio.extract."""

import musrec
import numpy as np
import pytest
from musrec import data

# MP3 writing needs the `lame` cargo feature (LGPL); the default build writes the other three.
WRITABLE = musrec.synthetic.audio_formats()
needs_writer = pytest.mark.skipif("mp3" not in WRITABLE, reason="built without the `lame` feature")

# Small enough to write, load and featurise in about a second per format.
SIZE = {"n_users": 50, "n_songs": 40, "seed": 2, "sample_rate": 22050, "duration": 3.0, "show_progress": False}


def world_features(path, audio_format):
    summary = musrec.synthetic.write_world(path, preset="tiny", audio_format=audio_format, **SIZE)
    files = sorted((path / "audio").iterdir())
    assert len(files) == summary["audio_files"] > 0
    assert {f.suffix for f in files} == {f".{audio_format}"}
    ds = data.load(path, show_progress=False)
    paths = ds.songs.audio_path
    assert len(paths) > 0 and all(p is not None and p.endswith(f".{audio_format}") for p in paths)
    result = musrec.audio.extract(paths, musrec.audio.FeatureConfig.paper(), show_progress=False)
    assert result.failures == [] and result.ok.all(), result.failures
    assert not result.truncated.any() and not result.padded.any()
    return ds.songs.track_id, result.features


@pytest.fixture(scope="module")
def wav_world(tmp_path_factory):
    return world_features(tmp_path_factory.mktemp("wav"), "wav")


@pytest.mark.parametrize(
    ("audio_format", "max_mean_db_error"),
    # FLAC is lossless: the same features as WAV. The lossy codecs drop detail mostly in quiet
    # bands, where log-Mel values in dB move most; the bound is on the mean over all bins
    # (measured 0.81 dB for Ogg, 0.62 dB for MP3; correlation with WAV's 0.990 and 0.995).
    [("flac", 0.0), ("ogg", 1.5), pytest.param("mp3", 1.5, marks=needs_writer)],
)
def test_world_in_each_format_loads_and_extracts_like_wav(tmp_path, wav_world, audio_format, max_mean_db_error):
    track_ids, features = world_features(tmp_path, audio_format)
    wav_track_ids, wav_features = wav_world
    # Same seed, same world: only the audio encoding differs.
    assert track_ids == wav_track_ids
    error = np.abs(features - wav_features).mean()
    assert error <= max_mean_db_error, error


def test_world_repeats_byte_for_byte_in_each_format(tmp_path):
    for audio_format in [f for f in WRITABLE if f != "wav"]:
        a, b = tmp_path / f"{audio_format}-a", tmp_path / f"{audio_format}-b"
        musrec.synthetic.write_world(a, preset="tiny", audio_format=audio_format, num_threads=2, **SIZE)
        musrec.synthetic.write_world(b, preset="tiny", audio_format=audio_format, num_threads=1, **SIZE)
        files = sorted((a / "audio").iterdir())
        assert files and all(f.read_bytes() == (b / "audio" / f.name).read_bytes() for f in files), audio_format


def test_the_default_build_names_the_lame_feature_for_mp3(tmp_path):
    assert {"wav", "flac", "ogg"} <= set(WRITABLE)
    if "mp3" in WRITABLE:
        pytest.skip("built with the `lame` feature")
    with pytest.raises(ValueError, match="lame"):
        musrec.synthetic.write_world(tmp_path, preset="tiny", audio_format="mp3", show_progress=False)
