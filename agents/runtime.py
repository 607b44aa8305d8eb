"""The tick protocol: plant -> blackboard -> agents -> safety -> plant, with a durable log (design notes §1).

One tick:

1. The plant's state goes on the blackboard (``state/*``, ``perception/parts``, ``event/voice``).
2. Every agent but safety gets its inbox (new entries matching its subscriptions since its last turn),
   decides, and posts back. An agent that misses the tick's deadline, or fails, posts nothing this tick;
   the safety agent then applies that unit's safe default. Misses are counted.
3. The safety agent arbitrates, clamps or vetoes and posts ``action/<unit>``. It runs in the orchestrator's
   own process: no action may reach the plant without it, so it cannot hang on a remote call.
4. The plant steps with the final actions; the tick's posts are committed to the event log in one
   transaction, with the seq window of every agent's turn (``meta/turns``).

Because every agent's inputs are on the log, a lost agent is rebuilt by replaying its logged turns
(`rebuild_from_board`), and a killed run is resumed by replaying the plant with the logged final actions
and the agents with their logged turns (`PlantRun.resume`).

`AgentPool` is how step 2 is executed: `LocalAgentPool` here calls plain objects in this process;
`cluster.actors.RayAgentPool` calls Ray actors with deadlines and restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.agent import Agent, encode_image, encode_observation
from agents.blackboard import Blackboard, Entry, Post
from agents.controller_agent import ControllerAgent
from agents.defect_negotiation import negotiation_log, pacing_negotiation, process_negotiation
from agents.fleet_agents import FleetManagerAgent, RouteTenderAgent, VehicleAgent
from agents.eventlog import EventLog, LogSink, replay_into
from agents.inspection_agent import InspectionAgent
from agents.policies import make_controller, route_planner_for
from planning.safety import SafetyLimits
from agents.safety_agent import SafetyAgent
from agents.voice_agent import Listener, VoiceAgent, make_listener
from agents.voice_commands import CommandGate, vocabulary_for
from environments.errors import ShopfloorInputError
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario, VoiceEvent
from perception.commands import Vocabulary

PHASE_ONE = ("process", "pacing", "dispatch", "inspection", "voice")


# ----------------------------------------------------------------------------------------- the board
class LoggedBoard:
    """A blackboard whose posts are committed to an event log, one transaction per tick (no log: memory only).

    The log runs SQLite's WAL with ``synchronous=NORMAL`` unless ``SHOPFLOOR_LOG_SYNC=FULL``: a committed tick
    survives the process being killed (tested with SIGKILL); surviving power loss as well needs FULL, which
    costs an fsync per tick (about 7 ms here).
    """

    def __init__(self, log_path: str | Path | None = None):
        sync = os.environ.get("SHOPFLOOR_LOG_SYNC", "NORMAL").upper()
        self.log = EventLog(log_path, synchronous=sync) if log_path else None
        self.sink = LogSink(self.log) if self.log else None
        self.board = Blackboard(sink=self.sink)
        self._n_unlogged = 0

    def post(self, author: str, tick: int, posts: list[Post]) -> list[int]:
        return self.board.post(author, tick, posts)

    def post_many(self, tick: int, batches: list[tuple[str, list[Post]]]) -> list[list[int]]:
        return [self.post(author, tick, posts) for author, posts in batches]

    def read(self, patterns, since_seq: int = 0) -> list[Entry]:
        return self.board.read(list(patterns), since_seq)

    def read_many(self, requests: dict[str, tuple[tuple[str, ...], int]]) -> dict[str, list[Entry]]:
        """Several agents' inboxes in one call (one round trip when the board is remote)."""
        return {name: self.board.read(list(patterns), since) for name, (patterns, since) in requests.items()}

    def last_seq(self) -> int:
        return self.board.last_seq

    # One round trip per phase of a tick (when the board is remote, every call costs ~1 ms).
    def begin_tick(self, tick: int, plant_posts: list[Post], requests: dict[str, tuple[tuple[str, ...], int]]):
        """Post the plant's state, then read every agent's inbox: ``(n_acks, inboxes, upto_seq)``."""
        acks = self.post("plant", tick, plant_posts)
        return len(acks), self.read_many(requests), self.last_seq()

    def collect(self, tick: int, batches: list[tuple[str, list[Post]]], patterns: tuple[str, ...], since: int):
        """Post the agents' answers, then read the safety agent's inbox: ``(n_acks, inbox, upto_seq)``."""
        acks = sum(map(len, self.post_many(tick, batches)))
        return acks, self.read(patterns, since), self.last_seq()

    def end_tick(self, tick: int, posts: list[Post]) -> tuple[int, int]:
        """Post the final actions and commit the tick: ``(n_acks, n_committed)``."""
        acks = len(self.post("safety", tick, posts))
        return acks, self.commit_tick(tick)

    def turns_of(self, name: str) -> list[tuple[int, int, int]]:
        """An agent's logged turns ``(tick, since_seq, upto_seq)``, in order (see `rebuild_from_board`)."""
        turns = []
        for e in self.board.read(["meta/turns"], 0):
            window = e.value.get(name)
            if window is not None:
                turns.append((e.tick, window[0], window[1]))
        return turns

    def commit_tick(self, tick: int) -> int:
        """Write this tick's posts in one transaction; returns how many there were."""
        if self.sink is not None:
            return self.sink.commit(tick)
        n, self._n_unlogged = self.board.last_seq - self._n_unlogged, self.board.last_seq
        return n

    def load_from_log(self, until_tick: int) -> None:
        assert self.log is not None, "no log to load from"
        replay_into(self.board, self.log, until_tick)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


