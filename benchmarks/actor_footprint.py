"""What each Ray actor of a run costs: the run's start time, and each actor's own memory and whether it
loaded torch.

    .venv/bin/python benchmarks/actor_footprint.py [SCENARIO] [--reps 3] [--set key=value ...]

Start time is from creating the board to every agent being built (``RayRun``'s constructor: the actors'
processes, their imports, the models they load). Memory is the unique set size (USS: pages only that
process holds, the memory freed if it ended) and the proportional set size (PSS: shared pages divided
among their sharers), read from /proc after the start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cluster.cli import parse_set  # noqa: E402
from cluster.orchestrator import RayRun, ensure_ray  # noqa: E402
from environments.scenario import load_scenario  # noqa: E402

console = Console()


def actor_pids(run: RayRun) -> dict[str, int]:
    """Agent name (and ``board``) -> the pid of the process hosting it."""
    handles = {"board": run.board, **run.pool.actors}
    # __ray_call__ runs a function inside the actor: no method of ours is needed to ask its pid
    pids = ray.get([h.__ray_call__.remote(lambda actor: os.getpid()) for h in handles.values()])
    return dict(zip(handles, pids))


def footprint(pid: int) -> tuple[float, float, bool]:
    """(USS MB, PSS MB, torch loaded) of one process."""
    mem = psutil.Process(pid).memory_full_info()
    with open(f"/proc/{pid}/maps") as maps:
        torch_loaded = "libtorch" in maps.read()
    return mem.uss / 2**20, mem.pss / 2**20, torch_loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "smart_factory.yaml"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario, parse_set(args.overrides))
    ensure_ray()
    starts, rows = [], {}
    for _ in range(args.reps):
        t0 = time.perf_counter()
        run = RayRun(scenario, 0, None)
        starts.append(time.perf_counter() - t0)
        rows = {name: footprint(pid) for name, pid in actor_pids(run).items()}
        run.close()
    table = Table(title=f"{scenario.name}: Ray actors after the run's start ({args.reps} starts)")
    for col in ("actor", "USS MB", "PSS MB", "torch"):
        table.add_column(col, justify="left" if col == "actor" else "right")
    for name, (uss, pss, torch_loaded) in rows.items():
        table.add_row(name, f"{uss:.0f}", f"{pss:.0f}", "yes" if torch_loaded else "no")
    table.add_row("all", f"{sum(r[0] for r in rows.values()):.0f}", f"{sum(r[1] for r in rows.values()):.0f}",
                  f"{sum(r[2] for r in rows.values())} of {len(rows)}")
    console.print(table)
    console.print(f"start (board created to every agent built): median {statistics.median(starts):.1f} s, "
                  f"each {', '.join(f'{s:.1f}' for s in starts)} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
