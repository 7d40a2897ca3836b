"""Log-Mel front end: musrec vs librosa and torchaudio, side by side in one run.

    python3 -m pip install ".[bench]" librosa soundfile joblib threadpoolctl "torch==2.11.0" "torchaudio==2.11.0"
    python3 benchmarks/bench_audio.py              # 300 files, 3 s and 30 s clips, 5 repetitions
    python3 benchmarks/bench_audio.py --files 300 --quick   # 3 s clips only

All three compute the same feature (see ../shared/BENCHMARKS.md): Hamming window 1024, hop
512, 128 Slaney Mel bands with Slaney norm, zero padding (center=True), power 2, then
power_to_db(ref=1, amin=1e-10, top_db=80) per clip — torchaudio with mel_scale="slaney",
norm="slaney", pad_mode="constant", window_fn=torch.hamming_window and a (B, 1, T) batch so
top_db applies per clip. Clips per second, for 3 s and 30 s clips:

* transform only (decoding excluded): clips already in memory at the target rate, one clip
  per call on 1 thread, and a batch of clips on 2 workers;
* from files (decoding included): 30 s 44.1 kHz stereo WAVs, decoded, mixed to mono,
  resampled to the target rate, the centred excerpt taken and transformed — one file per
  call on 1 worker, and the batch of all files on 2 workers;
* 2 workers means joblib processes for librosa (and for torchaudio on files; its batch
  transform uses 2 torch threads) and musrec's own 2 threads; 1 worker means BLAS limited
  to one thread (threadpoolctl) and torch.set_num_threads(1);
* librosa is timed as usually called (filterbank built per call, ``librosa.load`` of the
  whole file) and its fastest way (filterbank built once, ``librosa.load(offset=...,
  duration=...)`` of the excerpt only); torchaudio loads the excerpt only
  (``frame_offset``/``num_frames``; through soundfile when torchaudio.load lacks its
  torchcodec backend), its fastest way;
* musrec's cached pass: ``extract(..., cache_dir=...)`` again over files already in the
  on-disk cache (what a second epoch or a re-run costs).

Every figure is the median of ``--repeats`` repetitions with the range (min-max) beside it;
within a row the sides run alternately, repetition by repetition, so a burst of load on a
shared machine falls on all of them, and each ratio is the median (and range) of the
repetition-by-repetition ratios. The run prints the CPU, the load average before and after,
and the threads each side used.

The FLOP floor: the arithmetic of one clip (a real FFT of n_fft per frame counted as
2.5 n_fft log2 n_fft flops, |X|^2, the Mel product's multiply-adds over the filterbank's
non-zero weights) divided by the rate this machine's BLAS reaches on a large single-thread
GEMM, in f64 (the precision musrec's FFT runs in) and in f32, measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import musrec
import numpy as np
from _timing import interleaved, machine_line, ratio_spread

N_FFT, HOP, N_MELS = 1024, 512, 128
SIDES = ("musrec", "librosa", "librosa fastest", "torchaudio")


def write_wav(path: str, seconds: float, sr: int, rng: np.random.Generator) -> None:
    """A 44.1 kHz stereo 16-bit WAV of harmonic notes plus noise."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(110, 880)
    left = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * 0.2
    right = left * 0.8 + 0.05 * rng.standard_normal(t.size)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr, subtype="PCM_16")