# ------------------------------------------------------------------------------------------ the agents
def phase_one(scenario: Scenario) -> tuple[str, ...]:
    """The agents that decide in parallel each tick (all but safety); contract-net adds one per vehicle."""
    if scenario.agents.dispatch.policy.startswith("contract_net"):
        return PHASE_ONE + tuple(f"vehicle-{k}" for k in range(len(scenario.fleet.fleet)))
    return PHASE_ONE


@lru_cache(maxsize=4)
def _loaded_clip(spec: str, views: int, runtime: str):
    """A CLIP loaded once per process: an agent actor is rebuilt for every seed, the model need not be."""
    from perception.clip_model import load_clip  # torch: only in the process that hosts the inspection agent

    return load_clip(None if spec == "shipped" else spec, views=views, image_runtime=runtime)


@lru_cache(maxsize=4)
def _loaded_listener(spec: str, vocabulary: Vocabulary) -> Listener:
    """Whisper, warm, and the grammar of one plant: loaded once per process, not once per seed."""
    return make_listener(None if spec == "whisper" else spec.split(":", 1)[1], vocabulary)


def build_voice_agent(sc: Scenario) -> VoiceAgent:
    """The VoiceAgent; Whisper is loaded only when the scenario has recordings to hear."""
    policy = sc.agents.voice.policy
    recordings = any(isinstance(e, VoiceEvent) and e.audio for e in sc.events)
    listener = _loaded_listener(policy, vocabulary_for(sc)) if recordings and policy != "off" else None
    in_force = {"jacket_setpoint_c": sc.process.nominal_jacket_c, "pressure_setpoint_bar": sc.process.nominal_pressure_bar,
                "speed_factor": 1.0}
    gate = CommandGate(SafetyLimits.from_scenario(sc), confirm_window_s=sc.agents.voice.confirm_window_s)
    return VoiceAgent(gate, listener, in_force)


