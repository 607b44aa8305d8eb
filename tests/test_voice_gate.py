"""The voice command gate: limits, confirmation windows, and the property that nothing outside the limits passes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from planning.safety import SafetyLimits
from agents.voice_commands import CommandGate
from environments.scenario import load_scenario
from perception.commands import ParsedCommand, Vocabulary, parse_command

LIMITS = SafetyLimits.from_scenario(load_scenario("scenarios/smart_factory.yaml"))
VOCAB = Vocabulary(lines=("1",), stations=("welding",), n_vehicles=3)


def _said(gate, text, t, in_force=None):
    return gate.submit(parse_command(text, VOCAB), t, in_force)


def test_out_of_range_values_are_refused_with_the_allowed_range():
    gate = CommandGate(LIMITS)
    out = _said(gate, "set reactor temperature to one hundred eighty degrees", 0)
    assert not out.accepted and "outside the safe range" in out.reason and "20..130 C" in out.reason
    out = _said(gate, "set line one speed to two hundred percent", 0)
    assert not out.accepted and "60..140 %" in out.reason
    out = _said(gate, "set pressure to eleven bar", 0)
    assert out.accepted and out.command == {"unit": "process", "settings": {"pressure_setpoint_bar": 11.0}}


def test_stop_needs_confirm_within_the_window_and_lapses_after_it():
    gate = CommandGate(LIMITS, confirm_window_s=10)
    held = _said(gate, "stop line one", 100)
    assert not held.accepted and held.awaiting_confirmation and held.command is None
    done = _said(gate, "confirm", 105)
    assert done.accepted and done.command == {"unit": "pacing", "settings": {"release_per_h": 0.0}}
    assert not _said(gate, "confirm", 106).accepted  # nothing left to confirm
    _said(gate, "stop line one", 200)
    late = _said(gate, "yes, do it", 211)
    assert not late.accepted and "lapsed" in late.reason
    _said(gate, "stop line one", 300)
    assert _said(gate, "cancel", 301).accepted and not _said(gate, "confirm", 302).accepted
    assert _said(gate, "restart line one", 303).command == {"unit": "pacing", "settings": {"resume": True}}


def test_a_large_setpoint_jump_needs_confirm_a_small_one_does_not():
    gate = CommandGate(LIMITS)
    small = _said(gate, "set reactor temperature to eighty five degrees", 0, {"jacket_setpoint_c": 80.0})
    assert small.accepted and small.command["settings"] == {"jacket_setpoint_c": 85.0}
    big = _said(gate, "set reactor temperature to one hundred twenty degrees", 1, {"jacket_setpoint_c": 80.0})
    assert big.awaiting_confirmation and "needs 'confirm'" in big.reason
    assert _said(gate, "confirm", 3).command["settings"] == {"jacket_setpoint_c": 120.0}


def test_searches_and_refusals():
    gate = CommandGate(LIMITS)
    assert _said(gate, "find gears with a crack", 0).query == "gears with cracks"
    assert _said(gate, "inspect welding for dents", 0).query == "parts with a dent"
    assert not _said(gate, "dispatch order four with vehicle two", 0).accepted
    assert _said(gate, "dispatch", 0).command == {"unit": "dispatch", "settings": {"hold": False}}
    nothing = _said(gate, "lovely weather today", 0)
    assert not nothing.accepted and "not a command" in nothing.reason


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["jacket_temperature", "pressure", "release_rate", "speed", "confirm"]),
                          st.floats(-1e4, 1e4, allow_nan=False), st.floats(0, 60)), max_size=8))
def test_property_no_accepted_command_is_outside_the_limits(script):
    gate, now = CommandGate(LIMITS, confirm_window_s=15), 0.0
    bounds = {"jacket_setpoint_c": LIMITS.jacket_setpoint_c, "pressure_setpoint_bar": LIMITS.pressure_setpoint_bar,
              "release_per_h": LIMITS.release_per_h, "speed_factor": LIMITS.speed}
    units = {"jacket_temperature": "C", "pressure": "bar", "release_rate": "per_h"}
    for kind, value, dt in script:
        now += dt
        if kind == "confirm":
            parsed = ParsedCommand("confirm")
        elif kind == "speed":
            parsed = ParsedCommand("change_speed", {"line": "1", "percent": value})
        else:
            parsed = ParsedCommand("set_setpoint", {"target": kind, "value": value, "unit": units[kind]})
        out = gate.submit(parsed, now, {"jacket_setpoint_c": 80.0})
        if out.accepted and out.command:
            for setting, v in out.command["settings"].items():
                lo, hi = bounds[setting]
                assert lo <= v <= hi, (setting, v)
