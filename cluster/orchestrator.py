"""The orchestrator on Ray: one run's board and agents as actors, driven tick by tick from this process.

`start_ray_run` mirrors `agents.runtime.start_local_run`: the same `PlantRun` tick protocol, with the board
in a `BoardActor` (its event log on this machine's disk) and the phase-one agents in `AgentActor` s,
placed on nodes by the scenario's ``agents.<name>.resources``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import ray

from agents.runtime import PlantRun, build_agent, phase_one, rebuild_from_board
from cluster.actors import BoardActor, RayAgentPool
from environments.errors import ShopfloorInputError
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario


def ensure_ray(address: str | None = None) -> None:
    """Start an embedded local Ray (2 CPUs, no dashboard), or join the cluster at ``address``, once."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ShopfloorInputError(f"--address {address}: cannot join a Ray cluster there ({exc}); "
                                  f"start one with `ray start --head` or leave --address out") from None


class RayRun:
    """A `PlantRun` whose board and agents are Ray actors.

    Parameters
    ----------
    pool : RayAgentPool, optional
        Agent actors kept from an earlier seed of the same scenario (they start over for this seed);
        by default new ones are made. ``board_name`` must then be the pool's.
    """

    def __init__(self, scenario: Scenario, seed: int, log_path: str | Path | None, resume: bool = False,
                 pool: RayAgentPool | None = None, board_name: str | None = None):
        self.board_name = board_name or f"board-{uuid.uuid4().hex[:12]}"
        self.board = BoardActor.options(name=self.board_name).remote(
            str(log_path) if log_path else None, resume, seed)
        call = lambda method, *args: ray.get(getattr(self.board, method).remote(*args))  # noqa: E731
        last = call("resume_tick") if resume else None
        plant = ShopfloorPlant(scenario)
        plant.reset(seed=seed)
        safety = build_agent("safety", plant)
        if resume:
            rebuild_from_board(safety, call("turns_of", "safety"), lambda p, s: call("read", p, s))
        self.own_pool = pool is None
        if pool is None:
            pool = RayAgentPool(scenario, self.board_name, phase_one(scenario), scenario.deadline_ms / 1000.0)
        else:
            pool.start_seed()
        self.pool = pool
        call_async = lambda method, *args: getattr(self.board, method).remote(*args)  # noqa: E731
        self.run = PlantRun(scenario, seed, plant, self.pool, call, safety, call_async, ray.get)
        if resume:
            self.run.fast_forward(call("read", ["*"], 0), last)
        elif log_path:
            call("set_meta", "seed", str(seed))
            call("set_meta", "scenario", scenario.model_dump_json())

    def close(self, keep_pool: bool = False) -> None:
        """Finish the log and free the board; the agent actors too unless ``keep_pool`` (for the next seed)."""
        self.run._settle_commit()
        if not keep_pool:
            self.pool.shutdown()
        ray.get(self.board.close.remote())
        ray.kill(self.board)
        # The name must be free before the next seed's board takes it.
        while True:
            try:
                ray.get_actor(self.board_name)
            except ValueError:
                break
            time.sleep(0.01)
