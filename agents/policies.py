"""Turn a scenario's policy names into the controllers the agents run.

Every controller has ``reset(seed)`` and ``act(observation) -> action`` in its unit's action space.
A new policy goes here (and its name into ``environments.scenario.POLICIES``).
"""

from __future__ import annotations

from typing import Any, Protocol

from environments.errors import ShopfloorInputError
from environments.plant import ShopfloorPlant
from planning.baselines.dispatchers import NearestNeighbourDispatcher, SavingsDispatcher
from planning.baselines.inspection import ThresholdInspector
from planning.baselines.pacing import ConwipRelease, PushRelease
from planning.baselines.pid import FixedSetpoints, PIDController


class Controller(Protocol):
    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: Any) -> Any: ...


def make_controllers(plant: ShopfloorPlant) -> dict[str, Controller]:
    """One controller per plant agent, as the plant's scenario asks. Call after ``plant.reset()``."""
    sc = plant.scenario
    agents = sc.agents
    out: dict[str, Controller] = {}

    policy = agents.process.policy
    if policy == "fixed":
        out["process"] = FixedSetpoints(sc.process)
    elif policy == "pid":
        out["process"] = PIDController(sc.process)
    else:
        _not_available("process", policy)

    policy = agents.pacing.policy
    if policy == "push":
        out["pacing"] = PushRelease(sc.line, agents.pacing.push_release_fraction)
    elif policy == "conwip":
        out["pacing"] = ConwipRelease(sc.line, agents.pacing.wip_cap, sc.tick_s)
    else:
        _not_available("pacing", policy)

    policy = agents.dispatch.policy
    if policy == "nearest":
        out["dispatch"] = NearestNeighbourDispatcher(plant.fleet)
    elif policy == "savings":
        out["dispatch"] = SavingsDispatcher(plant.fleet)
    else:
        _not_available("dispatch", policy)

    policy = agents.inspection.policy
    if policy == "threshold":
        out["inspection"] = ThresholdInspector.calibrated(
            part_types=sc.inspection.part_types, image_size=sc.inspection.image_size,
            max_parts=plant.max_parts_per_tick, reject_threshold=agents.inspection.reject_threshold)
    else:
        _not_available("inspection", policy)
    return out


def _not_available(agent: str, policy: str) -> None:
    raise ShopfloorInputError(
        f"agents.{agent}.policy = {policy!r}: this build has no trained {policy.split(':')[0]} policy yet; "
        f"available now: {', '.join(_AVAILABLE[agent])}")


_AVAILABLE = {"process": ("fixed", "pid"), "pacing": ("push", "conwip"), "dispatch": ("nearest", "savings"),
              "inspection": ("threshold",)}
