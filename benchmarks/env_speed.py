"""Single-environment step rate of every shopfloor environment (steps per wall-second).

For each registered environment (``environments.ENVIRONMENTS``) it times ``--steps`` steps after a warm-up,
resetting whenever an episode ends (resets are included in the time), with

* the raw environment (``gymnasium.make(id).unwrapped``): the headline number, once with random actions
  and once with the zero action (for LinePacing the zero action is a steady 45 parts/h at speed 1.0);
* the ``gymnasium.make(id)`` wrapped environment (passive checker, order enforcing), random actions.

Random actions are pre-sampled from the seeded action space (1024 of them, cycled), so sampling is not
timed. The whole Plant (`environments.plant.ShopfloorPlant`, a PettingZoo ParallelEnv) is timed too if it
imports, with fewer steps (it renders an inspection image per part). A module that is not there yet is
skipped with a note.

Usage::

    .venv/bin/python benchmarks/env_speed.py [--steps 20000] [--plant-steps 1000] [--scenario FILE]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402

DEFAULT_SCENARIO = ROOT / "scenarios" / "smart_factory.yaml"
FALLBACK_ENVIRONMENTS = {  # used if environments/__init__.py does not list them
    "shopfloor/ProcessControl-v0": "environments.process_control:ProcessControlEnv",
    "shopfloor/LinePacing-v0": "environments.line_pacing:LinePacingEnv",
    "shopfloor/Dispatch-v0": "environments.dispatch:DispatchEnv",
}
TARGETS = {"shopfloor/ProcessControl-v0": 10_000.0, "shopfloor/LinePacing-v0": 10_000.0}
N_ACTIONS = 1024


@dataclass
class Row:
    name: str
    raw_random: float | None = None  # steps/s
    raw_zero: float | None = None
    wrapped_random: float | None = None
    target: float | None = None
    note: str = ""


def _actions(space: gym.Space, kind: str, seed: int = 0) -> list:
    if kind == "zero":
        if isinstance(space, gym.spaces.Box):
            return [np.zeros(space.shape, dtype=space.dtype)]
        if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            return [np.zeros(space.shape, dtype=space.dtype)]
        if isinstance(space, gym.spaces.Discrete):
            return [space.start]
        raise TypeError(f"no zero action for {space}")
    space.seed(seed)
    return [space.sample() for _ in range(N_ACTIONS)]


def time_env(env: gym.Env, actions: list, n_steps: int, n_warmup: int, seed: int = 0, repeat: int = 1) -> float:
    """Steps per second over ``n_steps`` after ``n_warmup``, best of ``repeat``; resets on episode end are timed."""
    env.reset(seed=seed)
    step, reset, n_act = env.step, env.reset, len(actions)
    for k in range(n_warmup):
        _, _, terminated, truncated, _ = step(actions[k % n_act])
        if terminated or truncated:
            reset()
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for k in range(n_steps):
            _, _, terminated, truncated, _ = step(actions[k % n_act])
            if terminated or truncated:
                reset()
        best = max(best, n_steps / (time.perf_counter() - t0))
    return best


def _registered() -> tuple[dict[str, str], str]:
    try:
        envs = importlib.import_module("environments")
    except Exception as exc:  # noqa: BLE001 - report, do not crash the benchmark
        return dict(FALLBACK_ENVIRONMENTS), f"environments does not import ({exc.__class__.__name__}: {exc})"
    listed = getattr(envs, "ENVIRONMENTS", None)
    if not listed:
        return dict(FALLBACK_ENVIRONMENTS), "environments.ENVIRONMENTS missing: constructed from entry points"
    return dict(listed), ""


def bench_single(env_id: str, entry_point: str, n_steps: int, n_warmup: int, repeat: int = 1) -> Row:
    name = env_id.removeprefix("shopfloor/")
    row = Row(name, target=TARGETS.get(env_id))
    module_name, _, cls_name = entry_point.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except Exception as exc:  # noqa: BLE001
        row.note = f"skipped: {entry_point} not available ({exc.__class__.__name__}: {exc})"
        return row
    registered = env_id in gym.registry
    try:
        raw = gym.make(env_id).unwrapped if registered else cls()
        row.raw_random = time_env(raw, _actions(raw.action_space, "random"), n_steps, n_warmup, repeat=repeat)
        row.raw_zero = time_env(raw, _actions(raw.action_space, "zero"), n_steps, n_warmup, repeat=repeat)
        if registered:
            wrapped = gym.make(env_id)
            row.wrapped_random = time_env(wrapped, _actions(wrapped.action_space, "random"), n_steps, n_warmup,
                                          repeat=repeat)
        else:
            row.note = "not registered with gymnasium: no gym.make column"
    except Exception as exc:  # noqa: BLE001 - a work-in-progress env: report, do not crash
        row.note = f"failed: {exc.__class__.__name__}: {exc}"
    return row


def bench_plant(scenario_path: Path, n_steps: int, n_warmup: int) -> Row:
    row = Row("Plant (ParallelEnv)")
    try:
        from environments.plant import ShopfloorPlant
    except Exception as exc:  # noqa: BLE001
        row.note = f"skipped: environments.plant not available ({exc.__class__.__name__}: {exc})"
        return row
    scenario, where = None, "Scenario defaults"
    try:
        from environments.scenario import load_scenario

        if scenario_path.is_file():
            scenario, where = load_scenario(scenario_path), scenario_path.name
    except Exception as exc:  # noqa: BLE001
        where = f"Scenario defaults ({exc.__class__.__name__})"
    plant = ShopfloorPlant(scenario)
    agents = list(plant.possible_agents)

    def joint(kind: str) -> list[dict]:
        per_agent = {a: _actions(plant.action_space(a), kind, seed=i) for i, a in enumerate(agents)}
        n = max(len(v) for v in per_agent.values())
        return [{a: v[k % len(v)] for a, v in per_agent.items()} for k in range(n)]

    def run(actions: list[dict]) -> float:
        plant.reset(seed=0)
        n_act = len(actions)
        for k in range(n_warmup):
            plant.step(actions[k % n_act])
            if not plant.agents:
                plant.reset()
        t0 = time.perf_counter()
        for k in range(n_steps):
            plant.step(actions[k % n_act])
            if not plant.agents:
                plant.reset()
        return n_steps / (time.perf_counter() - t0)

    try:
        row.raw_random, row.raw_zero = run(joint("random")), run(joint("zero"))
    except Exception as exc:  # noqa: BLE001 - the Plant is work in progress; report, do not crash
        row.raw_random = row.raw_zero = None
        row.note = f"failed while stepping: {exc.__class__.__name__}: {exc}"
        return row
    row.note = f"{where}; one step = all four agents; {n_steps} steps"
    return row


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _verdict(row: Row) -> str:
    if row.target is None or row.raw_random is None:
        return ""
    worst = min(v for v in (row.raw_random, row.raw_zero) if v is not None)
    return "met" if worst >= row.target else "MISSED"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000, help="timed steps per single env (default 20000)")
    p.add_argument("--warmup", type=int, default=500, help="untimed steps first (default 500)")
    p.add_argument("--plant-steps", type=int, default=1_000, help="timed steps of the Plant (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats, best one reported (default 3)")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario for the Plant")
    args = p.parse_args(argv)
    if args.steps < 1 or args.plant_steps < 0 or args.warmup < 0:
        print("--steps must be >= 1, --plant-steps and --warmup >= 0", file=sys.stderr)
        return 2

    load0 = os.getloadavg()[0]
    envs, note = _registered()
    rows = [bench_single(env_id, ep, args.steps, args.warmup, max(1, args.repeat)) for env_id, ep in envs.items()]
    if args.plant_steps:
        rows.append(bench_plant(Path(args.scenario), args.plant_steps, min(args.warmup, 50)))

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    if note:
        console.print(f"[yellow]{note}[/]")
    t = Table(title=f"Environment steps per second (one process; {args.steps:,} steps after {args.warmup} warm-up, "
                    f"best of {max(1, args.repeat)})")
    for col in ("env", "raw, random", "raw, zero", "gym.make, random", "target", "verdict"):
        t.add_column(col, justify="left" if col == "env" else "right", no_wrap=True)
    for r in rows:
        t.add_row(r.name, _fmt(r.raw_random), _fmt(r.raw_zero), _fmt(r.wrapped_random),
                  "" if r.target is None else f">= {r.target:,.0f}", _verdict(r))
    console.print(t)
    console.print(f"  load average before/after: {load0:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
                  "(other processes on the machine slow every number down)")
    for r in rows:
        if r.note:
            console.print(f"  {r.name}: {r.note}")
    print("\n| env | raw, random (steps/s) | raw, zero | gym.make, random | target | verdict |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {_fmt(r.raw_random)} | {_fmt(r.raw_zero)} | {_fmt(r.wrapped_random)} | "
              f"{'' if r.target is None else f'>= {r.target:,.0f}'} | {_verdict(r) or (r.note if r.raw_random is None else '')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
