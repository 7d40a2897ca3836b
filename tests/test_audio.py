"""The audio front end through the Python API: agreement with librosa (committed reference
arrays from tests/fixtures/make_librosa_fixtures.py, so librosa is not needed here),
decoding of real files, batch extraction and its failure reports."""

import json
import os
import pathlib
import shutil

import musrec
import numpy as np
import pytest
from helpers import write_wav
from musrec import audio

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
LIBROSA = FIXTURES / "librosa"
AUDIO = FIXTURES / "audio"


def read_case(name):
    meta = json.loads((LIBROSA / f"{name}.json").read_text())
    arrays = {
        key: np.fromfile(LIBROSA / spec["file"], dtype="<f4").reshape(spec["shape"])
        for key, spec in meta["arrays"].items()
    }
    return meta["params"], arrays


def signals(params, arrays):
    sr = params["sample_rate"]
    out = {k: v for k, v in arrays.items() if "." not in k and k != "filterbank"}
    shared = LIBROSA / f"signals_sr{sr}.json"
    if shared.exists():
        out.update(read_case(shared.stem)[1])
    return out


CASES = sorted(p.stem for p in LIBROSA.glob("*.json") if not p.stem.startswith("signals_"))


def mel_kwargs(p):
    return dict(
        sr=p["sample_rate"],
        n_fft=p["n_fft"],
        n_mels=p["n_mels"],
        fmin=p["fmin"],
        fmax=p["fmax"],
        htk=p["htk"],
        norm=p["norm"],
    )


def stft_kwargs(p):
    return dict(
        n_fft=p["n_fft"],
        hop_length=p["hop_length"],
        win_length=p["win_length"],
        window=p["window"],
        center=p["center"],
        pad_mode=p["pad_mode"],
        power=p["power"],
    )


def close_to_reference(got, want, what):
    assert got.shape == want.shape, what
    scale = max(float(np.abs(want).max()), 1e-30)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * scale, err_msg=what)


@pytest.mark.parametrize("case", CASES)
def test_matches_librosa(case):
    params, arrays = read_case(case)
    if "filterbank" in arrays:
        np.testing.assert_allclose(audio.mel_filters(**mel_kwargs(params)), arrays["filterbank"], atol=1e-6, rtol=0)
    if "hop_length" not in params:
        return
    sigs = signals(params, arrays)
    for key, want in arrays.items():
        if "." not in key:
            continue
        name, what = key.split(".", 1)
        y = sigs[name]
        if what == "mel":
            got = audio.melspectrogram(
                y,
                hop_length=params["hop_length"],
                **{k: v for k, v in {**mel_kwargs(params), **stft_kwargs(params)}.items() if k != "hop_length"},
            )
            close_to_reference(got, want, f"{case} {key}")
        elif what == "stft_power":
            close_to_reference(audio.stft_power(y, **stft_kwargs(params)), want, f"{case} {key}")
        elif what in ("db_max", "db_ref1"):
            ref = np.max if what == "db_max" else 1.0
            got = audio.power_to_db(arrays[f"{name}.mel"], ref=ref, amin=params["amin"], top_db=params["top_db"])
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=0, err_msg=f"{case} {key}")


def test_paper_preset_matches_librosa_end_to_end():
    params, arrays = read_case("paper_sr8000")
    sigs = signals(params, arrays)
    cfg = audio.FeatureConfig.paper()
    assert params["n_fft"] == 1024 and params["hop_length"] == 512 and params["window"] == "hamming"
    for name in ("noise", "music"):
        got = audio.log_mel(sigs[name], cfg)
        want = audio.power_to_db(arrays[f"{name}.mel"], ref=1.0, amin=1e-10, top_db=80.0)
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert cfg.shape == (128, 47)  # 3 s at 8 kHz, hop 512, centred frames
    assert audio.FeatureConfig.common().shape == (128, 130)


