"""Synthetic operator speech: espeak-ng voices and sox machine noise, for training and measuring.

Both the speech adapter's training set (``perception.train_speech``) and the voice benchmark
(``benchmarks/voice.py``) say their sentences here, so that the two differ only in what they choose
(voices, speeds, noise), never in how a clip is made. espeak-ng and sox are Debian packages
(``apt install espeak-ng sox``; the Makefile's test setup installs them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from environments.errors import ShopfloorInputError
from perception.audio_io import SAMPLE_RATE, load_audio


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise ShopfloorInputError(f"synthetic speech needs {' and '.join(missing)}; allowed: install them "
                                  "(Debian: apt install espeak-ng sox).")


def speak(text: str, voice: str, words_per_min: int, wav: Path, pitch: int | None = None) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice`` (e.g. "en-us", "en-gb-scotland+f2"), as 16 kHz float32 samples."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(words_per_min), "-w", str(wav)]
    if pitch is not None:
        cmd += ["-p", str(pitch)]
    subprocess.run([*cmd, text], check=True)
    return load_audio(wav)


def machine_noise(seconds: float, wav: Path, colour: str = "brown", hum_hz: float = 100.0) -> np.ndarray:
    """``seconds`` of machine noise from sox: ``colour`` noise plus a hum and its second harmonic. ``-R``
    seeds sox's generator with a fixed number, so the same call gives the same samples."""
    if colour not in ("brown", "pink", "white"):
        raise ShopfloorInputError(f"noise colour {colour!r} is invalid; allowed: brown, pink, white.")
    length = f"{seconds:.2f}"
    subprocess.run(["sox", "-R", "-n", "-r", str(SAMPLE_RATE), "-c", "1", str(wav), "synth", length,
                    f"{colour}noise", "synth", length, "sine", "mix", f"{hum_hz:g}", "synth", length, "sine", "mix",
                    f"{2 * hum_hz:g}", "vol", "0.5"], check=True)
    return sf.read(wav, dtype="float32")[0]


def mix_noise(speech: np.ndarray, noise_bed: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``speech`` with a window of ``noise_bed`` (placed by ``rng``) mixed in at ``snr_db``."""
    if len(noise_bed) <= len(speech):
        raise ShopfloorInputError(f"a noise bed of {len(noise_bed)} samples is too short for {len(speech)} samples "
                                  "of speech; allowed: a longer bed.")
    start = int(rng.integers(len(noise_bed) - len(speech)))
    noise = noise_bed[start:start + len(speech)]
    gain = np.sqrt(np.mean(speech ** 2) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
    return (speech + gain * noise).astype(np.float32)