def gemm_gflops(dtype, n: int = 1024, repeats: int = 5) -> float:
    """Best single-thread GEMM rate of this machine's BLAS (the peak the floor divides by)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    with threadpool_limits(1):
        a @ a
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def clip_flops(n_frames: int, nonzero_weights: int) -> float:
    n_bins = N_FFT // 2 + 1
    return n_frames * (2.5 * N_FFT * math.log2(N_FFT) + 3 * n_bins + 2 * nonzero_weights)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--sr", type=int, default=22050)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="3 s clips only")
    args = p.parse_args()

    import librosa
    import soundfile as sf
    import torch
    import torchaudio
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    print(f"machine: {machine_line()}")
    print(
        f"versions: musrec {musrec.__version__}, librosa {librosa.__version__}, torch {torch.__version__}, "
        f"torchaudio {torchaudio.__version__}"
    )
    print(
        "threads: 1 worker = musrec num_threads=1, librosa in this process with BLAS at 1 thread, "
        "torch.set_num_threads(1); 2 workers = musrec num_threads=2, joblib n_jobs=2 processes for "
        "librosa (and torchaudio on files, 1 torch thread each), torch.set_num_threads(2) for "
        "torchaudio's in-memory batch",
        flush=True,
    )
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

    def one_thread(fn):
        def run():
            with threadpool_limits(1):
                return fn()

        return run

    rows = []
    lengths = [3.0] if args.quick else [3.0, 30.0]
    n_batch_clips = min(args.files, 256)
    load_before = os.getloadavg()
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
        librosa.load(paths[0], sr=sr)
        try:
            torchaudio.load(paths[0])
            torchaudio_decoder = "torchaudio.load"
        except (ImportError, RuntimeError, OSError):
            torchaudio_decoder = "soundfile (torchaudio.load needs torchcodec)"
        print(f"torchaudio decodes files with {torchaudio_decoder}", flush=True)
        resample = torchaudio.transforms.Resample(44100, sr)
        single = paths[: min(50, len(paths))]

        def torchaudio_read(path, start_native, frames):
            if torchaudio_decoder == "torchaudio.load":
                w, _ = torchaudio.load(path, frame_offset=start_native, num_frames=frames)
                return w
            w, _ = sf.read(path, start=start_native, frames=frames, dtype="float32", always_2d=True)
            return torch.from_numpy(np.ascontiguousarray(w.T))

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
            sides = {  # noqa: B023
                "musrec": (lambda: [musrec.audio.log_mel(y, c, num_threads=1) for y in one], len(one)),  # noqa: B023
                "librosa": (one_thread(lambda: [librosa_mel(y) for y in one]), len(one)),  # noqa: B023
                "librosa fastest": (one_thread(lambda: [librosa_mel_cached(y) for y in one]), len(one)),  # noqa: B023
                "torchaudio": (
                    lambda: [to_db(to_mel(torch.from_numpy(y).reshape(1, 1, -1))) for y in one],  # noqa: B023
                    len(one),
                ),
            }
            rows.append(
                (f"transform only, {seconds:.0f} s clip, one clip per call, 1 worker", interleaved(sides, args.repeats))
            )
            sides = {  # noqa: B023
                "musrec": (lambda: musrec.audio.log_mel(clips, c, num_threads=2), len(clips)),  # noqa: B023
                "librosa": (lambda: Parallel(n_jobs=2)(delayed(librosa_mel)(y) for y in clips), len(clips)),  # noqa: B023
                "librosa fastest": (
                    lambda: Parallel(n_jobs=2)(delayed(librosa_mel_cached)(y) for y in clips),  # noqa: B023
                    len(clips),
                ),
                "torchaudio": (torch_batch, len(clips)),
            }
            rows.append(
                (
                    f"transform only, {seconds:.0f} s clips, batch of {len(clips)}, 2 workers",
                    interleaved(sides, args.repeats),
                )
            )
            print_row(*rows[-2]), print_row(*rows[-1])

            nonzero = int(np.count_nonzero(musrec.audio.mel_filters(sr=sr, n_fft=N_FFT, n_mels=N_MELS)))
            flops = clip_flops(mine.shape[1], nonzero)
            one_rate, batch_rate = rows[-2][1]["musrec"].median, rows[-1][1]["musrec"].median
            for name, dtype in (("f64", np.float64), ("f32", np.float32)):
                gflops = gemm_gflops(dtype)
                floor_us = flops / (gflops * 1e9) * 1e6
                print(
                    f"FLOP floor, {seconds:.0f} s clip ({flops / 1e6:.2f} MFLOP, {name} GEMM {gflops:.0f} GFLOP/s per "
                    f"thread): {floor_us:.1f} us per clip per thread; musrec 1 worker {1e6 / one_rate:.1f} us = "
                    f"{1e6 / one_rate / floor_us:.2f}x the floor, 2 workers {2e6 / batch_rate:.1f} us per clip per "
                    f"thread = {2e6 / batch_rate / floor_us:.2f}x",
                    flush=True,
                )

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
                w = torchaudio_read(path, start_native, int(seconds * 44100))
                y = resample(w.mean(0))[:n]
                return to_db(to_mel(y.reshape(1, 1, -1)))

            sides = {
                "musrec": (
                    lambda c=c: [musrec.audio.extract([q], c, num_threads=1, show_progress=False) for q in single],
                    len(single),
                ),
                "librosa": (one_thread(lambda f=librosa_file: [f(q) for q in single]), len(single)),
                "librosa fastest": (one_thread(lambda f=librosa_file_span: [f(q) for q in single]), len(single)),
                "torchaudio": (lambda f=torchaudio_file: [f(q) for q in single], len(single)),
            }
            rows.append(
                (f"from files, {seconds:.0f} s clip, one file per call, 1 worker", interleaved(sides, args.repeats))
            )

            def parallel(f):
                return (lambda: Parallel(n_jobs=2)(delayed(f)(q) for q in paths), len(paths))

            sides = {
                "musrec": (lambda c=c: musrec.audio.extract(paths, c, num_threads=2, show_progress=False), len(paths)),
                "librosa": parallel(librosa_file),
                "librosa fastest": parallel(librosa_file_span),
                "torchaudio": parallel(torchaudio_file),
            }
            rows.append(
                (
                    f"from files, {seconds:.0f} s clips, batch of {len(paths)}, 2 workers",
                    interleaved(sides, args.repeats),
                )
            )
            with tempfile.TemporaryDirectory() as cache_dir:
                first = musrec.audio.extract(paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir)
                again = musrec.audio.extract(paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir)
                assert again.cached.all() and np.array_equal(first.features, again.features)
                sides = {
                    "musrec": (
                        lambda c=c, cache_dir=cache_dir: musrec.audio.extract(
                            paths, c, num_threads=2, show_progress=False, cache_dir=cache_dir
                        ),
                        len(paths),
                    ),
                }
                rows.append(
                    (
                        f"from files, {seconds:.0f} s clips, batch of {len(paths)}, cached second pass",
                        interleaved(sides, args.repeats),
                    )
                )
            for row in rows[-3:]:
                print_row(*row)

    print(f"\nload average before {', '.join(f'{v:.2f}' for v in load_before)}; after: {machine_line()}")
    print(
        f"clips per second, median [min-max] of {args.repeats} alternating repetitions (higher is better), "
        f"target rate {sr} Hz\n"
    )
    print(
        "| work | musrec | librosa | librosa, fastest way | torchaudio "
        "| musrec / librosa | musrec / librosa fastest | musrec / torchaudio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        cells = [rate_cell(r.get(s)) for s in SIDES]
        ratios = [ratio_cell(r["musrec"], r.get(s)) for s in SIDES[1:]]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")


def rate_cell(rates) -> str:
    if rates is None:
        return "-"
    lo, hi = rates.spread()
    return f"{rates.median:,.0f} [{lo:,.0f}-{hi:,.0f}]"


def ratio_cell(mine, theirs) -> str:
    if theirs is None:
        return "-"
    med, lo, hi = ratio_spread(mine, theirs)
    return f"{med:.1f}x [{lo:.1f}-{hi:.1f}]"


def print_row(name, rates) -> None:
    parts = [f"{s} {rate_cell(rates[s])}" for s in SIDES if s in rates]
    parts += [f"vs {s} {ratio_cell(rates['musrec'], rates[s])}" for s in SIDES[1:] if s in rates]
    print(f"{name}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
