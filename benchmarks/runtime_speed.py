"""Coordination speed: blackboard posts/s through the Ray actor, tick latency on Ray against in process, and
a study's wall time with 1 and 2 workers.

    .venv/bin/python benchmarks/runtime_speed.py [--ticks 120] [--study-seeds 20] [--set key=value ...]

``--set`` overrides the scenario of the tick-latency runs (as ``shopfloor run --set``), to compare a
plant setting beside the default in one session, e.g. ``--set inspection.image_size=64``.

Tick latency is the whole tick (plant step and part rendering included) and, separately, the coordination
part: the tick less the plant's own time (board round trips, agents' decisions, safety, the log commit).
The in-process blackboard figures are in benchmarks/blackboard_speed.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agents.blackboard import Post  # noqa: E402
from agents.runtime import start_local_run  # noqa: E402
from cluster.actors import BoardActor  # noqa: E402
from cluster.cli import parse_set  # noqa: E402
from cluster.orchestrator import RayRun, ensure_ray  # noqa: E402
from environments.scenario import load_scenario  # noqa: E402

console = Console()


def board_posts_per_s(n_batches: int = 200, batch: int = 1000, in_flight: int = 4) -> dict[str, float]:
    board = BoardActor.remote(None)
    posts = [Post("state/line", f"k{i % 50}", {"x": float(i), "n": i}) for i in range(batch)]
    ray.get(board.post.remote("bench", 0, posts))  # warm up
    t = time.perf_counter()
    for k in range(n_batches):
        ray.get(board.post.remote("bench", k, posts))
    serial = n_batches * batch / (time.perf_counter() - t)
    t = time.perf_counter()
    refs = []
    for k in range(n_batches):
        refs.append(board.post.remote("bench", k, posts))
        if len(refs) >= in_flight:
            ray.get(refs.pop(0))
    ray.get(refs)
    pipelined = n_batches * batch / (time.perf_counter() - t)
    ray.kill(board)
    return {"serial": serial, "pipelined": pipelined}


def tick_latency(ticks: int, overrides: dict | None = None) -> dict[str, dict[str, float]]:
    sc = load_scenario(ROOT / "scenarios" / "smart_factory.yaml",
                       {"duration_h": ticks / 60.0, "events": [], **(overrides or {})})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        run, board = start_local_run(sc, 1, Path(tmp) / "local.sqlite")
        while not run.done:
            run.step()
        out["in process"] = run.timing()
        board.close()
        handle = RayRun(sc, 1, Path(tmp) / "ray.sqlite")
        while not handle.run.done:
            handle.run.step()
        out["Ray actors"] = handle.run.timing()
        handle.close()
    return out


def study_wall(seeds: int) -> dict[int, float]:
    from cluster.study import run_study

    with tempfile.TemporaryDirectory() as tmp:
        sc_file = Path(tmp) / "sc.yaml"
        sc_file.write_text("name: bench\nduration_h: 2\n")
        return {w: run_study(sc_file, seeds, {}, workers=w).wall_s for w in (1, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=240, help="ticks per latency run (default 240)")
    p.add_argument("--study-seeds", type=int, default=20, help="seeds in the study (default 20)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the tick-latency scenario, e.g. inspection.image_size=64 (repeatable)")
    args = p.parse_args()
    overrides = parse_set(args.set)
    ensure_ray()
    console.print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    posts = board_posts_per_s()
    t = Table(title="Blackboard posts/s through the Ray actor (batches of 1,000)")
    for c in ("calls", "posts/s", "target"):
        t.add_column(c, justify="right")
    t.add_row("one at a time", f"{posts['serial']:,.0f}", ">= 50,000")
    t.add_row("4 in flight", f"{posts['pipelined']:,.0f}", ">= 50,000")
    console.print(t)

    lat = tick_latency(args.ticks, overrides)
    t = Table(title=f"Tick latency, smart_factory, 6 agents, {args.ticks} ticks (ms)")
    for c in ("agents", "tick p50", "tick p99", "coordination p50", "coordination p99"):
        t.add_column(c, justify="right")
    for mode, m in lat.items():
        t.add_row(mode, f"{m['tick_latency_p50_ms']:.1f}", f"{m['tick_latency_p99_ms']:.1f}",
                  f"{m['coordination_p50_ms']:.1f}", f"{m['coordination_p99_ms']:.1f}")
    console.print(t)
    console.print("target on Ray: p50 <= 10 ms, p99 <= 50 ms")

    walls = study_wall(args.study_seeds)
    t = Table(title=f"Study of {args.study_seeds} seeds x 2 h (smart_factory defaults), wall time")
    for c in ("workers", "wall s", "speed-up"):
        t.add_column(c, justify="right")
    for w, s in walls.items():
        t.add_row(str(w), f"{s:.1f}", f"{walls[1] / s:.2f}x")
    console.print(t)
    console.print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
