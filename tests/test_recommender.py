"""Cold start as an API: musrec.Recommender from the tiny preset's trained pipeline."""

from __future__ import annotations

import musrec
import numpy as np
import pytest


@pytest.fixture(scope="module")
def served(tiny_experiment):
    pipe = tiny_experiment[3]
    rec = pipe.recommender("fusion")
    ds = pipe.dataset()
    _, usable = pipe.spectrograms()
    _, test_idx = pipe.split(usable)
    meta = pipe.metadata()
    return rec, ds, test_idx, meta


def _content(ds, meta, song):
    m = meta[song]
    return dict(audio_input=ds.songs.audio_path[song], tags=m["tags"], artist=m["artist"], year=m["year"])


def test_recommend_new_song_finds_its_listeners(served):
    rec, ds, test_idx, meta = served
    plays = ds.plays.tocsc()
    n, hits, expected = 30, 0, 0.0
    for song in test_idx[:25]:
        users, scores = rec.recommend_new_song(**_content(ds, meta, song), N=n)
        assert len(users) == n and np.all(np.diff(scores) <= 0)
        listeners = {ds.user_ids[u] for u in plays.indices[plays.indptr[song] : plays.indptr[song + 1]]}
        hits += len(listeners & set(users))
        expected += len(listeners) * n / len(ds.user_ids)
    assert hits > 2 * expected, (hits, expected)


def test_song_vector_matches_the_pipeline_prediction_and_numpy_ranking(served):
    rec, ds, test_idx, meta = served
    song = int(test_idx[0])
    vector = rec.song_vector(**_content(ds, meta, song))
    assert rec.excerpts == 3  # the pipeline's default
    path = ds.songs.audio_path[song]
    spec = musrec.audio.extract([path], rec.features, excerpts=rec.excerpts, show_progress=False).features
    np.testing.assert_allclose(vector, rec.model.predict(spec, [meta[song]])[0], rtol=1e-6)
    # the same vector from the log-Mel array
    np.testing.assert_allclose(
        rec.song_vector(spec[0], tags=meta[song]["tags"], artist=meta[song]["artist"]),
        rec.model.predict(spec, [{**meta[song], "year": None}])[0],
        rtol=1e-6,
    )
    users, scores = rec.recommend_new_song(spec[0], **{k: meta[song][k] for k in ("tags", "artist", "year")}, N=5)
    reference = rec.wmf.user_factors @ vector
    top = np.argsort(-reference, kind="stable")[:5]
    np.testing.assert_array_equal(users, np.asarray(ds.user_ids)[top])
    np.testing.assert_allclose(scores, reference[top], rtol=1e-4, atol=1e-7)


def test_a_mixed_catalogue(tiny_experiment, served):
    _, ds, test_idx, meta = served
    rec = tiny_experiment[3].recommender("fusion")  # a fresh one: add_song changes the catalogue
    user = ds.user_ids[0]
    played = {ds.songs.song_id[i] for i in ds.plays[0].indices}
    songs, scores = rec.recommend(user, N=20)
    assert len(songs) == 20 and not played & set(songs) and np.all(np.diff(scores) <= 0)
    assert played & set(rec.recommend(user, N=len(ds.songs.song_id), filter_listened=False)[0])

    new_ids = [f"NEW{i}" for i in range(3)]
    for new_id, song in zip(new_ids, test_idx[:3]):
        vector = rec.add_song(new_id, **_content(ds, meta, song))
        assert vector.shape == (rec.wmf.factors,) and rec.is_new(new_id)
    assert rec.n_songs == rec.n_known + 3
    new, _ = rec.recommend(user, N=5, only_new=True)
    assert sorted(new) == sorted(new_ids)
    everything, _ = rec.recommend(user, N=rec.n_songs)
    assert set(new_ids) <= set(everything)  # new songs compete with the known ones
    # a new song's nearest neighbours are catalogue songs; a known song is not its own neighbour
    similar, sims = rec.similar_songs(**_content(ds, meta, test_idx[0]), N=5)
    assert len(similar) == 5 and np.all(sims <= 1 + 1e-5) and "NEW0" in similar
    similar, _ = rec.similar_songs("NEW1", N=5)
    assert "NEW1" not in similar and len(similar) == 5
    # a user the model never saw, from three plays
    plays = {ds.songs.song_id[i]: 2 for i in ds.plays[1].indices[:3]}
    songs, _ = rec.recommend_for_plays(plays, N=10)
    assert len(songs) == 10 and not set(plays) & set(songs)


def test_bad_inputs(served, tmp_path):
    rec, ds, test_idx, meta = served
    with pytest.raises(KeyError, match="unknown user"):
        rec.recommend("nobody")
    with pytest.raises(KeyError, match="unknown song"):
        rec.similar_songs("NOSUCHSONG")
    with pytest.raises(FileNotFoundError, match="no audio file"):
        rec.recommend_new_song(tmp_path / "missing.wav", tags=["rock"])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(ValueError, match="cannot use the audio"):
        rec.recommend_new_song(corrupt)
    with pytest.raises(ValueError, match="needs the song's audio"):
        rec.recommend_new_song(tags=["rock"])
    with pytest.raises(ValueError, match="shape"):
        rec.recommend_new_song(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="already in the catalogue"):
        rec.add_song(ds.songs.song_id[0], **_content(ds, meta, test_idx[0]))
    with pytest.raises(ValueError, match="no new songs"):
        rec.recommend(ds.user_ids[0], only_new=True)
    with pytest.raises(ValueError, match="N must be"):
        rec.recommend(ds.user_ids[0], N=0)
    with pytest.raises(ValueError, match="at least one"):
        rec.recommend_for_plays({})


def test_pickles_and_serves_the_same(tiny_experiment, served):
    import pickle

    rec, ds, test_idx, meta = served
    back = pickle.loads(pickle.dumps(rec))
    user = ds.user_ids[0]
    for a, b in zip(back.recommend(user, N=10), rec.recommend(user, N=10)):
        np.testing.assert_array_equal(a, b)
    content = _content(ds, meta, test_idx[1])
    np.testing.assert_array_equal(back.song_vector(**content), rec.song_vector(**content))


def test_unfitted_models_are_refused(served):
    rec, *_ = served
    with pytest.raises(musrec.NotFittedError, match="wmf is not fitted"):
        musrec.Recommender(musrec.WMF(), rec.model)
    with pytest.raises(musrec.NotFittedError, match="not fitted"):
        musrec.Recommender(rec.wmf, musrec.FusionModel("fusion"))
    with pytest.raises(TypeError, match="got str"):
        musrec.Recommender("wmf", rec.model)
