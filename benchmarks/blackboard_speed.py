"""In-process blackboard throughput: posts per second, batched and single, with and without the SQLite log.

Every case is timed ``--repeat`` times on a new board and the best run is reported, per wall-clock second and
per CPU-second of this process (the second is what the code costs when other processes share the machine; it
leaves out waiting for the disk). The posts are made before the clock starts (except in the "incl. building
Post objects" row), cycling over 100 topics (``state/unit-<i>``) and 10 keys, each with a small dict value
``{"x": float, "n": int}`` unless the row says otherwise. Cases:

* ``post``, batches of ``--batch`` (1,000): the target is >= 200,000 posts/s;
* ``post``, one post per call;
* ``post`` + the event log (`agents.eventlog.LogSink`), one ``commit`` (one SQLite transaction) per batch, so a
  batch stands for one tick; with ``synchronous=FULL`` (the default, one fsync per tick) and ``NORMAL``;
* ``read``: a reader that follows the board with ``since_seq`` after every batch (one pattern over all 100
  topics, and one exact topic), and ``latest`` of a 100-topic pattern;
* ``compare_and_set`` calls, and a pickle round trip of a batch of `Post`s (what a Ray call must do at least).

Usage::

    .venv/bin/python benchmarks/blackboard_speed.py [--n-posts 200000] [--batch 1000] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from agents.blackboard import Blackboard, Post  # noqa: E402
from agents.eventlog import EventLog, LogSink  # noqa: E402

TARGET_POSTS_PER_S = 200_000.0
N_TOPICS = 100
N_KEYS = 10


@dataclass
class Row:
    case: str
    rate: tuple[float, float]  # items per wall-second and per CPU-second of this process (best run of each)
    unit: str  # what an item is
    n: int  # items per run
    target: float | None = None
    note: str = ""


def _value(j: int, kind: str):
    if kind == "float":
        return 1.5 * j
    if kind == "nested":
        return {"x": 1.5, "n": j, "tag": "ok", "xs": [1.0, 2.0, 3.0], "pos": {"lat": 52.1, "lon": 4.3}}
    return {"x": 1.5 * j, "n": j}


def make_batches(n_posts: int, batch: int, kind: str = "dict") -> list[list[Post]]:
    """``n_posts`` posts in batches, over `N_TOPICS` topics and `N_KEYS` keys."""
    topics = [f"state/unit-{i}" for i in range(N_TOPICS)]
    keys = [f"k{i}" for i in range(N_KEYS)]
    out, k = [], 0
    for _ in range(n_posts // batch):
        out.append([Post(topics[(k + j) % N_TOPICS], keys[(k + j) % N_KEYS], _value(k + j, kind))
                    for j in range(batch)])
        k += batch
    return out


def best_rate(run: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Best items per wall-second and per CPU-second over ``repeat`` runs of ``run`` (which returns the
    number of items it handled). CPU time is this process's only, so it is what the code costs even when
    other processes share the machine; it leaves out waiting for fsync."""
    wall = cpu = 0.0
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        n = run()
        t1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = max(wall, n / (t1 - t0)), max(cpu, n / max(c1 - c0, 1e-9))
    return wall, cpu


def bench_posts(batches: list[list[Post]], repeat: int) -> tuple[float, float]:
    def run() -> int:
        board = Blackboard()
        post = board.post
        for tick, b in enumerate(batches):
            post("agent", tick, b)
        return board.last_seq
    return best_rate(run, repeat)


