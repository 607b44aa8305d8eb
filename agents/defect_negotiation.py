"""Who answers a defect alarm: the pacing and process agents negotiate by contract net.

Two remedies can bring a rising defect rate down, and each costs something different:

* **lower speed** (the PacingAgent): bring every station back to nominal speed. That removes the speed
  hazard ``speed_defect_gain * sum(max(0, speed - 1))`` of every part and costs the parts per hour the
  faster stations were making.
* **setpoint correction** (the ProcessAgent): raise the reactor's pressure setpoint by
  ``PRESSURE_STEP_BAR`` (the wanted reaction speeds up, so purity rises). That removes at most the
  feed-purity hazard ``purity_defect_gain * max(0, purity_reference - purity)`` (less in proportion
  when the pressure has less room than a full step below its limit) and costs the compressor's extra
  energy.

Each agent bids what the plant would lose per hour (reward units) with its remedy in force: the
remedy's own cost, plus the defects it leaves, valued at what a defective part costs (its lost margin
and the scrap cost) at the bottleneck's rate, for the part of the alarm's excess hazard (the reject
rate above normal) it does not remove. So a cheap remedy that barely helps does not beat a dearer one
that fixes the problem. A remedy that would remove nothing does not bid. Over the blackboard (topics as in
`agents.negotiation`, task ids ``defect-<tick>``):

* tick t: the InspectionAgent posts ``alarm/defect_rate`` ``{"active": true}``;
* t+1: the PacingAgent, which manages the tender, announces ``cfp/defect-<t+1>`` and bids;
* t+2: the ProcessAgent bids;
* t+3: the PacingAgent awards (`negotiation.choose_winner`: lowest cost, ties to the smaller name) and
  posts ``award/defect-<t+1>``, with every bid, or ``winner: null`` when nobody can help;
* the winner applies its remedy from the tick it reads the award until the alarm clears, then posts
  ``done/defect-<t+1>`` with how long the remedy ran.

`negotiation_log` turns those entries into the report's table.
"""

from __future__ import annotations

import math

import numpy as np

from agents.blackboard import Entry, Post
from agents.negotiation import Bid, choose_winner
from environments.line_pacing import (
    LineConfig,
    controls_to_pacing_action,
    pacing_action_to_controls,
)
from environments.process_control import (
    OBS_CENTER,
    OBS_SCALE,
    R_J_PER_MOL_K,
    ReactorConfig,
    action_to_setpoints,
    setpoints_to_action,
)

TASK_PREFIX = "defect-"
PRESSURE_STEP_BAR = 1.5
_PRESSURE, _PURITY, _FEED_CONC = 2, 3, 5  # ProcessControl observation indices


def _measured(obs, index: int) -> float:
    return float(obs[index]) * OBS_SCALE[index] + OBS_CENTER[index]


def excess_hazard(alarm: dict) -> float:
    """The defect hazard behind an alarm's reject rate, above the normal rate's (p = 1 - exp(-hazard))."""
    reject, normal = float(alarm.get("reject_rate", 0.0)), float(alarm.get("normal_rate", 0.0))
    return max(0.0, math.log((1.0 - min(normal, 0.999)) / (1.0 - min(reject, 0.999))))


def _priced(line: LineConfig, bid: dict, excess: float) -> dict:
    """Add the bid's ``cost``: the remedy's cost per hour plus the value of the excess hazard it leaves."""
    per_hazard = line.bottleneck_rate_per_h * (line.part_margin + line.scrap_cost)
    left = max(0.0, excess - bid["hazard_removed"])
    return {"cost": bid["cost_per_h"] + left * per_hazard, **bid, "excess_hazard": excess}


def pacing_bid(observation, line: LineConfig, excess: float) -> dict | None:
    """The PacingAgent's bid: stations back to nominal speed. None when no station runs above nominal."""
    n, span = line.n_stations, line.speed_max - line.speed_min
    speeds = [line.speed_min + span * float(x) for x in np.asarray(observation)[3 * n:4 * n]]
    hazard = line.speed_defect_gain * sum(max(0.0, s - 1.0) for s in speeds)
    if hazard <= 1e-6:
        return None
    # The line makes parts at the pace of its slowest station; capping speeds at 1 moves that pace.
    rates = [60.0 / st.mean_process_min for st in line.stations]
    pace_now = min(r * s for r, s in zip(rates, speeds))
    pace_capped = min(r * min(s, 1.0) for r, s in zip(rates, speeds))
    value_lost = (pace_now - pace_capped) * line.part_margin
    return _priced(line, {"hazard_removed": hazard, "cost_per_h": value_lost,
                          "remedy": "stations back to nominal speed"}, excess)


