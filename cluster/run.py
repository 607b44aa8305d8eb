"""`run_scenario`: the main job. Runs a scenario's plant with its agents on the blackboard, seed by seed, and
writes the run directory (design notes §6); `resume_scenario` finishes a killed run, `replay_run_dir`
recomputes its KPIs from the event logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from agents.runtime import replay_kpis, start_local_run
from environments.errors import ShopfloorInputError
from environments.kpis import Estimate, summarise
from environments.scenario import Scenario, load_scenario


@dataclass
class SeedRun:
    """One seeded run: its KPIs, its timing and the per-tick trace that the plots draw."""

    seed: int
    kpis: dict[str, float]
    trace: list[dict] = field(repr=False)
    routes: dict = field(repr=False)  # FleetSim.route_history()
    inspections: list[tuple[int, bool]] = field(repr=False)  # (true defect type, rejected)
    timing: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    operator_log: list[dict] = field(default_factory=list, repr=False)  # voice events and their outcomes
    negotiation_log: list[dict] = field(default_factory=list, repr=False)  # defect alarms: bids, awards, outcomes


@dataclass
class RunResult:
    """What `run_scenario` returns."""

    scenario: Scenario
    run_dir: Path | None
    runs: list[SeedRun]
    summary: dict[str, Estimate]
    mode: str = "ray"

    @property
    def kpis(self) -> dict[str, float]:
        return {k: e.mean for k, e in self.summary.items()}


def log_path(run_dir: Path, seed: int) -> Path:
    """Each seed's event log (design notes §6 has one events.sqlite; a run of several seeds has one each)."""
    return run_dir / f"events-seed{seed}.sqlite"


def run_seed(scenario: Scenario, seed: int, log: Path | None = None, mode: str = "ray",
             on_tick: Callable[[int], None] | None = None, resume: bool = False, actors: dict | None = None) -> SeedRun:
    """Run (or resume) one seed: the agents on Ray actors (``mode="ray"``) or in this process (``"local"``).

    ``actors`` (Ray only) carries the agent actors from one seed to the next: starting actors costs seconds.
    """
    assert mode in ("ray", "local"), f"mode must be 'ray' or 'local', got {mode!r}"
    start = time.perf_counter()
    if mode == "ray":
        from cluster.orchestrator import RayRun

        actors = {} if actors is None else actors
        handle = RayRun(scenario, seed, log, resume, actors.get("pool"), actors.get("board_name"))
        actors.update(pool=handle.pool, board_name=handle.board_name)
        run = handle.run
        close = lambda: handle.close(keep_pool=True)  # noqa: E731
    else:
        run, board = start_local_run(scenario, seed, log, resume)
        close = board.close
    try:
        if on_tick and run.plant.tick:
            on_tick(run.plant.tick)  # ticks already done before a resume
        while not run.done:
            run.step()
            if on_tick:
                on_tick(1)
        return SeedRun(seed, run.kpis(), run.trace, run.plant.fleet.route_history(), run.inspections,
                       run.timing(), time.perf_counter() - start, run.operator_log(), run.negotiation_log())
    finally:
        close()


def default_run_dir(scenario: Scenario, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{scenario.name}-{stamp}"


def run_scenario(scenario: Scenario, out_dir: Path | None = None, seeds: list[int] | None = None,
                 on_tick: Callable[[int], None] | None = None, write: bool = True, mode: str = "ray",
                 address: str | None = None) -> RunResult:
    """Run a scenario over its seeds and write the run directory.

    Parameters
    ----------
    scenario : Scenario
    out_dir : Path, optional
        Run directory; default ``runs/<scenario>-<UTC time>``.
    seeds : list[int], optional
        Default ``scenario.seed + k`` for ``k < scenario.seeds``.
    on_tick : callable, optional
        Called with the number of ticks just done (progress bars).
    write : bool
        Write the run directory (scenario.yaml and event logs first, then kpis.json, report.md, plots/).
    mode : "ray" or "local"
        Agents as Ray actors (embedded local Ray, or the cluster at ``address``) or in this process.
    """
    seeds = seeds if seeds is not None else [scenario.seed + k for k in range(scenario.seeds)]
    run_dir = (Path(out_dir) if out_dir else default_run_dir(scenario)) if write else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "scenario.yaml").write_text(scenario.resolved_yaml())
    if mode == "ray":
        from cluster.orchestrator import ensure_ray

        ensure_ray(address)
    actors: dict = {}
    try:
        runs = [run_seed(scenario, s, log_path(run_dir, s) if run_dir else None, mode, on_tick, actors=actors)
                for s in seeds]
    finally:
        if "pool" in actors:
            actors["pool"].shutdown()
    return _finish(scenario, run_dir, runs, mode)


def resume_scenario(run_dir: Path, on_tick: Callable[[int], None] | None = None, mode: str = "ray",
                    address: str | None = None) -> RunResult:
    """Finish a run that was killed: every seed continues from the last tick its event log committed."""
    scenario = scenario_of_run_dir(run_dir)
    if mode == "ray":
        from cluster.orchestrator import ensure_ray

        ensure_ray(address)
    runs, actors = [], {}
    try:
        for seed in [scenario.seed + k for k in range(scenario.seeds)]:
            log = log_path(run_dir, seed)
            started = log.is_file() and _has_committed_tick(log)
            runs.append(run_seed(scenario, seed, log, mode, on_tick, resume=started, actors=actors))
    finally:
        if "pool" in actors:
            actors["pool"].shutdown()
    return _finish(scenario, run_dir, runs, mode)


def replay_run_dir(run_dir: Path) -> dict[int, dict[str, float]]:
    """Every seed's KPIs recomputed from its event log (no agents run)."""
    scenario = scenario_of_run_dir(run_dir)
    out = {}
    for seed in [scenario.seed + k for k in range(scenario.seeds)]:
        log = log_path(run_dir, seed)
        if not log.is_file():
            raise ShopfloorInputError(f"{run_dir}: no event log for seed {seed} ({log.name}); was the run started?")
        out[seed] = replay_kpis(log)
    return out


def scenario_of_run_dir(run_dir: Path) -> Scenario:
    run_dir = Path(run_dir)
    if not (run_dir / "scenario.yaml").is_file():
        raise ShopfloorInputError(f"{run_dir}: not a run directory (no scenario.yaml); pass a directory that "
                                  f"`shopfloor run` wrote, such as runs/smart_factory-<time>")
    return load_scenario(run_dir / "scenario.yaml")


def _has_committed_tick(log: Path) -> bool:
    from agents.eventlog import EventLog

    with EventLog(log) as ev:
        return ev.last_committed_tick() is not None


def _finish(scenario: Scenario, run_dir: Path | None, runs: list[SeedRun], mode: str) -> RunResult:
    result = RunResult(scenario, run_dir, runs, summarise([r.kpis for r in runs]), mode)
    if run_dir is not None:
        from cluster.report import write_run_dir

        write_run_dir(result)
    return result


def kpis_json(result: RunResult) -> str:
    return json.dumps({
        "scenario": result.scenario.name,
        "seeds": [r.seed for r in result.runs],
        "kpis": {k: e.to_dict() for k, e in result.summary.items()},
        "per_seed": [{"seed": r.seed, **r.kpis} for r in result.runs],
        "timing": [{"seed": r.seed, "wall_s": r.wall_s, **r.timing} for r in result.runs],
        "mode": result.mode,
    }, indent=2)