def test_parameter_errors():
    y = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match="window"):
        audio.melspectrogram(y, window="blackman")
    with pytest.raises(ValueError, match="n_mels|n_fft|hop"):
        audio.melspectrogram(y, hop_length=0)
    with pytest.raises(ValueError, match="1-D"):
        audio.melspectrogram(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        audio.melspectrogram(np.full(100, np.nan, np.float32))
    with pytest.raises(TypeError, match="unknown setting"):
        audio.FeatureConfig.paper(colour="blue")
    with pytest.raises(ValueError, match="clip_seconds"):
        audio.FeatureConfig.paper(clip_seconds=-1)


@pytest.mark.parametrize("name", ["tone.wav", "tone.flac", "tone.mp3", "tone.ogg"])
def test_load_every_format(name):
    y, sr = audio.load(AUDIO / name, sr=None)
    assert sr == 44100 and y.dtype == np.float32
    assert abs(len(y) / sr - 1.0) < 0.06
    # Mono mix of a 440 Hz sine at 0.5 (left) and 0.25 (right): amplitude 0.375.
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.375 / np.sqrt(2), rel=0.05)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    assert np.fft.rfftfreq(mid.size, 1 / sr)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_load_resamples_and_selects_a_span():
    y, sr = audio.load(AUDIO / "tone.wav", sr=8000, offset=0.25, duration=0.5)
    assert sr == 8000 and len(y) == pytest.approx(4000, abs=2)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert np.fft.rfftfreq(y.size, 1 / sr)[spectrum.argmax()] == pytest.approx(440, abs=10)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        audio.load(tmp_path / "missing.wav")
    with pytest.raises(musrec.FormatError):
        audio.load(AUDIO / "not_audio.mp3")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(musrec.FormatError):
        audio.load(empty)


def test_extract_batch_reports_failures_and_finishes(tmp_path):
    sr = 22050
    t = np.arange(5 * sr) / sr
    good = tmp_path / "good.wav"
    write_wav(good, 0.3 * np.sin(2 * np.pi * 330 * t), sr)
    short = tmp_path / "short.wav"
    write_wav(short, 0.3 * np.sin(2 * np.pi * 330 * t[:sr]), sr)  # 1 s: padded to 3 s
    tiny = tmp_path / "tiny.wav"
    write_wav(tiny, 0.3 * np.sin(2 * np.pi * 330 * t[: sr // 10]), sr)  # 0.1 s: too short
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(4 * sr), sr)
    corrupt = tmp_path / "corrupt.mp3"
    shutil.copy(AUDIO / "not_audio.mp3", corrupt)
    paths = [good, tmp_path / "missing.wav", short, corrupt, silent, tiny, AUDIO / "tone.ogg"]
    cfg = audio.FeatureConfig.paper(position="centre")
    result = audio.extract(paths, cfg, num_threads=2, show_progress=False)
    assert result.features.shape == (7, 128, 47) and result.features.dtype == np.float32
    assert result.ok.tolist() == [True, False, True, False, False, False, True]
    assert result.padded.tolist() == [False, False, True, False, False, False, True]
    reasons = {f["index"]: f["reason"] for f in result.failures}
    assert reasons == {1: "missing", 3: "corrupt", 4: "silent", 5: "too_short"}
    assert all(str(paths[f["index"]]) in f["message"] or f["path"] for f in result.failures)
    assert not result.features[~result.ok].any()
    # The batch row equals the transform of the same excerpt cut from the whole resampled
    # file (the centred 3 s of 5 s start at 1 s); edge frames see the resampler's edges.
    y, _ = audio.load(good, sr=8000)
    want = audio.log_mel(y[8000 : 8000 + 24000], cfg)
    np.testing.assert_allclose(result.features[0][:, 1:-1], want[:, 1:-1], atol=0.05)


def test_extract_is_deterministic_for_random_excerpts(tmp_path):
    sr = 8000
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.wav"
        write_wav(p, 0.1 * rng.standard_normal(10 * sr), sr)
        paths.append(p)
    cfg = audio.FeatureConfig.paper(seed=3)
    a = audio.extract(paths, cfg, num_threads=1, show_progress=False).features
    b = audio.extract(paths[::-1], cfg, num_threads=2, show_progress=False).features[::-1]
    np.testing.assert_array_equal(a, b)
    c = audio.extract(paths, audio.FeatureConfig.paper(seed=4), show_progress=False).features
    assert not np.array_equal(a, c)


def test_log_mel_batch_equals_single_clips():
    rng = np.random.default_rng(1)
    clips = rng.standard_normal((5, 24000)).astype(np.float32) * 0.1
    cfg = audio.FeatureConfig.paper()
    batch = audio.log_mel(clips, cfg, num_threads=2)
    assert batch.shape == (5, 128, 47)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], audio.log_mel(clips[i], cfg))


def test_log_mel_rejects_non_finite_signals():
    cfg = audio.FeatureConfig.paper()
    y = np.zeros(8000, np.float32)
    y[100] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        audio.log_mel(y, cfg)
    with pytest.raises(ValueError, match="not finite"):
        audio.log_mel(np.stack([np.zeros(8000, np.float32), y]), cfg)
    with pytest.raises(TypeError, match="floating"):
        audio.log_mel(np.zeros((2, 8000), np.int16), cfg)


