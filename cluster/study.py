"""Simulation studies: many seeded runs of several configurations, in parallel as Ray tasks, compared with
95% confidence intervals (``shopfloor study``).

A configuration is one combination of the ``--set`` values (``agents.pacing.policy=push,conwip`` gives
two). Each (configuration, seed) run is one Ray task running the whole tick protocol in its worker; a run
that fails is reported with its error and the others go on.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ray

from environments.kpis import KPIS, Estimate, summarise
from environments.scenario import Scenario, load_scenario


@dataclass
class StudyResult:
    scenario: str
    configurations: list[dict[str, object]]
    seeds: list[int]
    summaries: list[dict[str, Estimate]]  # per configuration
    per_run: list[dict] = field(repr=False)
    failures: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    out_dir: Path | None = None

    def label(self, k: int) -> str:
        """The configuration's varying settings, e.g. ``pacing.policy=push``."""
        varying = [key for key in self.configurations[k]
                   if len({repr(c[key]) for c in self.configurations}) > 1]
        return ", ".join(f"{'.'.join(key.split('.')[-2:])}={self.configurations[k][key]}"
                         for key in varying) or "as written"


def configurations(sets: dict[str, list[object]]) -> list[dict[str, object]]:
    """Every combination of the ``--set`` values, in the order given."""
    keys = list(sets)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sets[k] for k in keys))] or [{}]


@ray.remote(num_cpus=1, max_retries=0)
def _run_one(scenario_json: str, seed: int) -> dict[str, float]:
    from agents.runtime import start_local_run

    scenario = Scenario.model_validate_json(scenario_json)
    run, board = start_local_run(scenario, seed, None)
    try:
        while not run.done:
            run.step()
        return run.kpis()
    finally:
        board.close()


def run_study(scenario_path: Path, n_seeds: int, sets: dict[str, list[object]], workers: int | None = None,
              out_dir: Path | None = None, on_done: Callable[[int], None] | None = None) -> StudyResult:
    """Run every configuration over ``n_seeds`` seeds as Ray tasks, at most ``workers`` at a time."""
    configs = configurations(sets)
    scenarios = [load_scenario(scenario_path, cfg) for cfg in configs]  # bad values fail here, before any run
    seeds = [scenarios[0].seed + k for k in range(n_seeds)]
    jobs = [(k, seed) for k in range(len(configs)) for seed in seeds]
    limit = workers or int(ray.available_resources().get("CPU", 1)) or 1
    start = time.perf_counter()
    pending: dict = {}
    per_run, failures = [], []
    next_job = 0
    while next_job < len(jobs) or pending:
        while next_job < len(jobs) and len(pending) < limit:
            k, seed = jobs[next_job]
            pending[_run_one.remote(scenarios[k].model_dump_json(), seed)] = (k, seed)
            next_job += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        k, seed = pending.pop(done[0])
        try:
            per_run.append({"configuration": k, "seed": seed, **ray.get(done[0])})
        except Exception as exc:  # a failed run is reported; the study goes on
            failures.append({"configuration": k, "seed": seed, "error": f"{exc.__class__.__name__}: "
                                                                     f"{str(exc).strip().splitlines()[-1][:300]}"})
        if on_done:
            on_done(1)
    summaries = []
    for k in range(len(configs)):
        runs = sorted((r for r in per_run if r["configuration"] == k), key=lambda r: r["seed"])
        summaries.append(summarise([{m: v for m, v in r.items() if m not in ("configuration", "seed")}
                                    for r in runs]) if runs else {})
    result = StudyResult(scenarios[0].name, configs, seeds, summaries, per_run, failures,
                         time.perf_counter() - start, out_dir)
    if out_dir is not None:
        write_study(result, out_dir)
    return result


def write_study(result: StudyResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study.json").write_text(json.dumps({
        "scenario": result.scenario,
        "seeds": result.seeds,
        "configurations": [{"set": cfg, "kpis": {k: e.to_dict() for k, e in summary.items()}}
                           for cfg, summary in zip(result.configurations, result.summaries)],
        "per_run": result.per_run,
        "failures": result.failures,
        "wall_s": result.wall_s,
    }, indent=2, default=str))
    plot_study(result, out_dir / "plots")


def plot_study(result: StudyResult, plot_dir: Path) -> list[Path]:
    """One plot per KPI: mean and 95% CI for each configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    labels = [result.label(k) for k in range(len(result.configurations))]
    for name, kpi in KPIS.items():
        ests = [s.get(name) for s in result.summaries]
        if not any(ests):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(labels)), 3.6))
        means = [e.mean if e else 0.0 for e in ests]
        errs = [e.half_width if e else 0.0 for e in ests]
        ax.bar(range(len(labels)), means, yerr=errs, capsize=6, color="tab:blue", alpha=0.75)
        ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
        ax.set_ylabel(f"{name} ({kpi.unit})" if kpi.unit else name)
        ax.set_title(f"{name}: mean and 95% CI over {len(result.seeds)} seeds"
                     + (" (higher is better)" if kpi.higher_is_better else " (lower is better)"), fontsize=9)
        fig.tight_layout()
        path = plot_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
