"""Helpers shared by the tests: the one WAV writer (scratch directories are pytest's ``tmp_path``)."""

from __future__ import annotations

import wave

import numpy as np


def write_wav(path, samples, sr):
    """Write float samples in [-1, 1] as a mono 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def write_tone(path, sr=8000, seconds=0.5, freq=440.0):
    """Write a sine tone of amplitude 0.3."""
    t = np.arange(int(sr * seconds)) / sr
    write_wav(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)
