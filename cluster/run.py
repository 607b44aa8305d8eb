"""`run_scenario`: the main job. Runs a scenario's plant with its agents' policies, seed by seed, and writes
the run directory (design notes §6)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from agents.policies import make_controllers
from environments.kpis import Estimate, summarise
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario


@dataclass
class SeedRun:
    """One seeded run: its KPIs and the per-tick trace that the plots draw."""

    seed: int
    kpis: dict[str, float]
    trace: list[dict] = field(repr=False)
    routes: list[dict] = field(repr=False)
    inspections: list[tuple[int, bool]] = field(repr=False)  # (true defect type, rejected)
    wall_s: float = 0.0


@dataclass
class RunResult:
    """What `run_scenario` returns."""

    scenario: Scenario
    run_dir: Path | None
    runs: list[SeedRun]
    summary: dict[str, Estimate]

    @property
    def kpis(self) -> dict[str, float]:
        return {k: e.mean for k, e in self.summary.items()}


def run_seed(scenario: Scenario, seed: int, on_tick: Callable[[int], None] | None = None) -> SeedRun:
    """Run one seed of a scenario in this process."""
    start = time.perf_counter()
    plant = ShopfloorPlant(scenario)
    observations, _ = plant.reset(seed=seed)
    controllers = make_controllers(plant)
    for k, c in enumerate(controllers.values()):
        c.reset(seed=seed * 101 + k)
    trace, inspections = [plant.trace()], []
    while plant.agents:
        actions = {agent: controllers[agent].act(observations[agent]) for agent in plant.agents}
        observations, _, _, _, infos = plant.step(actions)
        inspection = infos.get("inspection", {})
        inspections += list(zip(inspection.get("true_defects", []), inspection.get("verdicts", [])))
        trace.append(plant.trace())
        if on_tick:
            on_tick(plant.tick)
    return SeedRun(seed, plant.kpis(), trace, plant.fleet.route_history(), inspections,
                   time.perf_counter() - start)


def default_run_dir(scenario: Scenario, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{scenario.name}-{stamp}"


def run_scenario(scenario: Scenario, out_dir: Path | None = None, seeds: list[int] | None = None,
                 on_tick: Callable[[int], None] | None = None, write: bool = True) -> RunResult:
    """Run a scenario over its seeds and write the run directory.

    Parameters
    ----------
    scenario : Scenario
    out_dir : Path, optional
        Run directory; default ``runs/<scenario>-<UTC time>``.
    seeds : list[int], optional
        Default ``scenario.seed + k`` for ``k < scenario.seeds``.
    on_tick : callable, optional
        Called with the tick number after every tick (progress bars).
    write : bool
        Write the run directory (scenario.yaml, kpis.json, report.md, plots/).
    """
    seeds = seeds if seeds is not None else [scenario.seed + k for k in range(scenario.seeds)]
    runs = [run_seed(scenario, s, on_tick) for s in seeds]
    result = RunResult(scenario, None, runs, summarise([r.kpis for r in runs]))
    if write:
        from cluster.report import write_run_dir

        result.run_dir = Path(out_dir) if out_dir else default_run_dir(scenario)
        write_run_dir(result)
    return result


def kpis_json(result: RunResult) -> str:
    return json.dumps({
        "scenario": result.scenario.name,
        "seeds": [r.seed for r in result.runs],
        "kpis": {k: e.to_dict() for k, e in result.summary.items()},
        "per_seed": [{"seed": r.seed, **r.kpis} for r in result.runs],
    }, indent=2)
