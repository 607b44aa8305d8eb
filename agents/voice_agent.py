"""VoiceAgent: the operator's spoken commands become ``command/<unit>`` posts, or ``veto/voice`` with a reason.

A voice event (``event/voice``) carries a recording (``audio``: a WAV or FLAC file) or, in scripted runs,
what was said already decoded: a ``command`` (``{"unit": ..., "settings": {...}}``) or a ``query``. A
recording goes through Whisper held to the command grammar (``perception.speech``), the grammar
(``perception.commands``) and the gate (``agents.voice_commands.CommandGate``), which checks it against
the scenario's limits and holds stopping a line or a large setpoint jump for the operator's ``confirm``
(the event's own time, ``at_s``, runs the confirmation window).

Posts, per event:

- ``answer/voice/<event>``: what was heard, the intent and slots, accepted or not and why (the report's
  operator table reads it);
- ``command/<unit>`` for an accepted command; ``query/parts`` for a search, answered by the
  InspectionAgent with CLIP retrieval;
- ``veto/voice`` for a refusal: out of range, unreadable audio, a lapsed confirmation, no command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agents.arbitration import validate_operator_command
from agents.blackboard import Entry, Post
from agents.voice_commands import CommandGate, GateOutcome
from environments.errors import ShopfloorInputError
from perception.audio_io import SAMPLE_RATE, SilentAudio, load_audio
from perception.commands import Vocabulary, parse_command

if TYPE_CHECKING:  # Whisper means torch: imported by make_listener, only where there are recordings to hear
    from perception.constrained_decoding import TokenGrammar
    from perception.speech import SpeechRecognizer

QUERY_TOP_K = 10  # parts an operator's search returns


@dataclass
class Listener:
    """Whisper and the grammar it is held to, for one plant's vocabulary."""

    recognizer: SpeechRecognizer
    grammar: TokenGrammar | None  # None: free decoding, the grammar only parses
    vocabulary: Vocabulary

    def hear(self, samples) -> str:
        if self.grammar is None:
            return self.recognizer.transcribe(samples).text
        return self.recognizer.transcribe_command(samples, self.grammar).text


def make_listener(model: str | None, vocabulary: Vocabulary, grammar: bool = True) -> Listener:
    """Whisper (``perception.speech.load_whisper``: a path or name, None for tiny.en), warmed up, and the
    command grammar of ``vocabulary`` over its tokens."""
    from perception.constrained_decoding import command_grammar
    from perception.speech import SpeechRecognizer, load_whisper

    recognizer = SpeechRecognizer(load_whisper(model).model)
    held = command_grammar(recognizer.tokenizer, vocabulary) if grammar else None
    listener = Listener(recognizer, held, vocabulary)
    listener.hear(np.zeros(SAMPLE_RATE // 2, np.float32))  # the first call pays one-off setup
    return listener


def hear_command(listener: Listener | None, gate: CommandGate, path: str, now_s: float,
                 in_force: dict[str, float]) -> tuple[dict, GateOutcome | None]:
    """One recording through recognition, the grammar and the gate. Returns what was heard
    (``{"audio", "heard", "intent", "slots", "accepted", "awaiting_confirmation", "reason"}``) and the gate's outcome, None when
    nothing was heard (silent or unreadable audio, recognition off: ``reason`` says which). Raises
    nothing for bad audio; the caller decides whether an unreadable file is an error."""
    heard = {"audio": str(path), "heard": "", "intent": "none", "slots": {}, "accepted": False,
             "awaiting_confirmation": False}
    if listener is None:
        return {**heard, "reason": "voice recognition is off (agents.voice.policy: off); allowed: whisper or "
                                  "whisper:<name-or-path>"}, None
    try:
        samples = load_audio(path)
    except SilentAudio:
        return {**heard, "reason": f"nothing was said in {str(path)!r} (the recording is silent)"}, None
    except ShopfloorInputError as exc:
        return {**heard, "reason": str(exc), "unreadable": True}, None
    text = listener.hear(samples)
    parsed = parse_command(text, listener.vocabulary)
    outcome = gate.submit(parsed, now_s, in_force)
    return {**heard, "heard": text, "intent": parsed.intent, "slots": parsed.slots, "accepted": outcome.accepted,
            "awaiting_confirmation": outcome.awaiting_confirmation, "reason": outcome.reason}, outcome


class VoiceAgent:
    """Parameters
    ----------
    gate : the scenario's command gate (limits, confirmation window).
    listener : speech recognition; None refuses recordings (``agents.voice.policy: off``).
    in_force : the settings in force when the run starts (the gate measures setpoint jumps from them).
    """

    def __init__(self, gate: CommandGate, listener: Listener | None = None, in_force: dict[str, float] | None = None):
        self.name, self.subscribes = "voice", ("event/voice",)
        self.gate, self.listener = gate, listener
        self.in_force = dict(in_force or {})
        self.accepted = self.rejected = 0

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        posts: list[Post] = []
        for event in inbox:
            if event.topic != "event/voice":
                continue
            if event.value.get("audio"):
                posts += self._hear(event)
            if event.value.get("query"):
                posts.append(Post("query/parts", event.key, {"text": event.value["query"], "k": QUERY_TOP_K}))
            if event.value.get("command"):
                posts += self._command(event.key, event.value["command"])
        return posts

    def _command(self, key: str, command: dict) -> list[Post]:
        unit, settings = command.get("unit"), command.get("settings")
        try:
            validate_operator_command(str(unit), settings)
        except ShopfloorInputError as exc:
            self.rejected += 1
            return [Post("veto/voice", key, {"command": command, "reason": str(exc)})]
        self.accepted += 1
        if settings.get("resume"):  # the controller is back in charge: its own settings hold again
            for setting in ("release_per_h", "speed_factor"):
                self.in_force.pop(setting, None)
        else:
            self.in_force.update({k: float(v) for k, v in settings.items() if not isinstance(v, bool)})
        return [Post(f"command/{unit}", key, settings)]  # keyed by the event that asked for it

    def _hear(self, event: Entry) -> list[Post]:
        key = event.key
        heard, outcome = hear_command(self.listener, self.gate, event.value["audio"],
                                      float(event.value.get("at_s", 0.0)), self.in_force)
        heard.pop("unreadable", None)
        posts = [Post("answer/voice", key, heard)]
        if outcome is not None and outcome.command is not None:
            posts += self._command(key, outcome.command)
        elif outcome is not None and outcome.query is not None:
            posts.append(Post("query/parts", key, {"text": outcome.query, "k": QUERY_TOP_K}))
        if outcome is None or (not outcome.accepted and not outcome.awaiting_confirmation):
            self.rejected += 1
            posts.append(Post("veto/voice", key, {k: heard[k] for k in ("audio", "heard", "intent", "reason")}))
        return posts
