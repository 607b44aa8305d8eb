"""Train the speech adapter on synthetic commands (``shopfloor train speech``).

Recipe. Sentences come from templates over the command language (every intent, values across and
beyond the plant's limits, numbers spoken as words and written as Whisper writes them) and, about one
in three, from everyday talk, so the adapter learns to write what is said, not to hear a command in
everything (the recogniser's free row must still tell small talk apart, ``constrained_decoding.choose``).
espeak-ng says them with ``TRAINING_VOICES``: English accents that the voice benchmark never uses (it
speaks with en-us and en-gb), in varied pitch and speed, and half of the clips get machine noise of
another kind than the benchmark's (pink or white noise with a 50 or 60 Hz hum, against its brown noise
and 100 Hz), at 5 to 20 dB. Each epoch draws the noise anew.

The model hears exactly what the recogniser feeds it (``perception.speech.command_samples``: the
speech trimmed, with the same silence around it, the encoder cut to its length) and learns by
teacher forcing: cross-entropy on the written sentence's tokens after Whisper's start-of-transcript
prompt, with only the adapter's low-rank deltas trainable (``perception.speech_adapter``). AdamW with a
one-cycle learning rate; the epoch with the lowest validation loss is kept. Everything is seeded; on
one machine the same seed gives the same adapter.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from environments.errors import ShopfloorInputError
from environments.parts import COLOURS, MATERIALS, PART_TYPES
from perception.audio_io import speech_span
from perception.commands import spoken_number
from perception.speech import command_samples, encode_frames, load_whisper, log_mel
from perception.speech_adapter import LoraConfig, add_lora, save_adapter
from perception.synthetic_speech import machine_noise, mix_noise, require_tools, speak

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# English voices the benchmark does not speak with (it uses en-us and en-gb), and espeak-ng's voice variants.
TRAINING_VOICES = ("en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3", "+f4", "+klatt")
# Training noise: a hum the benchmark's brown noise at 100 Hz does not have.
NOISE_KINDS = (("pink", 50.0), ("white", 60.0))
NOISE_BED_S = 300.0


@dataclass(frozen=True)
class SpeechTrainConfig:
    seed: int = 0
    n_train: int = 2_400
    n_val: int = 300
    epochs: int = 2
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    rank: int = 8
    alpha: float = 16.0
    encoder_blocks: int = 2
    talk_share: float = 0.35  # everyday sentences among the clips
    noisy_share: float = 0.5
    snr_db: tuple[float, float] = (5.0, 20.0)
    words_per_min: tuple[int, int] = (120, 200)
    base_model: str = "tiny.en"
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 1.")
        for name in ("talk_share", "noisy_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: 0..1.")
        _ = self.lora  # LoraConfig refuses a bad rank, alpha or encoder_blocks

    @property
    def lora(self) -> LoraConfig:
        return LoraConfig(self.rank, self.alpha, self.encoder_blocks)


# ---- sentences -----------------------------------------------------------------------------------------

STATIONS = ("cutting", "forming", "welding", "finishing", "painting", "assembly", "packing", "pressing",
            "drilling", "grinding", "polishing", "moulding")
PARTS = tuple(p + "s" for p in PART_TYPES) + PART_TYPES + ("parts",)
PART_WORDS = MATERIALS + tuple(c for c in COLOURS if c != "natural") + ("defective", "cracked", "scratched", "dented",
                                                                        "stained")
DEFECTS_PLURAL = ("cracks", "scratches", "dents", "stains", "burrs", "missing holes", "defects")
DEFECTS_SINGULAR = ("crack", "scratch", "dent", "stain", "burr", "missing hole")
REGIONS = ("rim", "edge", "centre", "corner", "middle")
CONFIRMS = ("confirm", "confirmed", "yes", "go ahead", "do it", "affirmative", "yes confirm")
CANCELS = ("cancel", "cancel that", "abort", "no", "never mind", "forget it")
# Everyday talk near a station: none of it the voice benchmark's (benchmarks/voice.py, SMALL_TALK). Some of
# it sounds like a command ("stop the music", "line the boxes up"), so the adapter learns to write what
# was said, not the nearest command.
TALK_SUBJECTS = ("the coffee machine", "my locker", "the forklift", "the printer", "the heater", "the back door",
                 "the new schedule", "the meeting room", "the first aid kit", "the lift", "my jacket", "the van keys",
                 "the kettle", "the fire drill", "the night shift", "the safety briefing", "the parking lot",
                 "the vending machine", "my badge", "the training room", "the music", "the weather",
                 "my brother", "the football", "the new manager", "this week", "the canteen food", "my car")
TALK_PREDICATES = ("is broken again", "needs cleaning", "was moved yesterday", "is on the second floor",
                   "starts after lunch", "is making a strange noise", "is out of order", "is really cold today",
                   "was painted last week", "is locked", "has been fixed", "is in the blue cabinet",
                   "smells of paint", "is much better now", "is too far away", "was great", "looks fine to me",
                   "is getting worse", "will be late", "went really well")
TALK_QUESTIONS = ("what time is lunch", "did you see the game last night", "where did you leave the manual",
                  "can you pass me that box", "are you coming to the party", "how was your weekend",
                  "when does the bus come", "is it going to rain later", "who is on holiday next week",
                  "could you open the window", "have you had your coffee yet", "how far is the office",
                  "do we have any spare gloves", "shall we order pizza", "what did the manager say",
                  "can you turn the music down", "did you lock the car", "is this seat taken",
                  "what is the time", "where is the nearest exit", "can I borrow your pen")
TALK_REPLIES = ("just a moment", "sure thing", "not right now", "fair enough", "got it", "all right then",
                "no worries", "sounds great", "I see", "thanks a lot", "hang on a minute", "good idea",
                "see you on monday", "have a nice evening", "that is fine", "not bad", "me too", "I think so",
                "stop the music", "start the car", "turn the radio off", "line the boxes up", "check the weather",
                "raise your hand", "lower your voice", "send me the photos", "set an alarm", "show me the way",
                "do it yourself", "go and ask her", "yes of course not", "no idea")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _number(rng: np.random.Generator, low: int, high: int) -> tuple[str, str]:
    n = int(rng.integers(low, high + 1))
    return spoken_number(n), str(n)


def _decimal(rng: np.random.Generator) -> tuple[str, str]:
    whole, tenth = int(rng.integers(0, 10)), int(rng.integers(1, 10))
    return f"{spoken_number(whole)} point {spoken_number(tenth)}", f"{whole}.{tenth}"


def command_sentence(rng: np.random.Generator) -> tuple[str, str]:
    """One spoken command and how Whisper should write it, e.g. ("set pressure to two point five bar",
    "Set pressure to 2.5 bar.")."""
    kind = _pick(rng, ("temperature", "temperature", "temperature", "pressure", "rate", "speed", "speed", "stop",
                       "start", "inspect", "dispatch", "dispatch", "query", "query", "confirm", "cancel"))
    verb = _pick(rng, ("set", "set", "set", "change", "raise", "lower", "make"))
    the = _pick(rng, ("", "", "the "))
    line_said, line = _number(rng, 1, 4)
    if kind == "temperature":
        said, value = _number(rng, 20, 130) if rng.random() < 0.7 else _number(rng, 0, 400)
        target = _pick(rng, ("reactor temperature", "reactor temperature", "temperature", "jacket temperature"))
        unit = _pick(rng, (" degrees", " degrees", " degrees", ""))
        return f"{verb} {the}{target} to {said}{unit}", f"{verb} {the}{target} to {value}{unit}"
    if kind == "pressure":
        said, value = _decimal(rng) if rng.random() < 0.3 else _number(rng, 0, 60)
        target = _pick(rng, ("pressure", "reactor pressure"))
        return f"{verb} {the}{target} to {said} bar", f"{verb} {the}{target} to {value} bar"
    if kind == "rate":
        said, value = _number(rng, 10, 400)
        target = _pick(rng, ("release rate", "feed rate"))
        return f"{verb} {the}{target} to {said} parts per hour", f"{verb} {the}{target} to {value} parts per hour"
    if kind == "speed":
        said, value = _number(rng, 10, 300)
        if rng.random() < 0.6:
            return f"{verb} line {line_said} speed to {said} percent", f"{verb} line {line} speed to {value}%"
        return f"{verb} the speed of line {line_said} to {said} percent", f"{verb} the speed of line {line} to {value}%"
    if kind in ("stop", "start"):
        word = _pick(rng, ("stop", "stop", "halt") if kind == "stop" else ("start", "start", "restart", "resume"))
        if rng.random() < 0.15:
            return f"{word} the line", f"{word} the line"
        return f"{word} line {line_said}", f"{word} line {line}"
    if kind == "inspect":
        verb, station = _pick(rng, ("inspect", "inspect", "check")), _pick(rng, STATIONS)
        station = _pick(rng, (station, station, f"station {station}"))
        said = written = f"{verb} {station}"
        if rng.random() < 0.7:
            defect = _pick(rng, DEFECTS_PLURAL[:-1])
            said, written = f"{said} for {defect}", f"{written} for {defect}"
        if rng.random() < 0.25:
            batch_said, batch = _number(rng, 1, 200)
            said, written = f"{said} batch {batch_said}", f"{written} batch {batch}"
        return said, written
    if kind == "dispatch":
        order_said, order = _number(rng, 1, 200)
        vehicle_said, vehicle = _number(rng, 1, 9)
        noun, prep = _pick(rng, ("vehicle", "vehicle", "van", "truck")), _pick(rng, ("with", "with", "to", "on"))
        form = rng.random()
        if form < 0.6:
            return (f"dispatch order {order_said} {prep} {noun} {vehicle_said}",
                    f"dispatch order {order} {prep} {noun} {vehicle}")
        if form < 0.85:
            return f"dispatch order {order_said}", f"dispatch order {order}"
        return f"dispatch {prep} {noun} {vehicle_said}", f"dispatch {prep} {noun} {vehicle}"
    if kind == "query":
        verb = _pick(rng, ("find", "find", "show me", "search for", "list", "show"))
        words = " ".join(_pick(rng, PART_WORDS) for _ in range(int(rng.integers(0, 3))))
        text = f"{verb} {_pick(rng, ('', '', 'all ', 'the '))}{words + ' ' if words else ''}{_pick(rng, PARTS)}"
        tail = rng.random()
        if tail < 0.4:
            text += f" with {_pick(rng, DEFECTS_PLURAL)}"
        elif tail < 0.7:
            defect = _pick(rng, DEFECTS_SINGULAR)
            text += f" with {'an' if defect[0] in 'aeiou' else 'a'} {defect}"
        if tail < 0.7 and rng.random() < 0.4:
            text += f" {_pick(rng, ('near the', 'at the', 'on the'))} {_pick(rng, REGIONS)}"
        return text, text
    phrase = _pick(rng, CONFIRMS if kind == "confirm" else CANCELS)
    return phrase, phrase


def talk_sentence(rng: np.random.Generator) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.4:
        text = f"{_pick(rng, TALK_SUBJECTS)} {_pick(rng, TALK_PREDICATES)}"
        return text, text
    if kind < 0.7:
        text = _pick(rng, TALK_QUESTIONS)
        return text, text + "?"
    text = _pick(rng, TALK_REPLIES)
    return text, text


def written(text: str) -> str:
    """As Whisper writes a sentence: capitalised, ending in a full stop unless it ends in a mark already."""
    text = text[:1].upper() + text[1:]
    return text if text[-1:] in ".?!" else text + "."


def sentences(n: int, rng: np.random.Generator, talk_share: float) -> list[tuple[str, str]]:
    """``n`` (spoken, written) pairs, about ``talk_share`` of them everyday talk."""
    out = []
    for _ in range(n):
        said, text = talk_sentence(rng) if rng.random() < talk_share else command_sentence(rng)
        out.append((said, written(text)))
    return out


# ---- clips -----------------------------------------------------------------------------------------------

@dataclass
class Clip:
    speech: np.ndarray  # clean 16 kHz samples
    text: str  # the written sentence
    voice: str
    words_per_min: int


def render_clips(pairs: list[tuple[str, str]], rng: np.random.Generator, cfg: SpeechTrainConfig, tmp: Path,
                 progress: Callable[[int], None] = lambda k: None) -> list[Clip]:
    """Say every sentence with a drawn voice, variant, pitch and speed (espeak-ng runs two at a time)."""
    plans = [(said, text, _pick(rng, TRAINING_VOICES) + _pick(rng, VARIANTS),
              int(rng.integers(cfg.words_per_min[0], cfg.words_per_min[1] + 1)), int(rng.integers(30, 71)))
             for said, text in pairs]

    def one(k: int) -> Clip:
        said, text, voice, wpm, pitch = plans[k]
        return Clip(speak(said, voice, wpm, tmp / f"s{k}.wav", pitch=pitch), text, voice, wpm)

    clips = []
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        for clip in pool.map(one, range(len(plans))):
            clips.append(clip)
            progress(1)
    return clips


def heard(clip: Clip, beds: list[np.ndarray], rng: np.random.Generator, cfg: SpeechTrainConfig) -> np.ndarray:
    """The clip as the station's microphone hears it this epoch: maybe with noise, trimmed like a command."""
    audio = clip.speech
    if rng.random() < cfg.noisy_share:
        audio = mix_noise(audio, beds[int(rng.integers(len(beds)))], float(rng.uniform(*cfg.snr_db)), rng)
    start, end = speech_span(audio)
    return audio[start:end]