def build_agent(name: str, plant: ShopfloorPlant) -> Agent:
    """One of the scenario's agents, with the policy it names. Call after ``plant.reset()``."""
    sc = plant.scenario
    if name == "dispatch" and sc.agents.dispatch.policy == "contract_net":
        return FleetManagerAgent(len(sc.fleet.fleet), sc.fleet.max_pending_orders)
    if name == "dispatch" and sc.agents.dispatch.policy.startswith("contract_net:"):
        return RouteTenderAgent(plant.fleet, route_planner_for(sc.agents.dispatch.policy.split(":", 1)[1]),
                                sc.agents.dispatch.batching())
    if name.startswith("vehicle-"):
        return VehicleAgent(int(name.split("-")[1]), plant.fleet)
    if name in ("process", "pacing", "dispatch"):
        negotiation = None
        if name == "pacing":
            negotiation = pacing_negotiation(sc.line)
        elif name == "process":
            negotiation = process_negotiation(sc.process, sc.line, SafetyLimits.from_scenario(sc).pressure_setpoint_bar[1])
        return ControllerAgent(name, make_controller(name, plant), getattr(sc.agents, name).policy, negotiation)
    if name == "inspection":
        clip = sc.agents.inspection.clip
        vlm = None if clip == "off" else _loaded_clip(clip, sc.agents.inspection.clip_views, sc.agents.inspection.runtime)
        return InspectionAgent(make_controller("inspection", plant), plant.max_parts_per_tick,
                               sc.agents.inspection.reject_threshold, vlm)
    if name == "voice":
        return build_voice_agent(sc)
    if name == "safety":
        return SafetyAgent(sc, plant.max_parts_per_tick, sc.fleet.max_pending_orders)
    raise AssertionError(f"no agent {name!r}")


def build_agents(plant: ShopfloorPlant) -> dict[str, Agent]:
    return {name: build_agent(name, plant) for name in (*phase_one(plant.scenario), "safety")}


def rebuild_from_board(agent: Agent, turns: list[tuple[int, int, int]], read: Callable[..., list[Entry]]) -> None:
    """Replay an agent's logged turns ``(tick, since_seq, upto_seq)`` through ``decide`` (posts discarded).

    ``read(patterns, since_seq)`` is called once; the turns' windows are cut from what it returns.
    """
    if not turns:
        return
    entries = read(list(agent.subscribes), turns[0][1])
    i = 0
    for tick, since, upto in turns:
        while i < len(entries) and entries[i].seq <= since:
            i += 1
        j = i
        while j < len(entries) and entries[j].seq <= upto:
            j += 1
        agent.decide(tick, entries[i:j])
        i = j


class AgentPool(Protocol):
    """Runs step 2 of a tick for every phase-one agent."""

    def decide_all(self, tick: int, inboxes: dict[str, list[Entry]]) -> dict[str, list[Post] | None]: ...

    def subscriptions(self) -> dict[str, tuple[str, ...]]: ...

    def restarts(self) -> int: ...


class LocalAgentPool:
    """Agents as plain objects in this process (tests, training, `--local`). Deadlines are not enforced:
    a call cannot be abandoned in one process."""

    def __init__(self, agents: dict[str, Agent]):
        self.agents = agents

    def decide_all(self, tick, inboxes):
        return {name: self.agents[name].decide(tick, inbox) for name, inbox in inboxes.items()}

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        return {name: tuple(agent.subscribes) for name, agent in self.agents.items()}

    def restarts(self) -> int:
        return 0


# ------------------------------------------------------------------------------------------- the run
@dataclass
class RunCounters:
    deadline_misses: dict[str, int] = field(default_factory=dict)
    posts: int = 0  # entries the log committed
    acknowledged: int = 0  # entries the board acknowledged (a seq returned)
    tick_latency_s: list[float] = field(default_factory=list)
    plant_s: list[float] = field(default_factory=list)  # of which the plant's own step and rendering


