"""Read an operator's audio file as 16 kHz mono float32, with one-line errors for bad files.

WAV and FLAC are read with soundfile (libsndfile), so the station needs no ffmpeg; other formats go
through ffmpeg when it is installed (as openai-whisper's own ``load_audio`` does) and otherwise get
a clear error. Resampling is polyphase (``scipy.signal.resample_poly``), exact for the usual rates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from environments.errors import ShopfloorInputError

SAMPLE_RATE = 16_000  # Hz, what Whisper takes
MAX_SECONDS = 60.0  # a spoken command is seconds long; a 10-minute file is a mistake, not a command
SILENCE_RMS = 1e-3  # below this (about -60 dBFS) the file holds no speech
NATIVE_SUFFIXES = (".wav", ".flac")


class SilentAudio(ShopfloorInputError):
    """The file is readable but holds no speech: an answer (nothing was said), not a broken file."""


def _bad(path: Path, what: str, allowed: str = "a WAV or FLAC file with speech (other formats need ffmpeg)") -> None:
    raise ShopfloorInputError(f"audio {str(path)!r} {what}; allowed: {allowed}.")


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of mono float samples from ``rate`` to ``target`` Hz."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def _read_native(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        _bad(path, f"is corrupt or not audio ({str(e).splitlines()[0][:80]})")
    return samples.mean(axis=1), int(rate)


def _read_ffmpeg(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        _bad(path, f"is a {path.suffix or 'suffix-less'} file and ffmpeg is not installed to decode it",
             "a WAV or FLAC file (read without ffmpeg), or install ffmpeg for other formats")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-t", str(max_seconds + 1), "-i", str(path), "-f", "s16le",
           "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]
    res = subprocess.run(cmd, capture_output=True, timeout=60)
    if res.returncode != 0:
        _bad(path, f"could not be decoded by ffmpeg ({res.stderr.decode(errors='replace').strip()[:80]})")
    return np.frombuffer(res.stdout, np.int16).astype(np.float32) / 32768.0, SAMPLE_RATE


def load_audio(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 samples at 16 kHz.

    Raises
    ------
    ShopfloorInputError : a missing, empty, corrupt or undecodable file; one longer than ``max_seconds``;
        or one that is silent.
    """
    path = Path(path)
    if not path.is_file():
        _bad(path, "does not exist")
    if path.stat().st_size == 0:
        _bad(path, "is empty (0 bytes)")
    if path.suffix.lower() in NATIVE_SUFFIXES:
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as e:
            _bad(path, f"is corrupt or not audio ({str(e).splitlines()[0][:80]})")
        if info.frames == 0 or info.samplerate <= 0:
            _bad(path, "holds no samples")
        if info.frames / info.samplerate > max_seconds:
            _bad(path, f"is {info.frames / info.samplerate:.0f} s long",
                 f"a spoken command of at most {max_seconds:.0f} s")
        samples, rate = _read_native(path)
    else:
        samples, rate = _read_ffmpeg(path, max_seconds)
        if len(samples) / rate > max_seconds:
            _bad(path, f"is longer than {max_seconds:.0f} s", f"a spoken command of at most {max_seconds:.0f} s")
    if len(samples) == 0:
        _bad(path, "holds no samples")
    if not np.all(np.isfinite(samples)):
        _bad(path, "holds non-finite samples")
    if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise SilentAudio(f"audio {str(path)!r} is silent (no speech above -60 dBFS); allowed: a recording with "
                          "speech.")
    return resample(samples, rate)


def speech_span(samples: np.ndarray, frame_s: float = 0.02, relative: float = 0.05,
                pad_s: float = 0.3) -> tuple[int, int]:
    """(start, end) sample indices of the speech: from the first to the last 20 ms frame whose RMS is at
    least ``relative`` of the loudest frame's, padded by ``pad_s``. Silence before and after a command
    costs encoder time and says nothing. The pad keeps quiet consonants, and enough of the silence after
    the command: cut closer, tiny.en heard "stop the line" as "start the line"."""
    n = int(frame_s * SAMPLE_RATE)
    if len(samples) < 2 * n:
        return 0, len(samples)
    frames = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = np.flatnonzero(rms >= max(SILENCE_RMS, relative * rms.max()))
    if len(loud) == 0:
        return 0, len(samples)
    pad = int(pad_s * SAMPLE_RATE)
    return max(0, loud[0] * n - pad), min(len(samples), (loud[-1] + 1) * n + pad)