def compression_kw(config: ReactorConfig, pressure_bar: float, feed_conc: float) -> float:
    """Compressor power at a pressure (the simulator's isothermal model: purge plus the gas that reacts,
    taking all of A as converted)."""
    ratio = pressure_bar / config.gas_supply_bar
    if ratio <= 1.0:
        return 0.0
    gas_mol_per_min = config.purge_mol_per_min_bar * pressure_bar + config.feed_flow_l_per_min * feed_conc
    kwh_per_mol = R_J_PER_MOL_K * 298.15 / 1000.0 / 3600.0 / config.compressor_efficiency * math.log(ratio)
    return gas_mol_per_min * kwh_per_mol * 60.0


def process_bid(observation, process: ReactorConfig, line: LineConfig, pressure_max_bar: float,
                excess: float) -> dict | None:
    """The ProcessAgent's bid: pressure up by ``PRESSURE_STEP_BAR``. None when the purity is at its
    reference already (no hazard to remove) or the pressure has no room below its limit."""
    purity, pressure = _measured(observation, _PURITY), _measured(observation, _PRESSURE)
    target = min(pressure + PRESSURE_STEP_BAR, pressure_max_bar)
    # at most the whole purity hazard, and only the share of the step the pressure has room for
    room = (target - pressure) / PRESSURE_STEP_BAR
    hazard = line.purity_defect_gain * max(0.0, line.purity_reference - purity) * room
    if hazard <= 1e-6 or target <= pressure + 0.05:
        return None
    feed = _measured(observation, _FEED_CONC)
    extra_kw = compression_kw(process, target, feed) - compression_kw(process, pressure, feed)
    cost_per_h = extra_kw * process.energy_price_per_kwh
    return _priced(line, {"hazard_removed": hazard, "cost_per_h": cost_per_h,
                          "remedy": f"pressure setpoint +{target - pressure:.1f} bar"}, excess)


class DefectNegotiation:
    """One unit's side of the negotiation (see the module docstring); the pacing side manages it.

    Parameters
    ----------
    unit : "pacing" or "process".
    bid : (observation, excess hazard) -> bid dict (with ``cost``) or None.
    remedy : (action, observation) -> the action with the remedy applied.
    """

    subscribes = ("alarm/defect_rate", "cfp/*", "bid/*", "award/*")

    def __init__(self, unit: str, bid, remedy):
        self.unit, self._bid, self._remedy = unit, bid, remedy
        self.manager = unit == "pacing"
        self.alarm, self.alarm_value = False, {}
        self.open_task: tuple[str, int] | None = None  # (task id, deadline tick): announced, not yet awarded
        self.bids: dict[str, Bid] = {}
        self.remedy_task: tuple[str, int] | None = None  # (task id, tick applied from) while this unit remedies

    @property
    def remedy_active(self) -> bool:
        return self.remedy_task is not None

    def step(self, tick: int, inbox: list[Entry], observation) -> list[Post]:
        posts: list[Post] = []
        rising = False
        for e in inbox:
            if e.topic == "alarm/defect_rate":
                rising = rising or (bool(e.value.get("active")) and not self.alarm)
                self.alarm, self.alarm_value = bool(e.value.get("active")), dict(e.value)
            elif e.topic.startswith(f"cfp/{TASK_PREFIX}") and not self.manager and self.alarm:
                task = e.topic.split("/", 1)[1]
                posts += self._bid_post(tick, task, observation, e.value["payload"]["excess_hazard"])
            elif e.topic.startswith(f"bid/{TASK_PREFIX}") and self.manager:
                _, task, agent = e.topic.split("/")
                if agent == e.author and self.open_task and task == self.open_task[0]:
                    self.bids[agent] = Bid(task, agent, e.value["cost"], e.value)
            elif e.topic.startswith(f"award/{TASK_PREFIX}") and e.value.get("winner") == self.unit:
                if self.alarm and self.remedy_task is None:
                    self.remedy_task = (e.topic.split("/", 1)[1], tick)
        if self.manager:
            if rising and self.open_task is None and self.remedy_task is None:
                task = f"{TASK_PREFIX}{tick}"
                self.open_task, self.bids = (task, tick + 1), {}
                excess = excess_hazard(self.alarm_value)
                payload = {"reject_rate": self.alarm_value.get("reject_rate"),
                           "normal_rate": self.alarm_value.get("normal_rate"), "excess_hazard": excess}
                posts.append(Post(f"cfp/{task}", "cfp", {"task_id": task, "kind": "defect_remedy",
                                                         "payload": payload, "deadline_tick": tick + 1}))
                posts += self._bid_post(tick, task, observation, excess)
            if self.open_task is not None and tick > self.open_task[1]:
                task = self.open_task[0]
                winner = choose_winner(list(self.bids.values()))
                posts.append(Post(f"award/{task}", "award", {
                    "task_id": task, "winner": winner.agent if winner else None,
                    "cost": winner.cost if winner else None, "n_bids": len(self.bids),
                    "bids": {a: b.payload for a, b in sorted(self.bids.items())},
                    "alarm_active": self.alarm}))
                if winner is not None and winner.agent == self.unit and self.alarm:
                    self.remedy_task = (task, tick)
                self.open_task = None
        if self.remedy_task is not None and not self.alarm:
            task, since = self.remedy_task
            posts.append(Post(f"done/{task}", "done", {"agent": self.unit, "result": {
                "remedy_ticks": tick - since, "applied_from_tick": since, "alarm_cleared_tick": tick}}))
            self.remedy_task = None
        return posts

    def _bid_post(self, tick: int, task: str, observation, excess: float) -> list[Post]:
        bid = self._bid(observation, excess)
        if bid is None:
            return []
        if self.manager:
            self.bids[self.unit] = Bid(task, self.unit, bid["cost"], bid)
        return [Post(f"bid/{task}/{self.unit}", "bid", bid)]

    def apply(self, action, observation) -> np.ndarray:
        return self._remedy(action, observation) if self.remedy_active else np.asarray(action)