class PlantRun:
    """One seeded run of a scenario through the blackboard.

    Parameters
    ----------
    scenario, seed
    board : LoggedBoard or a remote handle with the same methods (called through ``call``)
    pool : AgentPool
    call : callable
        ``call(method, *args)`` invokes a board method (locally: a plain call; Ray: ``ray.get(handle.m.remote())``).
    """

    def __init__(self, scenario: Scenario, seed: int, plant: ShopfloorPlant, pool: AgentPool, call: Callable,
                 safety: SafetyAgent, call_async: Callable | None = None, resolve: Callable | None = None):
        self.scenario, self.seed, self.pool, self.call = scenario, seed, pool, call
        # The tick's commit need not hold up the next tick: a remote board runs one caller's calls in order,
        # so it still lands before the next tick's posts. Locally both are plain calls.
        self.call_async, self.resolve = call_async or call, resolve or (lambda result: result)
        self._commit = None
        self.plant, self.safety, self.subscriptions = plant, safety, pool.subscriptions()
        self.observations = plant.last_observations
        self.phase_one = phase_one(scenario)
        self.cursors = {name: 0 for name in (*self.phase_one, "safety")}
        self.counters = RunCounters(deadline_misses={name: 0 for name in self.phase_one})
        self.trace = [self.plant.trace()]
        self.inspections: list[tuple[int, bool]] = []
        self._voice = sorted((e for e in scenario.events if isinstance(e, VoiceEvent)), key=lambda e: e.at_min)
        self._next_voice = 0

    @property
    def done(self) -> bool:
        if not self.plant.agents:
            self._settle_commit()
            return True
        return False

    def _settle_commit(self) -> None:
        """Wait for the last tick's commit and count its acknowledgements."""
        if self._commit is not None:
            (handle, acks), self._commit = self._commit, None
            n, committed = self.resolve(handle)
            self.counters.posts += committed
            self.counters.acknowledged += acks + n

    def _plant_posts(self) -> list[Post]:
        obs, plant = self.observations, self.plant
        posts = [Post("state/process", "obs", encode_observation("process", obs["process"])),
                 Post("state/pacing", "obs", encode_observation("pacing", obs["pacing"])),
                 Post("state/dispatch", "obs", encode_observation("dispatch", obs["dispatch"],
                                                                  plant.fleet.action_masks()))]
        shown = plant.line.awaiting_inspection[: plant.max_parts_per_tick]
        images = obs["inspection"]["images"]
        posts.append(Post("perception/parts", "station", {"parts": [
            {"part_id": int(part[0]), "png": encode_image(images[slot])} for slot, part in enumerate(shown)]}))
        for k, event in self._due_voice_events():
            posts.append(Post("event/voice", f"v{k}", {"audio": event.audio, "query": event.query, "at_s": 60 * event.at_min,
                                                       "command": event.command.model_dump() if event.command else None}))
        return posts

    def _due_voice_events(self) -> list[tuple[int, VoiceEvent]]:
        """Scripted voice events due by this tick, not yet posted (advances the cursor)."""
        now_min, due = self.plant.tick * self.plant.dt_s / 60.0, []
        while self._next_voice < len(self._voice) and self._voice[self._next_voice].at_min <= now_min:
            due.append((self._next_voice, self._voice[self._next_voice]))
            self._next_voice += 1
        return due

    def step(self) -> None:
        """One tick of the protocol (module docstring)."""
        start, tick, call = time.perf_counter(), self.plant.tick, self.call
        self._settle_commit()
        requests = {n: (self.subscriptions[n], self.cursors[n]) for n in self.phase_one}
        plant_start = time.perf_counter()
        plant_posts = self._plant_posts()
        plant_s = time.perf_counter() - plant_start
        acks, inboxes, upto = call("begin_tick", tick, plant_posts, requests)
        results = self.pool.decide_all(tick, inboxes)
        batches, turns = [], {}
        for name in self.phase_one:
            posts = results.get(name)
            if posts is None:
                # A missed turn is not logged and the cursor stays: the next turn brings these entries too.
                self.counters.deadline_misses[name] += 1
                continue
            batches.append((name, posts))
            turns[name] = (self.cursors[name], upto)
            self.cursors[name] = upto
        n, safety_inbox, upto = call("collect", tick, batches, self.safety.subscribes, self.cursors["safety"])
        acks += n
        turns["safety"] = (self.cursors["safety"], upto)
        self.cursors["safety"] = upto
        safety_posts = self.safety.decide(tick, safety_inbox)
        actions = {p.topic.split("/", 1)[1]: np.asarray(p.value) for p in safety_posts if p.topic.startswith("action/")}
        plant_start = time.perf_counter()
        self._step_plant(actions)
        self.counters.plant_s.append(plant_s + time.perf_counter() - plant_start)
        turns_post = Post("meta/turns", "all", {k: list(w) for k, w in turns.items()})
        self._commit = (self.call_async("end_tick", tick, safety_posts + [turns_post]), acks)
        self.counters.tick_latency_s.append(time.perf_counter() - start)

    def fast_forward(self, entries: list[Entry], last_tick: int) -> None:
        """Replay the plant through the logged ticks 0..last_tick and restore every cursor (resume)."""
        actions = logged_actions(entries)
        for tick in range(last_tick + 1):
            self._due_voice_events()  # the scripted voice events of those ticks were posted already
            self._step_plant(dict(actions[tick]))
        for e in entries:
            if e.topic == "meta/turns":
                for name, (_, upto) in e.value.items():
                    self.cursors[name] = upto

    def _step_plant(self, actions: dict[str, np.ndarray]) -> None:
        actions["pacing"] = actions["pacing"].astype(np.float32)
        actions["process"] = actions["process"].astype(np.float32)
        self.observations, _, _, _, infos = self.plant.step(actions)
        inspection = infos.get("inspection", {})
        self.inspections += list(zip(inspection.get("true_defects", []), inspection.get("verdicts", [])))
        self.trace.append(self.plant.trace())

    def kpis(self) -> dict[str, float]:
        """The plant's KPIs plus the coordination counters, both derived from what is on the log."""
        self._settle_commit()
        out = self.plant.kpis()
        out.update(counters_from_entries(self.call("read", ["*"], 0), self.phase_one))
        return out

    def operator_log(self) -> list[dict]:
        """Each voice event and what came of it, from the log: the command accepted (and by which unit) or the
        reason it was refused, and for a search the parts found."""
        return operator_log(self.call("read", ["event/voice", "command/*", "veto/voice", "answer/*"], 0))

    def negotiation_log(self) -> list[dict]:
        """Each defect-alarm negotiation (tender, bids, award, outcome), from the log."""
        return negotiation_log(self.call("read", ["cfp/*", "bid/*", "award/*", "done/*"], 0))

    def timing(self) -> dict[str, float]:
        """Wall-clock figures of this run (not KPIs: they differ between identical runs)."""
        self._settle_commit()
        lat = np.asarray(self.counters.tick_latency_s or [0.0]) * 1000.0
        coord = lat - np.asarray(self.counters.plant_s or [0.0]) * 1000.0
        return {"tick_latency_p50_ms": float(np.percentile(lat, 50)),
                "tick_latency_p99_ms": float(np.percentile(lat, 99)),
                "coordination_p50_ms": float(np.percentile(coord, 50)),
                "coordination_p99_ms": float(np.percentile(coord, 99)),
                "agent_restarts": float(self.pool.restarts()),
                "posts_acknowledged": float(self.counters.acknowledged),
                "posts_logged": float(self.counters.posts)}