def bench_posts_building(n_posts: int, batch: int, repeat: int) -> tuple[float, float]:
    topics = [f"state/unit-{i}" for i in range(N_TOPICS)]
    keys = [f"k{i}" for i in range(N_KEYS)]

    def run() -> int:
        board = Blackboard()
        k = 0
        for tick in range(n_posts // batch):
            board.post("agent", tick, [Post(topics[(k + j) % N_TOPICS], keys[(k + j) % N_KEYS],
                                            {"x": 1.5 * (k + j), "n": k + j}) for j in range(batch)])
            k += batch
        return board.last_seq
    return best_rate(run, repeat)


def bench_single_posts(batches: list[list[Post]], repeat: int) -> tuple[float, float]:
    singles = [[p] for b in batches for p in b]

    def run() -> int:
        board = Blackboard()
        post = board.post
        for tick, one in enumerate(singles):
            post("agent", tick, one)
        return board.last_seq
    return best_rate(run, repeat)


def bench_logged_posts(batches: list[list[Post]], repeat: int, directory: Path,
                       synchronous: str) -> tuple[float, float]:
    def run() -> int:
        with tempfile.TemporaryDirectory(dir=directory) as d:
            log = EventLog(Path(d) / "events.sqlite", synchronous=synchronous)
            board = Blackboard(sink=LogSink(log))
            for tick, b in enumerate(batches):
                board.post("agent", tick, b)
                board.sink.commit(tick)
            n = log.count()
            log.close()
            return n
    return best_rate(run, repeat)


def bench_follow_reads(batches: list[list[Post]], repeat: int,
                       patterns: list[str]) -> tuple[tuple[float, float], float]:
    """A reader that reads what is new after every batch: ((entries per wall-s, per CPU-s), read calls per
    CPU-s), read time only."""
    wall = cpu = 0.0
    for _ in range(repeat):
        board = Blackboard()
        seen, n_entries, spent, spent_cpu = 0, 0, 0.0, 0.0
        for tick, b in enumerate(batches):
            board.post("agent", tick, b)
            t0, c0 = time.perf_counter(), time.process_time()
            got = board.read(patterns, since_seq=seen)
            spent += time.perf_counter() - t0
            spent_cpu += time.process_time() - c0
            n_entries += len(got)
            seen = board.last_seq
        wall, cpu = max(wall, n_entries / spent), max(cpu, n_entries / max(spent_cpu, 1e-9))
    return (wall, cpu), cpu * len(batches) / n_entries


def bench_latest(batches: list[list[Post]], repeat: int) -> tuple[float, float]:
    board = Blackboard()
    for tick, b in enumerate(batches):
        board.post("agent", tick, b)
    n_calls = 200

    def run() -> int:
        n = 0
        for _ in range(n_calls):
            n += len(board.latest(["state/*"]))
        return n
    return best_rate(run, repeat)


def bench_cas(n: int, repeat: int) -> tuple[float, float]:
    def run() -> int:
        board = Blackboard()
        for i in range(n):
            board.compare_and_set("manager", i, f"award/t{i % 100}", "award", i // 100, {"winner": "agv-1"})
        return board.last_seq
    return best_rate(run, repeat)


def bench_pickle(batches: list[list[Post]], repeat: int) -> tuple[float, float]:
    some = batches[:50]

    def run() -> int:
        n = 0
        for b in some:
            n += len(pickle.loads(pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)))
        return n
    return best_rate(run, repeat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-posts", type=int, default=200_000, help="posts per batched run (default 200000)")
    p.add_argument("--batch", type=int, default=1_000, help="posts per batch / per logged tick (default 1000)")
    p.add_argument("--single", type=int, default=50_000, help="posts in the one-post-per-call run (default 50000)")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats, best one reported (default 3)")
    p.add_argument("--dir", default=None, help="directory for the SQLite files (default: the system temp dir)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.n_posts < args.batch or args.single < 1 or args.repeat < 1:
        print("need --batch >= 1, --n-posts >= --batch, --single >= 1 and --repeat >= 1", file=sys.stderr)
        return 2
    directory = Path(args.dir or tempfile.gettempdir())
    if not directory.is_dir():
        print(f"--dir {directory} is not a directory", file=sys.stderr)
        return 2

    load0 = os.getloadavg()[0]
    batches = make_batches(args.n_posts, args.batch)
    n = len(batches) * args.batch
    b = args.batch
    rows = [
        Row(f"post, batches of {b:,}", bench_posts(batches, args.repeat), "posts", n, TARGET_POSTS_PER_S),
        Row(f"post, batches of {b:,}, float values", bench_posts(make_batches(n, b, "float"), args.repeat),
            "posts", n),
        Row(f"post, batches of {b:,}, nested values (5 keys, list, dict)",
            bench_posts(make_batches(n, b, "nested"), args.repeat), "posts", n),
        Row(f"post, batches of {b:,}, incl. building Post objects", bench_posts_building(n, b, args.repeat),
            "posts", n),
        Row("post, one post per call", bench_single_posts(make_batches(args.single, b), args.repeat), "posts",
            args.single),
        Row(f"post + SQLite log FULL, 1 transaction per {b:,}", bench_logged_posts(batches, args.repeat,
            directory, "FULL"), "posts", n, note="one fsync per tick"),
        Row(f"post + SQLite log NORMAL, 1 transaction per {b:,}", bench_logged_posts(batches, args.repeat,
            directory, "NORMAL"), "posts", n),
    ]
    wide, calls_wide = bench_follow_reads(batches, args.repeat, ["state/*"])
    exact, calls_exact = bench_follow_reads(batches, args.repeat, ["state/unit-7"])
    rows += [
        Row(f"read ['state/*'] since last seen, after each batch ({calls_wide:,.0f} calls/CPU-s)", wide, "entries", n),
        Row(f"read ['state/unit-7'] since last seen, after each batch ({calls_exact:,.0f} calls/CPU-s)", exact,
            "entries", n // N_TOPICS),
        Row(f"latest ['state/*'] ({N_TOPICS * N_KEYS:,} current entries)", bench_latest(batches, args.repeat),
            "entries", 200 * N_TOPICS * N_KEYS),
        Row("compare_and_set, one per call", bench_cas(20_000, args.repeat), "calls", 20_000),
        Row(f"pickle round trip of batches of {b:,} Posts", bench_pickle(batches, args.repeat), "posts",
            min(50, len(batches)) * b, note="lower bound for a Ray call"),
    ]

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    t = Table(title=f"Blackboard throughput in one process (best of {args.repeat}; Python "
                    f"{sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    for col in ("case", "per wall-s", "per CPU-s", "unit", "items", "target", "verdict"):
        t.add_column(col, justify="left" if col in ("case", "unit") else "right", no_wrap=col != "case")
    for r in rows:
        t.add_row(r.case, f"{r.rate[0]:,.0f}", f"{r.rate[1]:,.0f}", r.unit, f"{r.n:,}", _target(r), _verdict(r))
    console.print(t)
    console.print(f"  load average before/after: {load0:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs. "
                  "Other processes slow the wall-clock rate; the CPU-time rate is this process's own cost (it "
                  "leaves out waiting for fsync, so for the SQLite rows the wall-clock rate is the one that counts).")
    console.print(f"  SQLite files in {directory}. " + " ".join(f"{r.case}: {r.note}." for r in rows if r.note))
    print("\n| case | per wall-s | per CPU-s | unit | target | verdict |\n|---|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r.case} | {r.rate[0]:,.0f} | {r.rate[1]:,.0f} | {r.unit} | {_target(r)} | {_verdict(r)} |")
    return 0


def _target(r: Row) -> str:
    return "" if r.target is None else f">= {r.target:,.0f}"


def _verdict(r: Row) -> str:
    """On wall-clock time; "met on CPU time" when only the CPU-time rate reaches the target (a busy machine)."""
    if r.target is None:
        return ""
    return "met" if r.rate[0] >= r.target else "met on CPU time" if r.rate[1] >= r.target else "MISSED"


if __name__ == "__main__":
    raise SystemExit(main())
