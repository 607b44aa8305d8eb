"""The GNN route planner against PyVRP, savings, nearest neighbour and OR-Tools, side by side in one run.

Instances (held out: drawn from ``--seed``, not the training or validation seeds of
``planning.train_router``): Kool et al.'s CVRP distribution (``planning.cvrp_generator.kool_instance``),
``--n50`` instances with 50 customers and ``--n100`` with 100, plus the three CVRPLIB X instances in
``benchmarks/cvrplib`` against their best known solutions.

Per instance, one after another, on one thread each:

- PyVRP for ``--pyvrp-s`` seconds (5): the quality reference the gaps are measured to;
- Clarke-Wright savings and nearest neighbour (the classical floor);
- the GNN greedy (one rollout); the GNN's greedy rollouts from ``MULTISTART_N`` first customers, the best
  kept (no polish); and within a total budget of ``--budget-s`` (0.5 s) per instance,
  multi-start decoding (every first customer, views of the square while half the budget lasts) then
  local-search polish (``planning.route_model.solve_within``);
- OR-Tools guided local search given the same budget as the GNN's multi-start + polish;
- the ablation: the same polish (``planning.local_search.polish``: ruin and recreate, then a descent)
  from the savings solution, given the whole budget. If it matches the GNN's row, the search, not the
  GNN, earns the quality.

The gap is ``cost / reference - 1``, averaged over instances, with a 95% t interval.

Usage::

    .venv/bin/python benchmarks/routing.py [--model planning/policies/router.pt] [--n50 100] [--n100 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy import stats  # noqa: E402

from planning.baselines.routing import (  # noqa: E402
    clarke_wright_savings,
    instance_from_vrplib,
    nearest_neighbour,
    read_vrplib_solution_cost,
    solution_cost,
)
from planning.cvrp_generator import kool_instance  # noqa: E402
from planning.local_search import polish  # noqa: E402
from planning.ruin_recreate import warm_up  # noqa: E402
from planning.reference_solvers import ortools_solve, pyvrp_solve  # noqa: E402
from planning.route_model import load_router, solve, solve_within  # noqa: E402

HELD_OUT_SEED = 424_242  # not 1_000_003 * seed + 21 (training) nor VAL_SEED (validation)
# POMO greedy rollouts from this many first customers, best kept: several solutions at about the
# single greedy rollout's time (the batch is decoded at once), so it shows what the greedy bar's 50 ms buys
MULTISTART_N = 16


def mean_ci(values) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():+.1%}"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():+.1%} ± {half:.1%}"


def run_systems(instance, model, budget_s: float, pyvrp_s: float, reference: float | None = None) -> dict:
    """cost and seconds of every system on one instance; PyVRP's cost is the reference unless given."""
    out = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        routes = fn()
        out[name] = (solution_cost(instance, routes), time.perf_counter() - t0)

    timed("pyvrp", lambda: pyvrp_solve(instance, pyvrp_s))
    timed("savings", lambda: clarke_wright_savings(instance))
    timed("nearest neighbour", lambda: nearest_neighbour(instance))
    timed("gnn greedy", lambda: solve(model, instance, "greedy").routes)
    timed(f"gnn multistart greedy, {MULTISTART_N} starts, no polish",
          lambda: solve(model, instance, "multistart", n=MULTISTART_N).routes)
    timed("gnn multistart + polish, budget", lambda: solve_within(model, instance, budget_s).routes)
    timed("or-tools gls, same budget", lambda: ortools_solve(instance, max(budget_s, 0.05)))
    timed("ablation: savings + polish, same budget", lambda: polish(instance, clarke_wright_savings(instance), budget_s))
    ref = reference if reference is not None else out["pyvrp"][0]
    return {name: (cost / ref - 1.0, cost, seconds) for name, (cost, seconds) in out.items()}


def table(title: str, rows: list[dict], with_ci: bool = True) -> None:
    print(f"\n### {title}\n")
    print("| system | mean gap | median time per instance | slowest |")
    print("|---|---:|---:|---:|")
    for name in rows[0]:
        gaps = [r[name][0] for r in rows]
        times = [r[name][2] for r in rows]
        print(f"| {name} | {mean_ci(gaps) if with_ci else f'{np.mean(gaps):+.1%}'} | {np.median(times) * 1e3:.0f} ms "
              f"| {np.max(times) * 1e3:.0f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "planning" / "policies" / "router.pt"))
    ap.add_argument("--n50", type=int, default=100)
    ap.add_argument("--n100", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=0.5)
    ap.add_argument("--pyvrp-s", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, ckpt = load_router(args.model)
    warm_up()
    print(f"model {args.model}: epoch {ckpt['meta'].get('epoch')}, command {ckpt['meta'].get('command')!r}; "
          f"budget {args.budget_s:g} s per instance; PyVRP {args.pyvrp_s:g} s; 1 thread")
    rng = np.random.default_rng(args.seed)
    for n, count in ((50, args.n50), (100, args.n100)):
        if count:
            rows = [run_systems(kool_instance(rng, n), model, args.budget_s, args.pyvrp_s) for _ in range(count)]
            table(f"CVRP-{n}, {count} held-out instances: gap to PyVRP ({args.pyvrp_s:g} s)", rows)
    print("\n### CVRPLIB X instances: gap to the best known solution\n")
    print("| instance | " + " | ".join(["pyvrp", "savings", "nearest neighbour", "gnn greedy",
                                        f"gnn multistart greedy, {MULTISTART_N}", "gnn multistart + polish, budget",
                                        "or-tools gls, same budget", "ablation: savings + polish"]) + " |")
    print("|---|" + "---:|" * 8)
    for vrp in sorted((ROOT / "benchmarks" / "cvrplib").glob("*.vrp")):
        inst = instance_from_vrplib(vrp)
        bks = read_vrplib_solution_cost(vrp.with_suffix(".sol"))
        r = run_systems(inst, model, args.budget_s, args.pyvrp_s, reference=bks)
        print(f"| {inst.name} | " + " | ".join(f"{g:+.1%} ({s * 1e3:.0f} ms)" for g, _, s in r.values()) + " |")


if __name__ == "__main__":
    main()
