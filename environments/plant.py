"""The whole plant: process unit, line, inspection station and fleet on one clock, as a PettingZoo ParallelEnv.

## Agents
| agent        | observation                                   | action                                        |
|--------------|-----------------------------------------------|-----------------------------------------------|
| `process`    | the ProcessControl observation                | the ProcessControl action (normalised setpoints) |
| `pacing`     | the LinePacing observation                    | the LinePacing action (release rate, speeds)  |
| `dispatch`   | the Dispatch observation                      | the Dispatch action (order slot per vehicle)  |
| `inspection` | ``{"images": uint8 (K, S, S, 3), "n_parts": Discrete(K + 1)}`` | ``MultiBinary(K)``: 1 = reject  |

Each single-unit agent sees and acts exactly as in its own Gymnasium environment, so a policy trained on
``shopfloor/ProcessControl-v0`` runs here unchanged.

## One tick
1. The inspection verdicts apply to the parts shown in the last observation (first ``n_parts`` entries).
2. The process unit moves to its setpoints and produces; its purity becomes the line's feed purity
   (poor purity raises the defect hazard of every part released).
3. The line runs one tick; parts leaving it queue at the inspection station, which renders an image of
   each (procedural renderer, true defect label in ``infos["inspection"]["true_defects"]``).
4. Good parts shipped become delivery orders: every ``coupling.parts_per_order`` parts make one order to a
   random customer node, with a window ``coupling.order_window_min`` after now.
5. Scripted events due this tick (breakdowns, rush orders, catalyst upsets) happen; the fleet runs one tick.

## Rewards
Each agent gets its own environment's reward; ``inspection`` gets +1 per correct verdict, -1 per false
alarm and -10 per escaped defect.

## End
All agents are truncated after ``scenario.duration_h``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from environments.dispatch import DispatchEnv, FleetSim
from environments.errors import ShopfloorInputError
from environments.line_pacing import LinePacingEnv, LineSim, line_observation, line_reward, pacing_action_to_controls
from environments.parts import render_part, sample_spec, shifted
from environments.process_control import ProcessControlEnv, ReactorSim
from environments.scenario import BreakdownEvent, CatalystUpsetEvent, RushOrderEvent, Scenario

AGENTS = ("process", "pacing", "dispatch", "inspection")
ESCAPE_PENALTY, FALSE_ALARM_PENALTY = 10.0, 1.0


class ShopfloorPlant(ParallelEnv):
    """The plant of a scenario. See the module docstring for the spec."""

    metadata = {"name": "shopfloor_plant_v0", "render_modes": []}

    def __init__(self, scenario: Scenario | None = None):
        self.scenario = scenario or Scenario(name="default")
        sc = self.scenario
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.dt_s = sc.tick_s
        line_cfg = sc.line
        # The inspection station looks at up to K parts a tick: twice the fastest the line can ship, plus one.
        self.max_parts_per_tick = max(2, math.ceil(2 * line_cfg.bottleneck_rate_per_h * line_cfg.speed_max
                                                   * sc.tick_s / 3600.0) + 1)
        self._station_index = {s.name: i for i, s in enumerate(line_cfg.stations)}
        self._shift = shifted("all", sc.inspection.image_shift)
        k, size = self.max_parts_per_tick, sc.inspection.image_size
        singles = {
            "process": ProcessControlEnv(sc.process, self.dt_s),
            "pacing": LinePacingEnv(sc.line, self.dt_s),
            "dispatch": DispatchEnv(sc.fleet, self.dt_s),
        }
        self._observation_spaces = {a: e.observation_space for a, e in singles.items()}
        self._action_spaces = {a: e.action_space for a, e in singles.items()}
        self._observation_spaces["inspection"] = spaces.Dict({
            "images": spaces.Box(0, 255, shape=(k, size, size, 3), dtype=np.uint8),
            "n_parts": spaces.Discrete(k + 1),
        })
        self._action_spaces["inspection"] = spaces.MultiBinary(k)

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_spaces[agent]

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> spaces.Space:
        return self._action_spaces[agent]

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        sc = self.scenario
        self.seed_used = sc.seed if seed is None else int(seed)
        reactor_ss, line_ss, fleet_ss, plant_ss = np.random.SeedSequence(self.seed_used).spawn(4)
        self.reactor = ReactorSim(sc.process, np.random.default_rng(reactor_ss), self.dt_s)
        self.line = LineSim(sc.line, np.random.default_rng(line_ss), self.dt_s, external_inspection=True)
        # The plant makes its own orders from finished goods: the fleet's random arrivals are off.
        self.fleet = FleetSim(sc.fleet, np.random.default_rng(fleet_ss), self.dt_s, generate_orders=False)
        self.rng = np.random.default_rng(plant_ss)
        self._image_seed_base = int(self.rng.integers(2**31))
        self.line.purity = self.reactor.last_purity
        self.agents = list(self.possible_agents)
        self.tick = 0
        self._parts_towards_order = 0
        self._images: dict[int, np.ndarray] = {}
        self._n_rendered = 0
        self._events = sorted(sc.events, key=lambda e: e.at_min)
        self._catalyst_back_at: float | None = None
        self._next_event = 0
        self.inspection_correct = self.orders_created = 0
        self._good0 = self._scrap0 = 0
        observations = self._observations()
        self.last_observations = observations
        return observations, {a: {} for a in self.agents}

    def step(self, actions: dict):
        sc = self.scenario
        # 1. inspection verdicts on the parts shown last tick
        shown = self.line.awaiting_inspection[: self.max_parts_per_tick]
        reject = np.asarray(actions.get("inspection", np.zeros(self.max_parts_per_tick)), dtype=bool)
        verdicts = [bool(reject[i]) for i in range(len(shown))]
        true_defects = [part[3] for part in shown]
        inspection_reward = 0.0
        for part, rejected in zip(shown, verdicts):
            defective = part[3] != 0
            if rejected == defective:
                inspection_reward += 1.0
                self.inspection_correct += 1
            elif defective:
                inspection_reward -= ESCAPE_PENALTY
            else:
                inspection_reward -= FALSE_ALARM_PENALTY
            self._images.pop(part[0], None)
        good0, scrap0 = self.line.shipped_good, self.line.scrapped
        self.line.resolve_inspection(verdicts)

        # 2. process unit
        self.reactor.step(*self.reactor.action_to_setpoints(actions["process"]))
        self.line.purity = self.reactor.last_purity

        # 3. events due now, then the line
        now_min = self.tick * self.dt_s / 60.0
        while self._next_event < len(self._events) and self._events[self._next_event].at_min <= now_min:
            self._apply_event(self._events[self._next_event])
            self._next_event += 1
        if self._catalyst_back_at is not None and now_min >= self._catalyst_back_at:
            self.reactor.set_catalyst(1.0)  # regenerated
            self._catalyst_back_at = None
        rate, speeds = pacing_action_to_controls(actions["pacing"], sc.line)
        self.line.step(rate, speeds)
        good = self.line.shipped_good - good0
        scrapped = self.line.scrapped - scrap0

        # 4. finished goods become orders
        self._parts_towards_order += good
        lo, hi = sc.coupling.order_window_min
        while self._parts_towards_order >= sc.coupling.parts_per_order:
            self._parts_towards_order -= sc.coupling.parts_per_order
            node = self.fleet.random_customer_node(self.rng)
            self.fleet.add_order(node, sc.coupling.parts_per_order, self.fleet.now_min + lo, self.fleet.now_min + hi)
            self.orders_created += 1

        # 5. fleet
        self.fleet.step(actions["dispatch"])

        self.tick += 1
        rewards = {
            "process": float(self.reactor.last_reward),
            "pacing": line_reward(sc.line, good, scrapped, self.line.wip, self.dt_s, self.line.last_energy_kwh),
            "dispatch": float(self.fleet.last_reward),
            "inspection": inspection_reward,
        }
        done = self.tick >= sc.n_ticks
        observations = self._observations(good, scrapped)
        self.last_observations = observations
        terminations = {a: False for a in self.agents}
        truncations = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        infos["inspection"] = {"true_defects": true_defects, "verdicts": verdicts,
                               "next_true_defects": [p[3] for p in
                                                     self.line.awaiting_inspection[: self.max_parts_per_tick]]}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _apply_event(self, event) -> None:
        if isinstance(event, BreakdownEvent):
            self.line.force_breakdown(self._station_index[event.station], event.duration_min)
        elif isinstance(event, RushOrderEvent):
            node = self.fleet.random_customer_node(self.rng)
            self.fleet.add_order(node, event.demand_units, self.fleet.now_min, self.fleet.now_min + event.window_min)
            self.orders_created += 1
        elif isinstance(event, CatalystUpsetEvent):
            self.reactor.set_catalyst(event.activity)
            self._catalyst_back_at = event.at_min + event.duration_min
        # voice events are the agents' business (cluster/), not the plant's

    # ------------------------------------------------------------- read-outs
    def _observations(self, good: int = 0, rejected: int = 0) -> dict:
        elapsed = self.tick / max(self.scenario.n_ticks, 1)
        return {
            "process": self.reactor.observation(),
            "pacing": line_observation(self.line, good, rejected, elapsed),
            "dispatch": self.fleet.observation(),
            "inspection": self._inspection_observation(),
        }

    def _inspection_observation(self) -> dict:
        k, size = self.max_parts_per_tick, self.scenario.inspection.image_size
        images = np.zeros((k, size, size, 3), dtype=np.uint8)
        shown = self.line.awaiting_inspection[:k]
        for slot, part in enumerate(shown):
            if part[0] not in self._images:
                self._images[part[0]] = self.render_inspected_part(part)
            images[slot] = self._images[part[0]]
        return {"images": images, "n_parts": len(shown)}

    def render_inspected_part(self, part: list) -> np.ndarray:
        """Render the image the inspection camera takes of a part leaving the line (true label kept)."""
        seed = (self._image_seed_base + 7919 * self._n_rendered) % 2**31
        self._n_rendered += 1
        rng = np.random.default_rng(seed)
        part_types = self.scenario.inspection.part_types
        spec = sample_spec(rng, defect=int(part[3]), part_type=part_types[rng.integers(len(part_types))])
        return render_part(spec, seed=seed, size=self.scenario.inspection.image_size, shift=self._shift).image

    def kpis(self) -> dict[str, float]:
        """Plant KPIs (design notes §3): the line's, the process unit's and the fleet's, on one clock."""
        line, reactor, fleet = self.line.kpis(), self.reactor.kpis(), self.fleet.kpis()
        good = self.line.shipped_good
        energy = reactor["energy_total_kwh"] + line["line_energy_kwh"]
        out = dict(line)
        out.update({
            "purity_mean": reactor["purity_mean"],
            "energy_per_unit_kwh": energy / good if good else 0.0,
            "constraint_violations": float(reactor["constraint_violations"]),
            "distance_km": fleet["distance_km"],
            "on_time_rate": fleet["on_time_rate"],
            "vehicle_utilization": fleet["vehicle_utilization"],
            "orders_created": float(self.orders_created),
            "orders_delivered": float(fleet["orders_delivered"]),
            "process_energy_kwh": reactor["energy_total_kwh"],
        })
        return out

    def trace(self) -> dict[str, float | list]:
        """This tick's plant state for plots and the event log (plain JSON values)."""
        r, line = self.reactor, self.line
        return {
            "time_min": self.tick * self.dt_s / 60.0,
            "buffer_levels": line.buffer_levels(),
            "stations_down": [int(d) for d in line.stations_down()],
            "wip": line.wip,
            "release_rate_per_h": line.release_rate_per_h,
            "speeds": list(line.speed),
            "reactor_temp_c": r.temp_c,
            "jacket_setpoint_c": r.jacket_setpoint_c,
            "pressure_bar": r.pressure_bar,
            "pressure_setpoint_bar": r.pressure_setpoint_bar,
            "purity": r.last_purity,
            "violation": int(r.violation),
            "shipped_good": line.shipped_good,
            "orders_pending": len(self.fleet.pending),
        }

    def close(self) -> None:
        pass


