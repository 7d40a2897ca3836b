"""Log-Mel front end: musrec vs librosa and torchaudio, side by side in one run.

    python3 -m pip install ".[bench]" librosa soundfile "torch==2.11.0" "torchaudio==2.11.0"
    python3 benchmarks/bench_audio.py              # 1,000 files, 3 s and 30 s clips
    python3 benchmarks/bench_audio.py --files 200 --quick

All three compute the same feature (see ../shared/BENCHMARKS.md): Hamming window 1024, hop
512, 128 Slaney Mel bands with Slaney norm, zero padding (center=True), power 2, then
power_to_db(ref=1, amin=1e-10, top_db=80) per clip — torchaudio with mel_scale="slaney",
norm="slaney", pad_mode="constant", window_fn=torch.hamming_window and a (B, 1, T) batch so
top_db applies per clip. librosa is timed both as usually called and with its Mel
filterbank built once (its faster way). Clips per second (median of repeats):

* transform only: the clip is already in memory at the target rate;
* from files: decode a 44.1 kHz stereo WAV, mix to mono, resample to the target rate,
  take the excerpt, transform (librosa.load + melspectrogram; torchaudio.load + Resample;
  musrec.audio.extract);
* batches of files use 2 workers on every side (joblib processes for librosa and
  torchaudio, musrec's own threads).
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
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(args.files):
            path = os.path.join(d, f"{i:05d}.wav")
            write_wav(path, 30.0, 44100, rng)
            paths.append(path)
        resample = torchaudio.transforms.Resample(44100, sr)

        for seconds in lengths:
            n = int(seconds * sr)
            clips = rng.standard_normal((64, n)).astype(np.float32) * 0.1
            c = cfg.replace(clip_seconds=seconds)
            mine = musrec.audio.log_mel(clips[0], c)
            ref = librosa_mel(clips[0])
            assert mine.shape == ref.shape and np.abs(mine - ref).max() < 1e-2, "same feature on both sides"
            batch_t = torch.from_numpy(clips).unsqueeze(1)
            # The lambdas run right here, inside this iteration, so late binding is harmless.
            rates = {  # noqa: B023
                "musrec": median_rate(lambda: [musrec.audio.log_mel(y, c) for y in clips], 64, args.repeats),  # noqa: B023
                "librosa": median_rate(lambda: [librosa_mel(y) for y in clips], 64, args.repeats),  # noqa: B023
                "librosa (cached filterbank)": median_rate(
                    lambda: [librosa_mel_cached(y) for y in clips],  # noqa: B023
                    64,
                    args.repeats,
                ),
                "torchaudio (batch of 64, 1 thread)": median_rate(lambda: to_db(to_mel(batch_t)), 64, args.repeats),  # noqa: B023
            }
            rows.append((f"transform only, {seconds:.0f} s clip, 1 thread", rates))

            def librosa_file(path, n=n):
                y, _ = librosa.load(path, sr=sr, mono=True)
                start = (len(y) - n) // 2
                return librosa_mel_cached(y[start : start + n])

            def torchaudio_file(path, n=n):
                torch.set_num_threads(1)
                w, _ = torchaudio.load(path)
                y = resample(w.mean(0))
                start = (len(y) - n) // 2
                return to_db(to_mel(y[start : start + n].reshape(1, 1, -1)))

            rates = {
                "musrec (2 threads)": median_rate(
                    lambda c=c: musrec.audio.extract(paths, c, num_threads=2, show_progress=False),
                    len(paths),
                    args.repeats,
                ),
                "librosa (2 processes)": median_rate(
                    lambda f=librosa_file: Parallel(n_jobs=2)(delayed(f)(q) for q in paths), len(paths), args.repeats
                ),
                "torchaudio (2 processes)": median_rate(
                    lambda f=torchaudio_file: Parallel(n_jobs=2)(delayed(f)(q) for q in paths),
                    len(paths),
                    args.repeats,
                ),
            }
            rows.append((f"from 30 s 44.1 kHz stereo WAV files, {seconds:.0f} s clip, batch of {len(paths)}", rates))
            print(rows[-2], rows[-1], flush=True)

    print(f"\nclips per second (higher is better), target rate {sr} Hz\n")
    print(
        "| work | musrec | librosa | librosa, cached filterbank | torchaudio | musrec / librosa | musrec / torchaudio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        m = next(v for k, v in r.items() if k.startswith("musrec"))
        lib = next(v for k, v in r.items() if k.startswith("librosa") and "cached" not in k)
        cached = r.get("librosa (cached filterbank)", float("nan"))
        ta = next(v for k, v in r.items() if k.startswith("torchaudio"))
        best_lib = max(lib, cached) if cached == cached else lib
        print(f"| {name} | {m:,.0f} | {lib:,.0f} | {cached:,.0f} | {ta:,.0f} | {m / best_lib:.1f}x | {m / ta:.1f}x |")


if __name__ == "__main__":
    main()