def batch_tensors(audios: list[np.ndarray], texts: list[str], model, tokenizer
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mel features (padded to the longest clip), decoder inputs and targets (-100 where no loss)."""
    samples = [command_samples(a, model.dims.n_audio_ctx) for a in audios]
    longest = max(len(s) for s in samples)
    mels = torch.cat([log_mel(np.pad(s, (0, longest - len(s))), model.dims.n_mels) for s in samples])
    prefix = list(tokenizer.sot_sequence_including_notimestamps)
    rows = [prefix + tokenizer.encode(" " + t) + [tokenizer.eot] for t in texts]
    width = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), width), tokenizer.eot, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        inputs[i, :len(row) - 1] = torch.tensor(row[:-1])
        targets[i, len(prefix) - 1:len(row) - 1] = torch.tensor(row[len(prefix):])
    return mels, inputs, targets


def sentence_loss(model, mels: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean token cross-entropy and the number of tokens right (argmax), teacher forced."""
    logits = model.decoder(inputs, encode_frames(model, mels))
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
    scored = targets != -100
    return loss, (logits.argmax(-1)[scored] == targets[scored]).sum()


def _batches(clips: list[Clip], size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of clips of similar length (less padding), in random order."""
    order = np.argsort([len(c.speech) + rng.integers(0, 8000) for c in clips], kind="stable")
    batches = [list(order[a:a + size]) for a in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_speech_adapter(cfg: SpeechTrainConfig, out: str | Path, progress: Progress | None = None,
                         command: str = "") -> dict:
    """Render, train and save the adapter to ``out`` plus ``out``'s ``.metrics.json``. Returns the metrics."""
    from whisper.tokenizer import get_tokenizer

    require_tools()
    out = Path(out)
    progress = progress or (lambda stage, done, total: None)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    n_all, done = cfg.n_train + cfg.n_val, [0]

    def rendered(k: int) -> None:
        done[0] += k
        progress("render", done[0], n_all)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        beds = [machine_noise(NOISE_BED_S, tmp / f"bed{k}.wav", colour, hum)
                for k, (colour, hum) in enumerate(NOISE_KINDS)]
        train = render_clips(sentences(cfg.n_train, rng, cfg.talk_share), rng, cfg, tmp, rendered)
        val = render_clips(sentences(cfg.n_val, rng, cfg.talk_share), rng, cfg, tmp, rendered)
    t_render = time.perf_counter() - t0
    val_rng = np.random.default_rng(cfg.seed + 1)  # the validation clips hear the same noise every epoch
    val_audio = [heard(c, beds, val_rng, cfg) for c in val]

    loaded = load_whisper(cfg.base_model, adapter=None)  # the published weights, never an earlier adapter
    model = loaded.model.float()
    tokenizer = get_tokenizer(model.is_multilingual, language="en" if model.is_multilingual else None,
                              task="transcribe")
    params = add_lora(model, cfg.lora, cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(cfg.n_train / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)

    def validate() -> tuple[float, float]:
        model.eval()
        loss_sum, right, tokens = 0.0, 0, 0
        with torch.no_grad():
            for idx in _batches(val, 32, np.random.default_rng(0)):
                mels, inputs, targets = batch_tensors([val_audio[i] for i in idx], [val[i].text for i in idx],
                                                      model, tokenizer)
                loss, ok = sentence_loss(model, mels, inputs, targets)
                n = int((targets != -100).sum())
                loss_sum, right, tokens = loss_sum + float(loss) * n, right + int(ok), tokens + n
        return loss_sum / tokens, right / tokens

    base_loss, base_acc = validate()
    history, best = [{"epoch": 0, "val_loss": base_loss, "val_token_accuracy": base_acc}], (base_loss, 0)
    meta = {"command": command, "seed": cfg.seed, "config": asdict(cfg), "base_model": loaded.source,
            "training_voices": list(TRAINING_VOICES)}
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum = 0.0
        batches = _batches(train, cfg.batch_size, rng)
        for step, idx in enumerate(batches):
            mels, inputs, targets = batch_tensors([heard(train[i], beds, rng, cfg) for i in idx],
                                                  [train[i].text for i in idx], model, tokenizer)
            loss, _ = sentence_loss(model, mels, inputs, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            progress(f"epoch {epoch + 1}/{cfg.epochs}", step + 1, len(batches))
        val_loss, val_acc = validate()
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / len(batches), "val_loss": val_loss,
                        "val_token_accuracy": val_acc})
        if val_loss < best[0]:
            best = (val_loss, epoch + 1)
            save_adapter(out, model, cfg.lora, {**meta, "epoch": epoch + 1, "val_loss": val_loss,
                                                "complete": epoch + 1 == cfg.epochs})
    if best[1] == 0:
        raise ShopfloorInputError(f"training did not lower the validation loss below the plain model's "
                                  f"({base_loss:.3f}); allowed: more clips or epochs, or another learning rate.")
    blob = torch.load(out, map_location="cpu", weights_only=True)
    blob["meta"]["complete"] = True  # the best epoch's deltas, now known to be the run's answer
    torch.save(blob, out)
    metrics = {"config": asdict(cfg), "command": command, "base_model": loaded.source,
               "render_s": round(t_render, 1), "train_s": round(time.perf_counter() - t0 - t_render, 1),
               "best_epoch": best[1], "history": history}
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
