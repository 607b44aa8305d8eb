"""Voice in the plant: the command language Whisper is held to, real recordings heard in a run, the report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from agents.runtime import operator_log, start_local_run
from agents.voice_agent import make_listener
from environments.errors import ShopfloorInputError
from environments.parts import COLOURS, MATERIALS, PART_TYPES
from environments.scenario import load_scenario
from perception.audio_io import load_audio
from perception.commands import Vocabulary, command_sentences, parse_command
from perception.constrained_decoding import TokenGrammar, choose

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocabulary(lines=("1", "2"), stations=("cutting", "welding"), n_vehicles=3)


def test_every_sentence_of_the_command_language_parses_to_a_command():
    rng = np.random.default_rng(0)
    patterns = command_sentences(VOCAB, PART_TYPES, MATERIALS + COLOURS)
    assert len(patterns) > 40
    for pattern in patterns:
        for _ in range(5):  # random alternatives of each choice; the first one too
            words = [choice[int(rng.integers(len(choice)))] for choice in pattern]
            text = " ".join(words).replace(" %", "%").replace(" °", "°")
            assert parse_command(text, VOCAB).intent != "none", (text, pattern[:2])


def _tokenizer():
    from whisper.tokenizer import get_tokenizer

    return get_tokenizer(False)


def test_token_grammar_admits_the_language_and_nothing_else():
    tok = _tokenizer()
    grammar = TokenGrammar([(("stop", "halt"), ("line",), ("1", "2")), (("cancel",),)], tok.encode, tok.eot)

    def walk(text: str):
        states = grammar.start()
        for t in tok.encode(text):
            allowed, _ = grammar.allowed(states)
            if t not in allowed:
                return None
            states = grammar.advance(states, t)
        return grammar.allowed(states)[1]  # may end here

    assert walk(" Stop line 2.") is True and walk("halt line 1") is True and walk(" Cancel") is True
    assert walk(" Stop line") is False  # a prefix: the line number must follow
    assert walk(" Stop line 3") is None and walk(" Start line 1") is None and walk(" Council") is None
    # the mask the decoder applies: exactly the allowed tokens (and end-of-text once complete)
    states = grammar.start()
    for t in tok.encode(" Stop line 2"):
        states = grammar.advance(states, t)
    mask = grammar.mask(states, tok.eot + 1)
    assert not mask[tok.eot] and not mask[tok.encode(".")[0]] and mask[tok.encode(" line")[0]]


def test_choose_keeps_the_grammar_sentence_unless_the_free_text_is_far_likelier():
    assert choose("start like do", -5.0, 5, "start line two", -9.5, 4).text == "start line two"
    small_talk = choose("What a lovely day it is!", -1.8, 8, "Yes.", -13.1, 3)
    assert small_talk.text == "What a lovely day it is!" and not small_talk.constrained
    assert choose("hmm", -1.0, 2, None, float("-inf"), 0).text == "hmm"


def test_a_bare_yes_or_no_stands_only_when_the_free_text_gives_it_too():
    # measured: "Good morning everyone!" forced to "Go ahead." (confirm) at 1.9 nats per token; with the speech
    # adapter "Turn it down a bit." to "Do it." and "Line up over there." to "Never mind.", well within 1 nat
    for heard, forced in (("Good morning everyone!", "Go ahead."), ("Turn it down a bit.", "Do it."),
                          ("Okay then.", "Go ahead."), ("Line up over there.", "Never mind."), ("Council", "Cancel.")):
        kept = choose(heard, -1.0, 6, forced, -0.9, 4)
        assert kept.text == heard and not kept.constrained
    assert choose("confirm confirm confirm", -3.0, 4, "Confirm.", -9.0, 3).text == "Confirm."  # says it too
    assert choose("Yes, go ahead.", -1.0, 5, "Go ahead.", -0.9, 4).text == "Go ahead."
    assert choose("No, cancel.", -1.0, 5, "Cancel.", -1.2, 3).text == "Cancel."
    # a search stands only where the free row heard parts described
    assert choose("Find my keys.", -1.0, 5, "Find the gears.", -1.2, 5).text == "Find my keys."
    assert choose("Line up over there.", -1.0, 5, "Find the copper gear.", -1.2, 5).text == "Line up over there."
    assert choose("Find bracket swiverers", -1.0, 6, "Find brackets with burrs.", -1.5, 6).text == (
        "Find brackets with burrs.")  # names a part
    assert choose("Find played with birds.", -1.0, 6, "Find plates with burrs.", -1.5, 6).text == (
        "Find plates with burrs.")  # spelled alike
    # a command that is no bare answer keeps the margin
    assert choose("start like to do", -4.0, 5, "start line two", -9.5, 4).text == "start line two"


def _speak(path: Path, text: str, voice: str = "en-us", speed: int = 160) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def listener():
    return make_listener(None, VOCAB)


@pytest.mark.parametrize("said, voice, speed, expected", [
    # free greedy decoding hears "This patch order 21 ...", "Council", "start like do" (benchmarks/voice.py)
    ("dispatch order twenty one with vehicle two", "en-us", 140, {"intent": "dispatch", "slots": {"order": 21, "vehicle": 2}}),
    ("cancel", "en-gb", 140, {"intent": "cancel", "slots": {}}),
    ("start line two", "en-gb", 185, {"intent": "start_line", "slots": {"line": "2"}}),
    ("find gears with cracks", "en-us", 185, {"intent": "query", "slots": {"subject": "gears with cracks"}}),
    ("what a lovely day it is", "en-us", 160, {"intent": "none", "slots": {}}),
    # the grammar reads "Go ahead." into it (confirm), 1.9 nats per token below the free text
    ("good morning everyone", "en-gb", 185, {"intent": "none", "slots": {}}),
])
def test_grammar_held_recognition_of_real_speech(tmp_path, listener, said, voice, speed, expected):
    text = listener.hear(load_audio(_speak(tmp_path / "said.wav", said, voice, speed)))
    assert parse_command(text, VOCAB).as_dict() == expected, text


def test_a_scenario_missing_its_recording_is_refused_in_one_line(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nevents:\n  - {type: voice, at_min: 5, audio: audio/nope.wav}\n")
    with pytest.raises(ShopfloorInputError, match=r"events\[0\]\.audio 'audio/nope.wav': no such file") as e:
        load_scenario(tmp_path / "s.yaml")
    assert "\n" not in str(e.value)


def test_spoken_commands_change_the_plant_as_said_and_the_report_lists_them():
    sc = load_scenario(ROOT / "scenarios" / "inspection_station.yaml",
                       {"duration_h": 3.4, "agents.inspection.clip": "off"})
    run, board = start_local_run(sc, sc.seed, None)
    while not run.done:
        run.step()
    kpis = run.kpis()
    log = operator_log(board.read(["event/voice", "command/*", "veto/voice", "answer/*"], 0))
    queries = board.read(["query/parts"], 0)
    board.close()
    spoken = [row for row in log if row.get("audio")]
    by_file = {Path(row["audio"]).stem: row for row in spoken}
    assert len(spoken) == 7
    assert by_file["raise_temperature"]["slots"] == {"target": "jacket_temperature", "value": 65.0, "unit": "C"}
    assert by_file["raise_temperature"]["applied"] == {"unit": "process", "settings": {"jacket_setpoint_c": 65.0}}
    assert by_file["too_hot"]["outcome"].startswith("refused: jacket_setpoint_c 150 C is outside the safe range")
    assert "applied" not in by_file["too_hot"]
    assert by_file["slow_down"]["applied"] == {"unit": "pacing", "settings": {"speed_factor": 0.8}}
    assert by_file["stop_line"]["outcome"].startswith("waiting: stopping line 1 needs 'confirm'")
    assert "applied" not in by_file["stop_line"]
    assert by_file["confirm"]["applied"] == {"unit": "pacing", "settings": {"release_per_h": 0.0}}
    assert by_file["start_line"]["applied"] == {"unit": "pacing", "settings": {"resume": True}}
    assert by_file["find_cracked_gears"]["intent"] == "query"
    assert [q.value["text"] for q in queries if q.key == by_file["find_cracked_gears"]["event"]] == [
        "gears with cracks"]
    assert kpis["commands_accepted"] == 4 and kpis["commands_rejected"] == 1
    # the plant did what was said, when it was said
    trace = {round(t["time_min"], 1): t for t in run.trace}
    assert trace[10.0]["jacket_setpoint_c"] == pytest.approx(sc.process.nominal_jacket_c)
    assert trace[30.0]["jacket_setpoint_c"] == pytest.approx(65.0)
    assert trace[70.0]["speeds"] == pytest.approx([0.8, 0.8])
    assert max(trace[m]["release_rate_per_h"] for m in np.arange(60.0, 90.0, 0.5)) > 0  # CONWIP releases
    stopped = np.arange(91.0, 120.5, 0.5)  # after the confirm (90.1 min) until the restart (120 min)
    assert all(trace[m]["release_rate_per_h"] == 0 for m in stopped)
    assert trace[110.0]["wip"] == 0  # no new parts: the line runs empty
    assert trace[125.0]["wip"] > 0 and trace[125.0]["speeds"] == pytest.approx([1.0, 1.0])  # the controller again
