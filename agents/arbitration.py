"""Arbitration: who gets an actuator when several agents ask for it in one tick (design notes §5).

Order: safety > operator command > controller proposal. Two requests for one actuator in one tick are a
conflict; the higher kind wins, ties within a kind go to the author that sorts first (deterministic), and
every conflict is reported so the orchestrator can log and count it.

An operator command may name only some of an actuator's settings (``{"release_per_h": 0}`` stops
releases); it then overrides those settings of the controller's proposal and keeps the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from environments.line_pacing import LineConfig, controls_to_pacing_action, pacing_action_to_controls
from environments.process_control import ReactorConfig, action_to_setpoints, setpoints_to_action
from environments.errors import ShopfloorInputError

PRIORITY = {"safety": 3, "operator": 2, "controller": 1}
ACTUATORS = ("process", "pacing", "dispatch", "inspection")
# The settings an operator may name, per actuator, in engineering units.
OPERATOR_SETTINGS = {
    "process": ("jacket_setpoint_c", "pressure_setpoint_bar"),
    "pacing": ("release_per_h", "speed_factor", "resume"),  # resume: drop the standing command
    "dispatch": ("hold",),
}


@dataclass(frozen=True)
class Request:
    """One agent's wish for one actuator this tick. ``action`` is the unit's action (controller, safety)
    or a dict of engineering settings (operator)."""

    actuator: str
    kind: str  # "safety", "operator" or "controller"
    author: str
    action: object


@dataclass(frozen=True)
class Conflict:
    actuator: str
    winner: str
    losers: tuple[str, ...]
    rule: str


def arbitrate(requests: list[Request]) -> tuple[dict[str, Request], list[Conflict]]:
    """The winning request per actuator, and the conflicts that were resolved."""
    by_actuator: dict[str, list[Request]] = {}
    for r in requests:
        assert r.kind in PRIORITY, f"unknown request kind {r.kind!r}"
        by_actuator.setdefault(r.actuator, []).append(r)
    winners, conflicts = {}, []
    for actuator, rs in sorted(by_actuator.items()):
        ranked = sorted(rs, key=lambda r: (-PRIORITY[r.kind], r.author))
        winners[actuator] = ranked[0]
        if len(ranked) > 1:
            top = ranked[0]
            same = [r for r in ranked[1:] if r.kind == top.kind]
            rule = f"tie among {top.kind} requests: first author wins" if same else f"{top.kind} outranks " + \
                ", ".join(sorted({r.kind for r in ranked[1:]}))
            conflicts.append(Conflict(actuator, top.author, tuple(r.author for r in ranked[1:]), rule))
    return winners, conflicts


def validate_operator_command(actuator: str, settings: dict) -> dict:
    """Check an operator command's settings; raise ShopfloorInputError naming what is allowed."""
    allowed = OPERATOR_SETTINGS.get(actuator)
    if allowed is None:
        raise ShopfloorInputError(f"operator command for {actuator!r}: no such actuator; allowed: "
                                  f"{', '.join(OPERATOR_SETTINGS)}")
    if not isinstance(settings, dict) or not settings:
        raise ShopfloorInputError(f"operator command for {actuator}: give a mapping of settings; allowed: "
                                  f"{', '.join(allowed)}")
    for key, value in settings.items():
        if key not in allowed:
            raise ShopfloorInputError(f"operator command for {actuator}: unknown setting {key!r}; allowed: "
                                      f"{', '.join(allowed)}")
        if key in ("hold", "resume"):
            if not isinstance(value, bool):
                raise ShopfloorInputError(f"operator command for {actuator}: {key} = {value!r}; allowed: true or "
                                          "false")
            if key == "resume" and len(settings) > 1:
                raise ShopfloorInputError(f"operator command for {actuator}: resume stands alone; allowed: "
                                          "{resume: true} or other settings")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise ShopfloorInputError(f"operator command for {actuator}: {key} = {value!r}; allowed: a number")
    return settings


def apply_operator_command(actuator: str, settings: dict, proposal, process: ReactorConfig,
                           line: LineConfig) -> np.ndarray:
    """The unit action an operator command asks for, on top of the controller's proposal."""
    if actuator == "process":
        jacket, pressure = action_to_setpoints(process, proposal)
        return setpoints_to_action(process, float(settings.get("jacket_setpoint_c", jacket)),
                                   float(settings.get("pressure_setpoint_bar", pressure)))
    if actuator == "pacing":
        rate, speeds = pacing_action_to_controls(proposal, line)
        rate = float(settings.get("release_per_h", rate))
        if "speed_factor" in settings:
            speeds = [float(settings["speed_factor"])] * line.n_stations
        return controls_to_pacing_action(rate, speeds, line)
    if actuator == "dispatch":
        proposal = np.asarray(proposal)
        return np.zeros_like(proposal) if settings.get("hold") else proposal
    raise AssertionError(f"no operator settings for {actuator}")
