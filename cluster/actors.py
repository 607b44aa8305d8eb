"""Ray actors: thin wrappers around the plain classes in agents/ (the only module here that knows Ray).

* `BoardActor` hosts a `LoggedBoard` (blackboard + event log). Traffic is batched: one post and one read
  per phase of a tick, whatever the number of agents.
* `AgentActor` hosts one agent. It is created with ``max_restarts``; when Ray restarts it, ``__init__``
  runs again and rebuilds the agent's state by replaying its logged turns from the board, so it carries
  on exactly where the lost one stopped.
* `RayAgentPool` runs a tick's agents in parallel with a deadline: an agent that has not answered in time,
  or whose actor died, posts nothing that tick (the safety agent applies its safe default) and the miss
  or restart is counted.
"""

from __future__ import annotations

import time
import uuid

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from agents.blackboard import Entry, Post
from agents.runtime import LoggedBoard, build_agent, prepare_resume, rebuild_from_board
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario


@ray.remote(num_cpus=0)
class BoardActor:
    """The blackboard and its event log, in one actor."""

    def __init__(self, log_path: str | None, resume: bool = False, seed: int = 0):
        self.board = LoggedBoard(log_path)
        self.last_tick = prepare_resume(self.board) if resume else None
        self._seed = seed

    def seed(self) -> int:
        """The seed of the run this board serves (agents read it when they start or restart)."""
        return self._seed

    def resume_tick(self) -> int | None:
        """The last committed tick of the log this board was resumed from."""
        return self.last_tick

    def set_meta(self, key: str, value: str) -> None:
        assert self.board.log is not None, "no event log"
        self.board.log.set_meta(key, value)

    def post(self, author: str, tick: int, posts: list[Post]) -> list[int]:
        return self.board.post(author, tick, posts)

    def post_many(self, tick: int, batches: list[tuple[str, list[Post]]]) -> list[list[int]]:
        return self.board.post_many(tick, batches)

    def read(self, patterns, since_seq: int = 0) -> list[Entry]:
        return self.board.read(patterns, since_seq)

    def read_many(self, requests):
        return self.board.read_many(requests)

    def last_seq(self) -> int:
        return self.board.last_seq()

    def commit_tick(self, tick: int) -> int:
        return self.board.commit_tick(tick)

    def begin_tick(self, tick, plant_posts, requests):
        return self.board.begin_tick(tick, plant_posts, requests)

    def collect(self, tick, batches, patterns, since):
        return self.board.collect(tick, batches, patterns, since)

    def end_tick(self, tick, posts):
        return self.board.end_tick(tick, posts)

    def turns_of(self, name: str) -> list[tuple[int, int, int]]:
        return self.board.turns_of(name)

    def close(self) -> None:
        self.board.close()


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=0)
class AgentActor:
    """One agent, kept for every seed of a run. Restarted by Ray after a crash; rebuilds itself from the board.

    The board is found by name and the seed read from it, not passed in: constructor arguments must survive
    for Ray to restart this actor (ray-project/ray#53727), and the board of the seed in progress always
    carries the same name.
    """

    def __init__(self, scenario_json: str, name: str, board_name: str):
        self.scenario = Scenario.model_validate_json(scenario_json)
        self.name, self.board_name = name, board_name
        self.start()

    def start(self) -> str:
        """Build the agent for the seed the board serves and replay its logged turns (none on a fresh seed)."""
        board = ray.get_actor(self.board_name)
        plant = ShopfloorPlant(self.scenario)
        plant.reset(seed=ray.get(board.seed.remote()))  # controllers read the plant's static layout
        self.agent = build_agent(self.name, plant)
        turns = ray.get(board.turns_of.remote(self.name))
        rebuild_from_board(self.agent, turns, lambda patterns, since: ray.get(board.read.remote(patterns, since)))
        self.incarnation = uuid.uuid4().hex  # a new one after every restart: how the pool counts restarts
        return self.incarnation

    def ready(self) -> str:
        return self.incarnation

    def subscribes(self) -> tuple[str, ...]:
        return tuple(self.agent.subscribes)

    def node_id(self) -> str:
        """The Ray node this agent runs on (placement checks)."""
        return ray.get_runtime_context().get_node_id()

    def decide(self, tick: int, inbox: list[Entry]) -> tuple[str, list[Post]]:
        return self.incarnation, self.agent.decide(tick, inbox)


class RayAgentPool:
    """Phase-one agents as actors, called in parallel under a per-tick deadline."""

    def __init__(self, scenario: Scenario, board_name: str, names: tuple[str, ...], deadline_s: float):
        self.n_restarts = 0
        # An agent's own deadline (agents.<name>.deadline_ms) overrides the scenario's: hearing a recording
        # takes longer than a controller's turn.
        self.deadline_s = {name: (getattr(scenario.agents, "dispatch" if name.startswith("vehicle-") else name)
                                  .deadline_ms or deadline_s * 1000.0) / 1000.0 for name in names}
        scenario_json = scenario.model_dump_json()
        self.actors = {}
        for name in names:
            # Vehicles go where the fleet's dispatcher goes.
            resources = getattr(scenario.agents, "dispatch" if name.startswith("vehicle-") else name).resources
            options = {"resources": dict(resources)} if resources else {}
            self.actors[name] = AgentActor.options(**options).remote(scenario_json, name, board_name)
        self._incarnation = dict(zip(self.actors, ray.get([a.ready.remote() for a in self.actors.values()])))
        self._subscriptions = dict(zip(self.actors, ray.get([a.subscribes.remote() for a in self.actors.values()])))

    def start_seed(self) -> None:
        """Every agent starts over for the seed its board now serves. No tick starts before all are up."""
        self._incarnation = dict(zip(self.actors, ray.get([a.start.remote() for a in self.actors.values()])))
        self.n_restarts = 0

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        return self._subscriptions

    def decide_all(self, tick, inboxes):
        start = time.monotonic()
        refs = {name: self.actors[name].decide.remote(tick, inbox) for name, inbox in inboxes.items()}
        ready: set = set()
        for deadline in sorted({self.deadline_s[name] for name in refs}):
            # wait for the agents whose deadline has not passed; one that answers after its own deadline
            # (while a slower agent is awaited) still missed it
            waiting = [ref for name, ref in refs.items() if self.deadline_s[name] >= deadline and ref not in ready]
            if waiting:
                done, _ = ray.wait(waiting, num_returns=len(waiting),
                                   timeout=max(0.0, start + deadline - time.monotonic()))
                ready.update(done)
        out = {}
        for name, ref in refs.items():
            if ref not in ready:
                out[name] = None  # missed the deadline; its late answer is dropped
                continue
            try:
                incarnation, out[name] = ray.get(ref, timeout=0)
            except (RayActorError, GetTimeoutError):
                out[name] = None  # the actor died during the call; Ray restarts it
                continue
            if incarnation != self._incarnation[name]:
                self.n_restarts += 1  # answered by a restarted actor that rebuilt itself from the board
                self._incarnation[name] = incarnation
        return out

    def restarts(self) -> int:
        return self.n_restarts

    def shutdown(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor, no_restart=True)
