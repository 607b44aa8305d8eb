"""The voice command gate: a parsed command becomes an operator command, a search, or a refusal with a reason.

Every command is checked against the scenario's safety limits (``planning.safety.SafetyLimits``, the same
envelope the SafetyAgent enforces) before it reaches the blackboard, so a spoken value outside them is
refused with the range that is allowed. Two kinds of command wait for the operator's ``confirm``:
stopping a line, and a setpoint jump larger than the scenario's threshold from the value in force. A
pending command lapses after ``confirm_window_s``; a ``cancel`` drops it; a new command replaces it.

========================  ==========================================================  ==================
intent                    becomes                                                     needs confirm
========================  ==========================================================  ==================
set_setpoint              process ``jacket_setpoint_c`` / ``pressure_setpoint_bar``,  jumps > threshold
                          pacing ``release_per_h``
change_speed              pacing ``speed_factor`` = percent / 100                     jumps > threshold
stop_line                 pacing ``release_per_h`` = 0 (no new parts enter)           always
start_line                pacing ``resume`` (the pacing controller is back in charge)  no
dispatch                  dispatch ``hold`` = false (the fleet dispatches again)      no
query, inspect            a search of the inspection history (``query/parts``)        no
========================  ==========================================================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planning.safety import SafetyLimits
from environments.scenario import Scenario
from perception.commands import ParsedCommand, Vocabulary

# target -> (unit, setting, unit of measure, SafetyLimits field)
_TARGETS = {"jacket_temperature": ("process", "jacket_setpoint_c", "C", "jacket_setpoint_c"),
            "pressure": ("process", "pressure_setpoint_bar", "bar", "pressure_setpoint_bar"),
            "release_rate": ("pacing", "release_per_h", "per_h", "release_per_h")}
DEFAULT_JUMPS = {"jacket_setpoint_c": 10.0, "pressure_setpoint_bar": 2.0, "release_per_h": 30.0, "speed_factor": 0.3}


@dataclass(frozen=True)
class GateOutcome:
    accepted: bool
    reason: str  # why refused, or what happened ("awaiting confirmation", "confirmed", ...)
    command: dict | None = None  # {"unit", "settings"} to post on command/<unit>
    query: str | None = None  # text to post on query/parts
    awaiting_confirmation: bool = False


@dataclass
class CommandGate:
    """Check parsed commands against limits and the plant's state; hold risky ones for confirmation.

    Parameters
    ----------
    limits : the scenario's safety envelope.
    confirm_window_s : how long a pending command waits for ``confirm``.
    jumps : per setting, the largest change from the value in force that needs no confirmation.
    """

    limits: SafetyLimits
    confirm_window_s: float = 15.0
    jumps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_JUMPS))
    pending: tuple[dict, float] | None = None  # (command, when it was asked, seconds)

    def submit(self, parsed: ParsedCommand, now_s: float, in_force: dict[str, float] | None = None) -> GateOutcome:
        """Decide on one parsed utterance at time ``now_s``; ``in_force`` holds the settings now applied."""
        in_force = in_force or {}
        intent, slots = parsed.intent, parsed.slots
        if intent == "confirm":
            return self._confirm(now_s)
        if intent == "cancel":
            if self.pending is None:
                return GateOutcome(False, "nothing to cancel")
            self.pending = None
            return GateOutcome(True, "cancelled the pending command")
        if intent == "none":
            return GateOutcome(False, parsed.reason or "not a command; allowed: e.g. 'set reactor temperature to "
                                                       "80 degrees', 'stop line 1', 'find cracked gears'")
        if intent == "query":
            return GateOutcome(True, "search", query=slots["subject"])
        if intent == "inspect":
            defect = slots.get("defect")
            return GateOutcome(True, "search", query=f"parts with a {defect.replace('_', ' ')}" if defect
                               else "defective parts")
        if intent == "dispatch":
            if slots:
                return GateOutcome(False, "the fleet's agents choose orders and vehicles; allowed: 'dispatch' "
                                          "(resume dispatching) without an order or vehicle")
            return GateOutcome(True, "dispatching resumes", {"unit": "dispatch", "settings": {"hold": False}})
        if intent == "start_line":
            return GateOutcome(True, f"line {slots['line']} restarts", {"unit": "pacing", "settings": {"resume": True}})
        if intent == "stop_line":
            return self._hold({"unit": "pacing", "settings": {"release_per_h": 0.0}}, now_s,
                              f"stopping line {slots['line']} needs 'confirm'")
        if intent == "change_speed":
            factor = slots["percent"] / 100.0
            lo, hi = self.limits.speed
            if not lo <= factor <= hi:
                return GateOutcome(False, f"speed {slots['percent']:g} % is outside the safe range; allowed: "
                                          f"{100 * lo:g}..{100 * hi:g} %")
            return self._maybe_hold("pacing", "speed_factor", factor, now_s, in_force, f"{slots['percent']:g} %")
        if intent == "set_setpoint":
            unit, setting, measure, limit = _TARGETS[slots["target"]]
            if slots["unit"] != measure:
                return GateOutcome(False, f"{slots['target'].replace('_', ' ')} is set in {measure}, not "
                                          f"{slots['unit']}; allowed unit: {measure}")
            lo, hi = getattr(self.limits, limit)
            value = float(slots["value"])
            if not lo <= value <= hi:
                return GateOutcome(False, f"{setting} {value:g} {measure} is outside the safe range; allowed: "
                                          f"{lo:g}..{hi:g} {measure}")
            return self._maybe_hold(unit, setting, value, now_s, in_force, f"{value:g} {measure}")
        raise AssertionError(f"unhandled intent {intent!r}")

    def _maybe_hold(self, unit: str, setting: str, value: float, now_s: float, in_force: dict[str, float],
                    said: str) -> GateOutcome:
        command = {"unit": unit, "settings": {setting: value}}
        current = in_force.get(setting)
        if current is not None and abs(value - current) > self.jumps.get(setting, float("inf")):
            return self._hold(command, now_s, f"{setting} from {current:g} to {said} is a jump above "
                                              f"{self.jumps[setting]:g}; it needs 'confirm'")
        self.pending = None
        return GateOutcome(True, "accepted", command)

    def _hold(self, command: dict, now_s: float, reason: str) -> GateOutcome:
        self.pending = (command, now_s)
        return GateOutcome(False, f"{reason} within {self.confirm_window_s:g} s", awaiting_confirmation=True)

    def _confirm(self, now_s: float) -> GateOutcome:
        if self.pending is None:
            return GateOutcome(False, "nothing to confirm")
        command, asked = self.pending
        self.pending = None
        if now_s - asked > self.confirm_window_s:
            return GateOutcome(False, f"the request lapsed: confirmed after {now_s - asked:.0f} s; allowed: "
                                      f"within {self.confirm_window_s:g} s")
        return GateOutcome(True, "confirmed", command)


def vocabulary_for(scenario: Scenario) -> Vocabulary:
    """The words of this plant: its one line ("1"), its station names and its vehicles."""
    return Vocabulary(lines=("1",), stations=tuple(st.name for st in scenario.line.stations),
                      n_vehicles=len(scenario.fleet.fleet))
