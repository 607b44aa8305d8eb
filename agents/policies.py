"""Turn a scenario's policy names into the controllers the agents run.

Every controller has ``reset(seed)`` and ``act(observation) -> action`` in its unit's action space.
A new policy goes here (and its name into ``environments.scenario.POLICIES``).

The learned policies (the RL controllers, the vision models, the GNN) are imported where the scenario
names them: importing torch costs an actor ~2 s and ~260 MB of its own memory
(benchmarks/actor_footprint.py), and the board, the classical dispatchers, the vehicles and the safety
agent need none of it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

from environments.errors import ShopfloorInputError
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario
from perception.datasets import render_dataset
from planning.baselines.dispatchers import NearestNeighbourDispatcher, SavingsDispatcher
from planning.baselines.inspection import ThresholdInspector
from planning.baselines.pacing import ConwipRelease, PushRelease
from planning.baselines.pid import FixedSetpoints, PIDController
from planning.baselines.routing import clarke_wright_savings


class Controller(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: Any) -> Any: ...


def make_controllers(plant: ShopfloorPlant) -> dict[str, Controller]:
    """One controller per plant unit, as the plant's scenario asks. Call after ``plant.reset()``."""
    return {unit: make_controller(unit, plant) for unit in ("process", "pacing", "dispatch", "inspection")}


def make_controller(unit: str, plant: ShopfloorPlant) -> Controller:
    """The controller the scenario names for one unit."""
    sc = plant.scenario
    agents = sc.agents
    policy = getattr(agents, unit).policy
    if unit == "process":
        if policy == "fixed":
            return FixedSetpoints(sc.process)
        if policy == "pid":
            return PIDController(sc.process)
        if policy == "rl" or policy.startswith("rl:"):
            return _rl_controller(unit, policy, plant)
    elif unit == "pacing":
        if policy == "push":
            return PushRelease(sc.line, agents.pacing.push_release_fraction)
        if policy == "conwip":
            return ConwipRelease(sc.line, agents.pacing.wip_cap, sc.tick_s)
        if policy == "rl" or policy.startswith("rl:"):
            return _rl_controller(unit, policy, plant)
    elif unit == "dispatch":
        if policy == "nearest":
            return NearestNeighbourDispatcher(plant.fleet)
        if policy == "savings":
            return SavingsDispatcher(plant.fleet, **agents.dispatch.batching())
        kind, _, path = policy.partition(":")
        if kind == "gnn":
            return SavingsDispatcher(plant.fleet, route_planner=gnn_route_planner(path or None),
                                     **agents.dispatch.batching())
    elif unit == "inspection":
        return _inspector(policy, plant)
    _not_available(unit, policy)


COMMISSIONING_SEED = 20_261_207
"""Dataset seed of the known-good parts a station is commissioned on (no training, test or plant set uses it)."""


def station_good_parts(sc: Scenario, n: int) -> np.ndarray:
    """``n`` known-good parts of the line's part types, rendered under the station's camera conditions."""
    return _good_parts(sc.inspection.image_size, sc.inspection.image_shift, tuple(sc.inspection.part_types), n)


@lru_cache(maxsize=4)
def _good_parts(size: int, image_shift: float, part_types: tuple[str, ...], n: int) -> np.ndarray:
    # cached: a study builds the station once per seed, in the same worker processes
    shift = f"shifted:all@{image_shift}" if image_shift > 0 else "nominal"
    images = render_dataset(n, size, COMMISSIONING_SEED, shift, part_types=part_types, defect="good", workers=1).images
    images.flags.writeable = False
    return images


def _inspector(policy: str, plant: ShopfloorPlant) -> Controller:
    """The inspection controller; commissioned on the station's own known-good parts when the scenario asks."""
    sc = plant.scenario
    cfg = sc.agents.inspection
    threshold, target = cfg.reject_threshold, cfg.commission_false_alarm
    kind, _, path = policy.partition(":")
    if policy == "threshold":  # its golden sample: good parts under nominal light, 2% false alarms
        inspector = ThresholdInspector.calibrated(
            part_types=sc.inspection.part_types, image_size=sc.inspection.image_size,
            max_parts=plant.max_parts_per_tick, reject_threshold=0.5 if threshold is None else threshold)
    elif kind == "cnn":
        from perception.defect_cnn import CNNInspector

        inspector = CNNInspector(path or None, plant.max_parts_per_tick, threshold, views=cfg.views,
                                 runtime=cfg.runtime)
    elif kind == "clip":
        from perception.clip_inspector import CLIPInspector
        from perception.clip_model import load_clip

        inspector = CLIPInspector(load_clip(f"local-dir:{path}" if path else None, image_runtime=cfg.runtime),
                                  plant.max_parts_per_tick, threshold)
    else:
        _not_available("inspection", policy)
    if target is not None:
        inspector.calibrate(station_good_parts(sc, cfg.commission_parts), target)
    return inspector


SHIPPED_ROUTER = Path(__file__).resolve().parents[1] / "planning" / "policies" / "router.pt"
GNN_DISPATCH_BUDGET_S = 0.05  # per batch of orders: inside the dispatch agent's share of a 200 ms tick


@lru_cache(maxsize=4)
def _loaded_router(path: str):
    from planning.route_model import load_router

    return load_router(path)[0]


def gnn_route_planner(path: str | None = None, budget_s: float = GNN_DISPATCH_BUDGET_S):
    """The GNN as the dispatcher's route planner (``planning.route_model.solve_within``): shipped weights
    unless ``path`` names a checkpoint of `shopfloor train router`."""
    from planning.route_model import solve_within
    from planning.ruin_recreate import warm_up

    model = _loaded_router(str(path or SHIPPED_ROUTER))
    warm_up()  # the first search compiles; not on a tick's deadline
    return lambda instance: solve_within(model, instance, budget_s).routes


def route_planner_for(spec: str):
    """The route planner a dispatch policy names after ``contract_net:``: ``savings``, ``gnn`` (the
    shipped weights) or ``gnn:<path>``."""
    if spec == "savings":
        return clarke_wright_savings
    kind, _, path = spec.partition(":")
    if kind == "gnn":
        return gnn_route_planner(path or None)
    _not_available("dispatch", f"contract_net:{spec}")


def _rl_controller(unit: str, policy: str, plant: ShopfloorPlant) -> Controller:
    """The shipped policy of the unit (``rl``) or the one at ``rl:<path>``."""
    from planning.rl_controller import SHIPPED_POLICIES, RLController

    path = policy.partition(":")[2] or SHIPPED_POLICIES[unit]
    return RLController.load(path, plant.observation_space(unit), plant.action_space(unit))


def _not_available(agent: str, policy: str) -> NoReturn:
    raise ShopfloorInputError(
        f"agents.{agent}.policy = {policy!r}: this build has no trained {policy.split(':')[0]} policy yet; "
        f"available now: {', '.join(_AVAILABLE[agent])}")


_AVAILABLE = {"process": ("fixed", "pid", "rl", "rl:<path>"), "pacing": ("push", "conwip", "rl", "rl:<path>"),
              "dispatch": ("nearest", "savings", "contract_net", "contract_net:savings", "contract_net:gnn",
                           "contract_net:gnn:<path>", "gnn", "gnn:<path>"),
              "inspection": ("threshold", "cnn", "cnn:<path>", "clip", "clip:<path>")}