def tones(tmp_path, n, seconds=1.0, sr=8000):
    """``n`` short WAVs, each a different tone, then a missing file and a corrupt one."""
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        p = tmp_path / f"tone{i:02d}.wav"
        write_wav(p, 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t), sr)
        paths.append(p)
    return paths + [tmp_path / "missing.wav", AUDIO / "not_audio.mp3"]


CACHE_CFG = audio.FeatureConfig.paper(clip_seconds=0.5, min_seconds=0.1)


def test_extract_with_cache_dir_reads_the_second_pass_from_disk(tmp_path):
    paths = tones(tmp_path, 5)
    direct = audio.extract(paths, CACHE_CFG, show_progress=False)
    assert not direct.cached.any()
    first = audio.extract(paths, CACHE_CFG, show_progress=False, cache_dir=tmp_path / "cache")
    second = audio.extract(paths, CACHE_CFG, show_progress=False, cache_dir=tmp_path / "cache")
    assert first.cached.tolist() == [False] * 7
    # Successes come back from the cache; failures are not cached and are tried again.
    assert second.cached.tolist() == [True] * 5 + [False, False]
    for r in (first, second):
        np.testing.assert_array_equal(r.features, direct.features)
        assert r.ok.tolist() == direct.ok.tolist()
        assert [(f["index"], f["reason"]) for f in r.failures] == [(5, "missing"), (6, "corrupt")]


def test_feature_cache_reads_rows_on_demand_and_notices_changes(tmp_path):
    paths = tones(tmp_path, 4)
    cache = audio.FeatureCache(tmp_path / "cache", CACHE_CFG)
    assert len(cache) == 0 and cache.path.startswith(str(tmp_path / "cache"))
    first = cache.extract(paths, show_progress=False)
    assert len(cache) == 4 and first.extracted == 6 and first.shape == (6, 128, 8)
    everything = first.to_array()
    assert everything.shape == (6, 128, 8) and not everything[4:].any()
    np.testing.assert_array_equal(first[1], everything[1])
    np.testing.assert_array_equal(first[-3], everything[3])
    np.testing.assert_array_equal(first[[3, 0]], everything[[3, 0]])
    np.testing.assert_array_equal(first[first.ok], everything[:4])
    np.testing.assert_array_equal(first[1:5:2], everything[1:5:2])
    batches = list(first.iter_batches(4))
    assert [start for start, _ in batches] == [0, 4]
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), everything)
    with pytest.raises(IndexError):
        first[6]
    with pytest.raises(IndexError):
        first[[0, 9]]

    # A file rewritten with new content and a new modification time is extracted again.
    t = np.arange(8000) / 8000
    write_wav(paths[2], 0.3 * np.sin(2 * np.pi * 1000 * t), 8000)
    stat = paths[2].stat()
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    again = audio.FeatureCache(tmp_path / "cache", CACHE_CFG).extract(paths, show_progress=False)
    assert again.cached.tolist() == [True, True, False, True, False, False]
    assert again.extracted == 3
    np.testing.assert_array_equal(again[[0, 1, 3]], everything[[0, 1, 3]])
    assert not np.array_equal(again[2], everything[2])


def test_feature_cache_per_config_and_damaged_shards(tmp_path):
    paths = tones(tmp_path, 3)
    root = tmp_path / "cache"
    a = audio.FeatureCache(root, CACHE_CFG)
    reference = a.extract(paths, show_progress=False).to_array()
    b = audio.FeatureCache(root, CACHE_CFG.replace(n_mels=64))
    assert b.path != a.path and len(b) == 0
    assert json.loads((pathlib.Path(a.path) / "config.json").read_text()) == json.loads(CACHE_CFG.to_json())
    # A shard overwritten with garbage is removed on opening and its files extracted again.
    shards = list((pathlib.Path(a.path) / "shards").glob("*.safetensors"))
    assert len(shards) == 1
    shards[0].write_bytes(b"\x00" * 100)
    reopened = audio.FeatureCache(root, CACHE_CFG)
    assert [p for p, _ in reopened.removed] == [str(shards[0])] and len(reopened) == 0
    result = reopened.extract(paths, show_progress=False)
    assert result.extracted == 5 and not result.cached.any()
    np.testing.assert_array_equal(result.to_array(), reference)