def reject_flags(observation: dict, p_defect, max_parts: int, reject_threshold: float) -> np.ndarray:
    """The ``inspection`` action of an inspector: reject (1) each shown part whose p(defect) reaches the
    threshold; ``p_defect`` maps images (n, S, S, 3) to probabilities (n,). Slots past ``n_parts`` stay 0."""
    action = np.zeros(max_parts, dtype=np.int8)
    n = int(observation["n_parts"])
    if n:
        action[:n] = p_defect(observation["images"][:n]) >= reject_threshold
    return action


# Setting the reject threshold, here beside `reject_flags` because every inspector shares it: the learned
# ones (perception/) and the classical baseline (planning/baselines/inspection.py).
def threshold_for_false_alarm(p_good_parts: np.ndarray, false_alarm_target: float) -> float:
    """The lowest reject threshold whose false-alarm rate on these good parts is at most the target."""
    if len(p_good_parts) == 0:
        return 0.5
    s = np.sort(p_good_parts)[::-1]
    k = int(np.floor(false_alarm_target * len(s)))  # at most k good parts may be rejected
    # reject iff p >= threshold: put the threshold just above the (k+1)-th highest good score
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else 0.0


def station_threshold(p_good_parts: np.ndarray, false_alarm_target: float) -> float:
    """A station's reject threshold from the p(defect) of known-good parts seen there, as a station is
    commissioned: the lowest threshold that rejects at most ``false_alarm_target`` of them. A threshold
    stored at training was set under the training light; a station's own light moves good parts'
    p(defect) (under the benchmark's dim, noisy light, a threshold for 1% on validation rejected 2.6%)."""
    if not 0.0 < false_alarm_target < 1.0:
        raise ShopfloorInputError(f"false_alarm_target={false_alarm_target} is invalid; allowed: 0 < target < 1.")
    if len(p_good_parts) < 1 / false_alarm_target:
        raise ShopfloorInputError(f"{len(p_good_parts)} good parts cannot set a {false_alarm_target:.1%} false-alarm "
                                  f"rate; allowed: at least {int(np.ceil(1 / false_alarm_target))}.")
    return threshold_for_false_alarm(np.asarray(p_good_parts), false_alarm_target)