def counters_from_entries(entries: list[Entry], phase_one: tuple[str, ...] = PHASE_ONE) -> dict[str, float]:
    """Deadline misses, conflicts, vetoes, clamps, safe defaults and voice commands, counted from the log."""
    misses = conflicts = vetoes = clamps = defaults = accepted = rejected = 0
    for e in entries:
        top, _, rest = e.topic.partition("/")
        if e.topic == "meta/turns":
            misses += sum(name not in e.value for name in phase_one)
        elif e.topic == "meta/conflict":
            conflicts += 1
        elif top == "veto":
            if rest == "voice":
                rejected += 1
            elif e.key == "default":
                defaults += 1
            else:
                vetoes += bool(e.value.get("vetoed"))
                clamps += bool(e.value.get("clamped")) and not e.value.get("vetoed")
        elif top == "command" and e.author == "voice":
            accepted += 1
    return {"deadline_misses": float(misses), "conflicts": float(conflicts), "vetoes": float(vetoes),
            "clamps": float(clamps), "safe_defaults": float(defaults), "commands_accepted": float(accepted),
            "commands_rejected": float(rejected)}


def operator_log(entries: list[Entry]) -> list[dict]:
    """Voice events with their outcomes (see ``PlantRun.operator_log``). The VoiceAgent decides in the
    event's tick; the InspectionAgent reads the search it posts, and answers, one tick later."""
    events = [e for e in entries if e.topic == "event/voice"]
    out = []
    for ev in events:
        row = {"tick": ev.tick, "event": ev.key, "audio": ev.value.get("audio"), "command": ev.value.get("command"),
               "query": ev.value.get("query")}
        for e in entries:
            if e.topic == "answer/parts" and e.key == ev.key and e.tick >= ev.tick:
                row.setdefault("answer", e.value)
            if e.tick != ev.tick:
                continue
            if e.topic == "answer/voice" and e.key == ev.key:  # what the recording said, and the gate's word
                row.update(heard=e.value["heard"], intent=e.value["intent"], slots=e.value["slots"])
                status = "" if e.value["accepted"] else "waiting: " if e.value.get("awaiting_confirmation") else "refused: "
                row["outcome"] = status + e.value["reason"]
            elif e.topic == "veto/voice" and e.key == ev.key:
                row.setdefault("outcome", f"refused: {e.value['reason']}")
            elif e.topic.startswith("command/") and e.author == "voice" and e.key == ev.key:
                unit = e.topic.split('/', 1)[1]
                row["applied"] = {"unit": unit, "settings": e.value}
                row.setdefault("outcome", f"accepted for {unit}")
        out.append(row)
    return out