def test_feature_cache_refuses_reentrant_use_instead_of_deadlocking(tmp_path):
    paths = tones(tmp_path, 2)
    cache = audio.FeatureCache(tmp_path / "cache", CACHE_CFG)
    seen = []

    def callback(done, total, loss):
        seen.append(done)
        len(cache)  # the cache is mid-extract on this very thread

    with pytest.raises(RuntimeError, match="busy"):
        cache.extract(paths, show_progress=False, callback=callback)
    assert seen == [4]
    # The chunk finished before the callback stays cached, and the object is usable again.
    assert len(cache) == 2
    assert cache.extract(paths, show_progress=False).cached.tolist() == [True, True, False, False]


def test_several_excerpts_spread_over_each_file(tmp_path):
    sr = 8000
    t = np.arange(9 * sr) / sr
    # three seconds each of 300, 600 and 1200 Hz: three 3 s excerpts are one of each
    y = np.concatenate([0.3 * np.sin(2 * np.pi * f * t[: 3 * sr]) for f in (300, 600, 1200)])
    song = tmp_path / "song.wav"
    write_wav(song, y, sr)
    paths = [song, tmp_path / "missing.wav", AUDIO / "tone.ogg"]
    cfg = audio.FeatureConfig.paper()
    result = audio.extract(paths, cfg, excerpts=3, show_progress=False, cache_dir=tmp_path / "cache")
    assert result.features.shape == (3, 3, 128, 47)
    assert result.ok.tolist() == [True, False, True]
    assert [f["index"] for f in result.failures] == [1]
    loudest = result.features[0].mean(axis=2).argmax(axis=1)
    assert loudest[0] < loudest[1] < loudest[2], loudest  # the excerpts in order of time
    for k, part in enumerate(cfg.excerpts(3)):
        assert part.position == ("spread", k, 3)
        alone = audio.extract(paths, part, show_progress=False)
        np.testing.assert_array_equal(result.features[:, k], alone.features)
    again = audio.extract(paths, cfg, excerpts=3, show_progress=False, cache_dir=tmp_path / "cache")
    assert again.cached.tolist() == [True, False, True]
    np.testing.assert_array_equal(again.features, result.features)
    with pytest.raises(ValueError, match="excerpts must be a positive integer"):
        audio.extract(paths, cfg, excerpts=0)
    with pytest.raises(ValueError, match="excerpt 3 of 3"):
        cfg.replace(position=("spread", 3, 3))


def test_feature_config_is_a_typed_class():
    """The Rust type is the schema: keywords, getters, replace, equality, hashing, pickling."""
    import pickle

    cfg = audio.FeatureConfig(sample_rate=22050, n_fft=2048, hop_length=512, win_length=2048, n_mels=64)
    assert (cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.window, cfg.log, cfg.ref, cfg.amin) == (
        22050,
        2048,
        64,
        "hamming",
        "db",
        1.0,
        1e-10,
    )
    assert cfg.shape == (64, 130)
    assert audio.FeatureConfig() == audio.FeatureConfig.paper() != cfg
    assert audio.FeatureConfig(sample_rate=22050) == audio.FeatureConfig.common()
    assert hash(audio.FeatureConfig(sample_rate=22050)) == hash(audio.FeatureConfig.common())
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert audio.FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["stft"]["n_fft"] == 2048
    with pytest.raises(ValueError, match="n_mels"):
        audio.FeatureConfig.from_dict({**cfg.to_dict(), "n_mels": 0})
    with pytest.raises(TypeError, match="sample_rate"):
        audio.FeatureConfig.from_dict({**cfg.to_dict(), "sample_rate": "fast"})
    assert eval(repr(cfg), {"FeatureConfig": audio.FeatureConfig}) == cfg
    changed = cfg.replace(position="centre", htk=True, norm=None, log="log1p", log1p_c=10)
    assert (changed.position, changed.seed, changed.htk, changed.norm, changed.log1p_c, changed.ref) == (
        "centre",
        None,
        True,
        None,
        10.0,
        None,
    )
    assert cfg.n_fft == 2048 and cfg.position == "random"  # replace leaves the original alone
    assert audio.FeatureConfig(position=1.5).position == 1.5
    assert audio.FeatureConfig(seed=7).seed == 7
    with pytest.raises(TypeError, match="n_fft"):
        audio.FeatureConfig(n_fft="large")
    with pytest.raises(TypeError, match="unknown setting"):
        cfg.replace(hop=3)
    with pytest.raises(ValueError, match="seed only applies"):
        audio.FeatureConfig(position="centre", seed=1)
    with pytest.raises(ValueError, match="win_length"):
        audio.FeatureConfig(n_fft=512)  # the paper's 1024-sample window no longer fits
    with pytest.raises(ValueError, match="only applies to log='db'"):
        audio.FeatureConfig(log="none", top_db=60)