def pacing_negotiation(line: LineConfig) -> DefectNegotiation:
    def remedy(action, observation):
        rate, speeds = pacing_action_to_controls(action, line)
        return controls_to_pacing_action(rate, [min(s, 1.0) for s in speeds], line)

    return DefectNegotiation("pacing", lambda obs, excess: pacing_bid(obs, line, excess), remedy)


def process_negotiation(process: ReactorConfig, line: LineConfig, pressure_max_bar: float) -> DefectNegotiation:
    def remedy(action, observation):
        # an offset on the controller's own pressure, so the correction does not ratchet up tick by tick
        jacket, pressure = action_to_setpoints(process, action)
        return setpoints_to_action(process, jacket, max(pressure, min(pressure + PRESSURE_STEP_BAR, pressure_max_bar)))

    return DefectNegotiation("process", lambda obs, excess: process_bid(obs, process, line, pressure_max_bar, excess),
                             remedy)


def negotiation_log(entries: list[Entry]) -> list[dict]:
    """Each defect-remedy tender with its bids, award and outcome, in order (for the run report)."""
    rows: dict[str, dict] = {}
    for e in entries:
        top, _, rest = e.topic.partition("/")
        task = rest.split("/")[0]
        if not task.startswith(TASK_PREFIX):
            continue
        if top == "cfp":
            rows[task] = {"task": task, "tick": e.tick, "alarm": e.value["payload"], "bids": {}, "winner": None,
                          "awarded_tick": None, "outcome": "no award yet"}
        elif task in rows and top == "bid":
            rows[task]["bids"][rest.split("/")[1]] = e.value
        elif task in rows and top == "award":
            rows[task].update(winner=e.value["winner"], awarded_tick=e.tick,
                              outcome="applied until the alarm clears" if e.value["winner"] else
                              "no bid: neither remedy would remove a hazard")
            if e.value["winner"] and not e.value.get("alarm_active", True):
                rows[task]["outcome"] = "alarm cleared before the award; nothing applied"
        elif task in rows and top == "done":
            r = e.value["result"]
            rows[task]["outcome"] = (f"{e.value['agent']} remedied for {r['remedy_ticks']} ticks; alarm cleared at "
                                     f"tick {r['alarm_cleared_tick']}")
    return list(rows.values())