# ------------------------------------------------------------------------------- start, resume, replay
def local_board_call(board: LoggedBoard) -> Callable:
    return lambda method, *args: getattr(board, method)(*args)


def start_local_run(scenario: Scenario, seed: int, log_path: str | Path | None = None,
                    resume: bool = False) -> tuple[PlantRun, LoggedBoard]:
    """A run with every agent in this process (``resume``: continue the run logged at ``log_path``)."""
    board = LoggedBoard(log_path)
    plant = ShopfloorPlant(scenario)
    plant.reset(seed=seed)
    resume_tick = prepare_resume(board) if resume else None
    agents = build_agents(plant)
    if resume_tick is not None:
        for name, agent in agents.items():
            rebuild_from_board(agent, board.turns_of(name), board.read)
    pool = LocalAgentPool({n: agents[n] for n in phase_one(scenario)})
    run = PlantRun(scenario, seed, plant, pool, local_board_call(board), agents["safety"])
    if resume_tick is not None:
        run.fast_forward(board.read(["*"], 0), resume_tick)
    elif board.log is not None:
        board.log.set_meta("seed", str(seed))
        board.log.set_meta("scenario", scenario.model_dump_json())
    return run, board


def prepare_resume(board: LoggedBoard) -> int:
    """Load a logged run onto the board; the last tick it committed."""
    assert board.log is not None, "resume needs an event log"
    last = board.log.last_committed_tick()
    if last is None:
        raise ShopfloorInputError(f"{board.log.path}: the event log has no committed tick to resume from")
    board.load_from_log(last)
    return last


def logged_actions(entries: list[Entry]) -> dict[int, dict[str, np.ndarray]]:
    """The final actions the plant executed, per tick."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for e in entries:
        if e.topic.startswith("action/"):
            out.setdefault(e.tick, {})[e.topic.split("/", 1)[1]] = np.asarray(e.value)
    return out




def replay_kpis(log_path: str | Path) -> dict[str, float]:
    """Recompute a logged run's KPIs: the plant re-simulated with the logged actions, counters from the log."""
    log = EventLog(log_path)
    try:
        scenario = Scenario.model_validate_json(log.get_meta("scenario"))
        seed = int(log.get_meta("seed"))
        entries = list(log.entries())
    finally:
        log.close()
    plant = ShopfloorPlant(scenario)
    plant.reset(seed=seed)
    for tick, actions in sorted(logged_actions(entries).items()):
        for unit in ("process", "pacing"):
            actions[unit] = actions[unit].astype(np.float32)
        plant.step(actions)
    out = plant.kpis()
    out.update(counters_from_entries(entries, phase_one(scenario)))
    return out
