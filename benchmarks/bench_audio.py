"""Log-Mel front end: musrec vs librosa and torchaudio, side by side in one run.

    python3 -m pip install ".[bench]" librosa soundfile joblib "torch==2.11.0" "torchaudio==2.11.0"
    python3 benchmarks/bench_audio.py              # 1,000 files, 3 s and 30 s clips
    python3 benchmarks/bench_audio.py --files 200 --quick

All three compute the same feature (see ../shared/BENCHMARKS.md): Hamming window 1024, hop
512, 128 Slaney Mel bands with Slaney norm, zero padding (center=True), power 2, then
power_to_db(ref=1, amin=1e-10, top_db=80) per clip — torchaudio with mel_scale="slaney",
norm="slaney", pad_mode="constant", window_fn=torch.hamming_window and a (B, 1, T) batch so
top_db applies per clip. Clips per second (median of repeats), for 3 s and 30 s clips:

* transform only (decoding excluded): clips already in memory at the target rate, one clip
  per call on 1 thread, and a batch of clips on 2 workers;
* from files (decoding included): 30 s 44.1 kHz stereo WAVs, decoded, mixed to mono,
  resampled to the target rate, the centred excerpt taken and transformed — one file per
  call on 1 worker, and the batch of all files on 2 workers;
* 2 workers means joblib processes for librosa (and for torchaudio on files; its batch
  transform uses 2 torch threads) and musrec's own 2 threads;
* librosa is timed as usually called (filterbank built per call, ``librosa.load`` of the
  whole file) and its fastest way (filterbank built once, ``librosa.load(offset=...,
  duration=...)`` of the excerpt only); torchaudio loads the excerpt only
  (``frame_offset``/``num_frames``), its fastest way;
* musrec's cached pass: ``extract(..., cache_dir=...)`` again over files already in the
  on-disk cache (what a second epoch or a re-run costs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import musrec
import numpy as np

N_FFT, HOP, N_MELS = 1024, 512, 128


def median_rate(fn, n_items: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_items / statistics.median(times)


def write_wav(path: str, seconds: float, sr: int, rng: np.random.Generator) -> None:
    """A 44.1 kHz stereo 16-bit WAV of harmonic notes plus noise."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(110, 880)
    left = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * 0.2
    right = left * 0.8 + 0.05 * rng.standard_normal(t.size)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr, subtype="PCM_16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--sr", type=int, default=22050)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 s clips only")
    args = p.parse_args()

    import librosa
    import torch
    import torchaudio
    from joblib import Parallel, delayed

    torch.set_num_threads(1)
    sr = args.sr
    rng = np.random.default_rng(0)
    cfg = musrec.audio.FeatureConfig.paper(sample_rate=sr, position="centre")
    mel_basis = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS)
    window = np.hamming(N_FFT + 1)[:-1]
    to_mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr,
        n_fft=N_FFT,
        hop_length=HOP,
        n_mels=N_MELS,
        window_fn=torch.hamming_window,
        mel_scale="slaney",
        norm="slaney",
        pad_mode="constant",
        power=2.0,
    )
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)

    def librosa_mel(y):
        S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, window="hamming", n_mels=N_MELS)
        return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0)

    def librosa_mel_cached(y):
        S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, window=window, pad_mode="constant")) ** 2
        return librosa.power_to_db(mel_basis @ S, ref=1.0, amin=1e-10, top_db=80.0)

    rows = []
    lengths = [3.0] if args.quick else [3.0, 30.0]
    n_batch_clips = min(args.files, 256)
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(args.files):
            path = os.path.join(d, f"{i:05d}.wav")
            write_wav(path, 30.0, 44100, rng)
            paths.append(path)
        file_seconds = 30.0
        # One untimed call of each side first (numba JIT, FFT plans, joblib's workers).
        warm = rng.standard_normal(int(3 * sr)).astype(np.float32) * 0.1
        librosa_mel(warm), librosa_mel_cached(warm), musrec.audio.log_mel(warm, cfg)
        to_db(to_mel(torch.from_numpy(warm).reshape(1, 1, -1)))
        Parallel(n_jobs=2)(delayed(librosa_mel)(warm) for _ in range(4))
        librosa.load(paths[0], sr=sr), torchaudio.load(paths[0])
        resample = torchaudio.transforms.Resample(44100, sr)
        single = paths[: min(50, len(paths))]

        for seconds in lengths:
            n = int(seconds * sr)
            clips = rng.standard_normal((n_batch_clips, n)).astype(np.float32) * 0.1
            c = cfg.replace(clip_seconds=seconds)
            mine = musrec.audio.log_mel(clips[0], c)
            ref = librosa_mel(clips[0])
            assert mine.shape == ref.shape and np.abs(mine - ref).max() < 1e-2, "same feature on both sides"
            one = clips[:64]
            batch_t = torch.from_numpy(clips).unsqueeze(1)

            def torch_batch(batch=batch_t):
                torch.set_num_threads(2)
                try:
                    return to_db(to_mel(batch))
                finally:
                    torch.set_num_threads(1)

            # The lambdas run right here, inside this iteration, so late binding is harmless.
            rates = {  # noqa: B023
                "musrec": median_rate(lambda: [musrec.audio.log_mel(y, c) for y in one], len(one), args.repeats),  # noqa: B023
                "librosa": median_rate(lambda: [librosa_mel(y) for y in one], len(one), args.repeats),  # noqa: B023
                "librosa fastest": median_rate(
                    lambda: [librosa_mel_cached(y) for y in one],  # noqa: B023
                    len(one),
                    args.repeats,
                ),
                "torchaudio": median_rate(
                    lambda: [to_db(to_mel(torch.from_numpy(y).reshape(1, 1, -1))) for y in one],  # noqa: B023
                    len(one),
                    args.repeats,
                ),
            }
            rows.append((f"transform only, {seconds:.0f} s clip, one clip per call, 1 thread", rates))
            rates = {  # noqa: B023
                "musrec": median_rate(lambda: musrec.audio.log_mel(clips, c, num_threads=2), len(clips), args.repeats),  # noqa: B023
                "librosa": median_rate(
                    lambda: Parallel(n_jobs=2)(delayed(librosa_mel)(y) for y in clips),  # noqa: B023
                    len(clips),
                    args.repeats,
                ),
                "librosa fastest": median_rate(
                    lambda: Parallel(n_jobs=2)(delayed(librosa_mel_cached)(y) for y in clips),  # noqa: B023
                    len(clips),
                    args.repeats,
                ),
                "torchaudio": median_rate(torch_batch, len(clips), args.repeats),
            }
            rows.append((f"transform only, {seconds:.0f} s clips, batch of {len(clips)}, 2 workers", rates))
            print(rows[-2], rows[-1], flush=True)

            start = int((file_seconds - seconds) / 2 * sr)
            start_native = int((file_seconds - seconds) / 2 * 44100)

            def librosa_file(path, n=n, start=start):
                y, _ = librosa.load(path, sr=sr, mono=True)
                return librosa_mel(y[start : start + n])

            def librosa_file_span(path, seconds=seconds):
                y, _ = librosa.load(path, sr=sr, mono=True, offset=(file_seconds - seconds) / 2, duration=seconds)
                return librosa_mel_cached(y)

            def torchaudio_file(path, n=n, start_native=start_native, seconds=seconds):
                torch.set_num_threads(1)
                w, _ = torchaudio.load(path, frame_offset=start_native, num_frames=int(seconds * 44100))
                y = resample(w.mean(0))[:n]
                return to_db(to_mel(y.reshape(1, 1, -1)))

            rates = {
                "musrec": median_rate(
                    lambda c=c: [musrec.audio.extract([q], c, num_threads=1, show_progress=False) for q in single],
                    len(single),
                    args.repeats,
                ),
                "librosa": median_rate(lambda f=librosa_file: [f(q) for q in single], len(single), args.repeats),
                "librosa fastest": median_rate(
                    lambda f=librosa_file_span: [f(q) for q in single], len(single), args.repeats
                ),
                "torchaudio": median_rate(lambda f=torchaudio_file: [f(q) for q in single], len(single), args.repeats),
            }
            rows.append((f"from files, {seconds:.0f} s clip, one file per call, 1 worker", rates))

            def parallel(f):
                return median_rate(lambda: Parallel(n_jobs=2)(delayed(f)(q) for q in paths), len(paths), args.repeats)

            rates = {
                "musrec": median_rate(
                    lambda c=c: musrec.audio.extract(paths, c, num_threads=2, show_progress=False),
                    len(paths),
                    args.repeats,
                ),
                "librosa": parallel(librosa_file),
                "librosa fastest": parallel(librosa_file_span),
                "torchaudio": parallel(torchaudio_file),
            }
            rows.append((f"from files, {seconds:.0f} s clips, batch of {len(paths)}, 2 workers", rates))
            with tempfile.TemporaryDirectory() as cache_dir:
                first = musrec.audio.extract(paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir)
                again = musrec.audio.extract(paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir)
                assert again.cached.all() and np.array_equal(first.features, again.features)
                rates = {
                    "musrec": median_rate(
                        lambda c=c, cache_dir=cache_dir: musrec.audio.extract(
                            paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir
                        ),
                        len(paths),
                        args.repeats,
                    ),
                }
            rows.append((f"from files, {seconds:.0f} s clips, batch of {len(paths)}, cached second pass", rates))
            print(rows[-3], rows[-2], rows[-1], flush=True)

    nan = float("nan")
    print(f"\nclips per second (higher is better), target rate {sr} Hz\n")
    print(
        "| work | musrec | librosa | librosa, fastest way | torchaudio "
        "| musrec / librosa | musrec / librosa fastest | musrec / torchaudio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        m, lib, fast, ta = (r.get(k, nan) for k in ("musrec", "librosa", "librosa fastest", "torchaudio"))

        def cell(v):
            return "-" if v != v else f"{v:,.0f}"

        def ratio(v, m=m):
            return "-" if v != v else f"{m / v:.1f}x"

        print(
            f"| {name} | {cell(m)} | {cell(lib)} | {cell(fast)} | {cell(ta)} "
            f"| {ratio(lib)} | {ratio(fast)} | {ratio(ta)} |"
        )


if __name__ == "__main__":
    main()
