"""SafetyAgent: the last word before the plant. It arbitrates, clamps or vetoes, and posts the final actions.

Each tick, after the other agents have posted, it reads the controllers' ``proposal/<unit>``, the
operator's ``command/<unit>`` and the plant state, and for every unit posts ``action/<unit>``:

1. Arbitration (`agents.arbitration`): an operator command outranks a controller proposal. A command
   stands until the operator gives another for the same unit (``{"resume": true}`` hands the unit
   back to its controller); a fresh command that meets a proposal in
   the same tick is a conflict, posted to ``meta/conflict``.
2. A unit with no proposal this tick (its agent missed the deadline or is restarting) gets its safe
   default: the process holds its setpoints, the line keeps its last safe pacing, the fleet assigns
   nothing, and inspection rejects every part it has not judged (nothing unseen ships).
3. The safety checks (`planning.safety`) clamp or veto; reasons go to ``veto/<unit>``.
"""

from __future__ import annotations

import numpy as np

from agents.agent import decode_observation, latest
from agents.arbitration import Request, apply_operator_command, arbitrate
from agents.blackboard import Entry, Post
from environments.line_pacing import controls_to_pacing_action
from environments.process_control import setpoints_to_action
from environments.scenario import Scenario
from planning.safety import (
    SafetyLimits,
    check_dispatch,
    check_pacing,
    check_process,
    hold_process_action,
)


class SafetyAgent:
    def __init__(self, scenario: Scenario, max_parts: int, max_pending: int):
        self.name = "safety"
        self.subscribes = ("proposal/*", "command/*", "state/process", "state/pacing", "state/dispatch",
                           "perception/parts")
        self.scenario, self.limits = scenario, SafetyLimits.from_scenario(scenario)
        self.max_parts, self.max_pending = max_parts, max_pending
        self.standing: dict[str, dict] = {}  # unit -> the operator's settings in force
        line = scenario.line
        self.last_pacing = controls_to_pacing_action(0.0, [1.0] * line.n_stations, line)
        self._pacing_obs = None
        self._process_obs_now = self._process_obs_before = None  # the guard reads the reactor's trend
        self.n_vetoes = self.n_clamps = self.n_conflicts = self.n_defaults = 0

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        sc, posts = self.scenario, []
        fresh = {}
        for e in inbox:
            if e.topic.startswith("command/"):
                fresh[e.topic.split("/", 1)[1]] = e.value
        for unit, settings in fresh.items():
            if settings.get("resume"):  # the operator hands the unit back to its controller
                self.standing.pop(unit, None)
            else:
                self.standing[unit] = {**self.standing.get(unit, {}), **settings}  # "set pressure" keeps the temperature
        process_obs = latest(inbox, "state/process")
        if process_obs is not None:
            self._process_obs_before, self._process_obs_now = self._process_obs_now, process_obs
        self._pacing_obs = latest(inbox, "state/pacing")
        dispatch_state = latest(inbox, "state/dispatch")
        parts = latest(inbox, "perception/parts")
        finals = {}
        for unit in ("process", "pacing", "dispatch", "inspection"):
            proposal = latest(inbox, f"proposal/{unit}")
            if proposal is None:
                self.n_defaults += 1
                action = self._safe_default(unit, process_obs, parts)
                posts.append(Post(f"veto/{unit}", "default", {"reason": "no proposal this tick; safe default"}))
            else:
                action = np.asarray(proposal.value)
            if unit in self.standing:
                requests = [Request(unit, "operator", "operator", self.standing[unit])]
                if proposal is not None:
                    requests.append(Request(unit, "controller", proposal.author, action))
                winners, conflicts = arbitrate(requests)
                if conflicts and unit in fresh:
                    self.n_conflicts += 1
                    c = conflicts[0]
                    posts.append(Post("meta/conflict", unit, {"winner": c.winner, "losers": list(c.losers),
                                                              "rule": c.rule}))
                action = apply_operator_command(unit, self.standing[unit], action, sc.process, sc.line)
            finals[unit] = action
        for unit, action in finals.items():
            verdict = self._check(unit, action, process_obs, dispatch_state)
            if verdict is not None:
                action = verdict.action
                if verdict.reasons:
                    self.n_vetoes += verdict.vetoed
                    self.n_clamps += verdict.clamped and not verdict.vetoed
                    posts.append(Post(f"veto/{unit}", "safety", {"vetoed": verdict.vetoed, "clamped": verdict.clamped,
                                                                 "reasons": list(verdict.reasons)}))
            if unit == "pacing":
                self.last_pacing = np.asarray(action, dtype=np.float32)
            posts.append(Post(f"action/{unit}", "final", np.asarray(action).tolist()))
        return posts

    def _check(self, unit, action, process_obs, dispatch_state):
        sc = self.scenario
        if unit == "process":
            obs = decode_observation("process", process_obs.value) if process_obs else np.zeros(10, np.float32)
            before = self._process_obs_before
            previous = decode_observation("process", before.value) if process_obs and before else None
            return check_process(action, obs, self.limits, sc.process, previous)
        if unit == "pacing":
            obs = decode_observation("pacing", self._pacing_obs.value) if self._pacing_obs else None
            return check_pacing(action, self.limits, sc.line, obs)
        if unit == "dispatch":
            n_vehicles = len(sc.fleet.fleet)
            mask = np.asarray(dispatch_state.value["action_mask"], dtype=bool) if dispatch_state else \
                np.zeros(n_vehicles * (self.max_pending + 1), dtype=bool)
            return check_dispatch(action, mask, self.max_pending)
        return None  # inspection verdicts have no plant limits

    def _safe_default(self, unit, process_obs, parts) -> np.ndarray:
        if unit == "process":
            p = self.scenario.process
            if process_obs is None:
                return setpoints_to_action(p, p.nominal_jacket_c, p.nominal_pressure_bar)
            return hold_process_action(decode_observation("process", process_obs.value), p, self.limits)
        if unit == "pacing":
            return self.last_pacing.copy()
        if unit == "dispatch":
            return np.zeros(len(self.scenario.fleet.fleet), dtype=np.int64)
        n = len(parts.value["parts"]) if parts else 0
        return np.array([1] * n + [0] * (self.max_parts - n))

    def counters(self) -> dict[str, int]:
        return {"vetoes": self.n_vetoes, "clamps": self.n_clamps, "conflicts": self.n_conflicts,
                "safe_defaults": self.n_defaults}
