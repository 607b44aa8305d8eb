"""Cross-check `LineSim` against an independent SimPy model of the same serial line, and race them.

The SimPy model below is written from the semantics in the `environments.line_pacing` module docstring,
not from `LineSim`'s internals, and draws from its own ``random.Random`` stream, so the two models share no
sample paths. Both run the same scenario line under the same policy (a fixed release rate, all speeds
1.0 by default) for a warm-up followed by a measured window; the statistics cover the window only.

SimPy model (time in minutes)
-----------------------------
* Station ``i`` is a process; its input buffer is ``simpy.Store(capacity=buffer_capacity)``. The part in
  service is not in the buffer. After service the station does ``yield next_store.put(part)``, so it
  holds the part and is blocked while the next buffer is full (blocking after service).
* Processing time: gamma, mean ``mean_process_min / speed``, CV ``process_cv``.
* Operation-dependent failures: each station keeps a remaining working time to failure (exponential, mean
  ``mtbf_h``) that only runs down while processing and carries over between parts; a failure stops the
  part for an exponential repair (mean ``mttr_h``), then processing resumes. ``mttr_h == 0`` disables them.
* Releases: one attempt every ``60 / rate`` minutes (the first one at ``60 / rate``); an attempt that finds
  buffer 0 full, or parts waiting for rework, is lost.
* Defects: a part's hazard gets ``purity_defect_gain * max(0, purity_reference - purity)`` at release and
  ``speed_defect_gain * max(0, speed - 1)`` at every station it starts; on leaving the last station it is
  defective with probability ``1 - exp(-(base_defect_hazard + hazard))``.
* Built-in inspector: rejects a defective part with probability ``detection_rate`` and a good one with
  ``false_alarm_rate``. A rejected part is reworked with probability ``rework_fraction`` (its hazard is
  cleared and it re-enters buffer 0 ahead of new releases: a pending ``put`` on store 0, which SimPy serves
  first when space frees), otherwise scrapped. Passed parts ship.

Usage::

    .venv/bin/python benchmarks/line_vs_simpy.py [--seeds 30] [--hours 8] [--warmup-hours 1]
        [--scenario scenarios/smart_factory.yaml] [--release-rate 54] [--markdown-out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from environments.line_pacing import LineConfig, LineSim  # noqa: E402

DEFAULT_SCENARIO = ROOT / "scenarios" / "smart_factory.yaml"


# --------------------------------------------------------------------------------------------- scenario
def line_config_for(path: str | Path | None = DEFAULT_SCENARIO) -> tuple[LineConfig, float, str]:
    """The line and tick of a scenario: ``(line_config, tick_s, where_it_came_from)``.

    Uses `environments.scenario.load_scenario` when that module imports and the file exists; otherwise
    falls back to ``LineConfig()`` defaults and a 60 s tick, and says so in the third element.
    """
    path = Path(path) if path is not None else DEFAULT_SCENARIO
    try:
        from environments.scenario import load_scenario
    except ImportError as exc:
        return LineConfig(), 60.0, f"LineConfig() defaults, tick 60 s (environments.scenario not importable: {exc})"
    if not path.is_file():
        return LineConfig(), 60.0, f"LineConfig() defaults, tick 60 s ({path} does not exist)"
    scenario = load_scenario(path)
    return scenario.line, float(scenario.tick_s), f"{path} (tick {scenario.tick_s:g} s)"


# ------------------------------------------------------------------------------------------------ stats
@dataclass
class WindowStats:
    """What one run measured over its post-warm-up window."""

    throughput_per_hour: float  # good parts shipped per hour
    wip_mean: float  # time-average parts in the line
    scrap_rate: float  # scrapped / released, in the window
    lead_time_mean_min: float  # release to exit, good parts shipped in the window
    lost_release_rate: float  # lost release attempts / attempts, in the window
    wall_s: float = 0.0  # wall time of the whole run (construction, warm-up and window)
    books: dict = field(default_factory=dict)  # raw window counters, for identity checks


def _window(before: dict, after: dict, window_min: float, wall_s: float) -> WindowStats:
    d = {k: after[k] - before[k] for k in after}
    attempts = d["released"] + d["lost_releases"]
    return WindowStats(
        throughput_per_hour=d["shipped_good"] / (window_min / 60.0),
        wip_mean=d["wip_area"] / window_min,
        scrap_rate=d["scrapped"] / d["released"] if d["released"] else 0.0,
        lead_time_mean_min=d["lead_sum_min"] / d["shipped_good"] if d["shipped_good"] else 0.0,
        lost_release_rate=d["lost_releases"] / attempts if attempts else 0.0,
        wall_s=wall_s,
        books=d,
    )


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile (scipy if present, else a table interpolated in 1/df)."""
    try:
        from scipy.stats import t  # type: ignore[import-not-found]

        return float(t.ppf(0.975, df))
    except ImportError:
        pass
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
             18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
             26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
    if df < 1:
        return math.nan
    if df in table:
        return table[df]
    keys = sorted(table)
    if df > keys[-1]:
        lo, hi, x_lo, x_hi = keys[-1], math.inf, 1 / keys[-1], 0.0
        y_lo, y_hi = table[lo], 1.960
    else:
        lo = max(k for k in keys if k < df)
        hi = min(k for k in keys if k > df)
        x_lo, x_hi, y_lo, y_hi = 1 / lo, 1 / hi, table[lo], table[hi]
    return y_lo + (1 / df - x_lo) * (y_hi - y_lo) / (x_hi - x_lo)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t confidence interval."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan
    return m, t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


# ------------------------------------------------------------------------------------------ SimPy model
class SimPyLine:
    """The serial line as SimPy processes (see the module docstring). Time in minutes."""

    def __init__(self, config: LineConfig, seed: int, release_rate_per_h: float, speeds: list[float] | None = None,
                 purity: float = 1.0):
        cfg = self.config = config
        n = cfg.n_stations
        self.env = simpy.Environment()
        self.rng = random.Random(f"simpy-line-{seed}")  # its own stream: no sample path shared with LineSim
        speeds = [1.0] * n if speeds is None else list(speeds)
        self.speeds = [min(max(float(s), cfg.speed_min), cfg.speed_max) for s in speeds]
        self.rate = min(max(float(release_rate_per_h), 0.0), cfg.max_release_per_h)
        self.purity = purity
        self.stores = [simpy.Store(self.env, capacity=s.buffer_capacity) for s in cfg.stations]
        self.released = self.lost_releases = self.shipped = self.shipped_good = self.scrapped = self.reworked = 0
        self.wip = 0
        self.wip_area = 0.0
        self._t_last = 0.0
        self.lead_sum_min = 0.0
        for i in range(n):
            self.env.process(self._station(i))
        if self.rate > 0:
            self.env.process(self._releaser())

    def _wip_change(self, delta: int) -> None:
        now = self.env.now
        self.wip_area += self.wip * (now - self._t_last)
        self._t_last = now
        self.wip += delta

    def _releaser(self):
        env, store, cfg = self.env, self.stores[0], self.config
        spacing_min = 60.0 / self.rate
        purity_hazard = cfg.purity_defect_gain * max(0.0, cfg.purity_reference - self.purity)
        while True:
            yield env.timeout(spacing_min)
            if len(store.items) < store.capacity and not store.put_queue:
                self._wip_change(+1)
                self.released += 1
                store.put([env.now, purity_hazard])  # part = [release time min, defect hazard]
            else:
                self.lost_releases += 1

    def _station(self, i: int):
        cfg, env, rng = self.config, self.env, self.rng
        st = cfg.stations[i]
        timeout, get = env.timeout, self.stores[i].get
        put = self.stores[i + 1].put if i + 1 < cfg.n_stations else None
        speed = self.speeds[i]
        mean_min = st.mean_process_min / speed
        shape = 1.0 / (st.process_cv * st.process_cv)
        scale = mean_min / shape  # gamma(shape, scale): mean = mean_min, CV = process_cv
        hazard_gain = cfg.speed_defect_gain * max(0.0, speed - 1.0)
        fails = st.mttr_h > 0
        mtbf_min, mttr_min = st.mtbf_h * 60.0, st.mttr_h * 60.0
        ttf = rng.expovariate(1.0 / mtbf_min) if fails else math.inf  # remaining working time to failure
        gamma, expo = rng.gammavariate, rng.expovariate
        while True:
            part = yield get()
            part[1] += hazard_gain
            work = gamma(shape, scale)
            while ttf <= work:  # fails during this part: work up to the failure, get repaired, go on
                yield timeout(ttf)
                yield timeout(expo(1.0 / mttr_min))
                work -= ttf
                ttf = expo(1.0 / mtbf_min)
            yield timeout(work)
            ttf -= work
            if put is not None:
                yield put(part)  # blocking after service
            else:
                self._inspect(part)

    def _inspect(self, part: list) -> None:
        cfg, rng = self.config, self.rng
        defective = rng.random() < 1.0 - math.exp(-(cfg.base_defect_hazard + part[1]))
        if rng.random() >= (cfg.detection_rate if defective else cfg.false_alarm_rate):
            self._wip_change(-1)
            self.shipped += 1
            if not defective:
                self.shipped_good += 1
                self.lead_sum_min += self.env.now - part[0]
        elif rng.random() < cfg.rework_fraction:
            self.reworked += 1
            part[1] = 0.0  # rework removes what went wrong
            self.stores[0].put(part)  # waits in store 0's put queue, ahead of new releases
        else:
            self._wip_change(-1)
            self.scrapped += 1

    def books(self) -> dict:
        self._wip_change(0)
        return {"released": self.released, "lost_releases": self.lost_releases, "shipped_good": self.shipped_good,
                "scrapped": self.scrapped, "wip_area": self.wip_area, "lead_sum_min": self.lead_sum_min}


def simpy_run(config: LineConfig, seed: int, release_rate_per_h: float, speeds: list[float] | None = None,
              warmup_h: float = 1.0, hours: float = 8.0) -> WindowStats:
    """One SimPy run: warm up, then measure ``hours``."""
    t0 = time.perf_counter()
    line = SimPyLine(config, seed, release_rate_per_h, speeds)
    line.env.run(until=warmup_h * 60.0)
    before = line.books()
    line.env.run(until=(warmup_h + hours) * 60.0)
    after = line.books()
    return _window(before, after, hours * 60.0, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ LineSim
def _linesim_books(sim: LineSim) -> dict:
    return {"released": sim.released, "lost_releases": sim.lost_releases, "shipped_good": sim.shipped_good,
            "scrapped": sim.scrapped, "wip_area": sim.wip_area, "lead_sum_min": sim.lead_time_sum_min}


def linesim_run(config: LineConfig, seed: int, release_rate_per_h: float, speeds: list[float] | None = None,
                warmup_h: float = 1.0, hours: float = 8.0, dt_s: float = 60.0, mode: str = "step") -> WindowStats:
    """One LineSim run: ``mode="step"`` advances in plant ticks of ``dt_s``, ``"advance"`` in one call each."""
    t0 = time.perf_counter()
    speeds = [1.0] * config.n_stations if speeds is None else list(speeds)
    sim = LineSim(config, np.random.default_rng(seed), dt_s=dt_s)
    sim.purity = 1.0
    if mode == "step":
        n_warm, n_window = round(warmup_h * 3600.0 / dt_s), round(hours * 3600.0 / dt_s)
        assert abs(n_warm * dt_s - warmup_h * 3600.0) < 1e-6 and abs(n_window * dt_s - hours * 3600.0) < 1e-6, \
            f"warm-up {warmup_h} h and window {hours} h must be whole ticks of {dt_s} s"
        step = sim.step
        for _ in range(n_warm):
            step(release_rate_per_h, speeds)
        before = _linesim_books(sim)
        for _ in range(n_window):
            step(release_rate_per_h, speeds)
    elif mode == "advance":
        sim.set_controls(release_rate_per_h, speeds)
        sim.advance(warmup_h * 60.0)
        before = _linesim_books(sim)
        sim.advance((warmup_h + hours) * 60.0)
    else:
        raise ValueError(f"mode {mode!r} must be 'step' or 'advance'")
    after = _linesim_books(sim)
    assert sim.released == sim.shipped + sim.scrapped + sim.wip, "LineSim books do not balance"
    return _window(before, after, hours * 60.0, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- compare
METRICS = [("throughput_per_hour", "throughput (good/h)"), ("wip_mean", "WIP mean (parts)"),
           ("scrap_rate", "scrap rate"), ("lead_time_mean_min", "lead time (min)"),
           ("lost_release_rate", "lost releases (share)")]


@dataclass
class Comparison:
    source: str
    release_rate_per_h: float
    bottleneck_rate_per_h: float
    seeds: int
    hours: float
    warmup_h: float
    tick_s: float
    linesim: list[WindowStats]
    linesim_advance: list[WindowStats]
    simpy: list[WindowStats]

    def summary(self, metric: str) -> dict:
        a = mean_ci([getattr(s, metric) for s in self.linesim])
        b = mean_ci([getattr(s, metric) for s in self.simpy])
        rel = (a[0] - b[0]) / b[0] if b[0] else math.nan
        overlap = abs(a[0] - b[0]) <= a[1] + b[1]
        return {"linesim": a, "simpy": b, "rel_diff": rel, "ci_overlap": overlap}

    def sim_hours_per_s(self) -> dict[str, float]:
        h = self.seeds * (self.hours + self.warmup_h)
        return {"LineSim.step": h / sum(s.wall_s for s in self.linesim),
                "LineSim.advance": h / sum(s.wall_s for s in self.linesim_advance),
                "SimPy": h / sum(s.wall_s for s in self.simpy)}

    @property
    def step_equals_advance(self) -> bool:
        """Same seed, ticks vs one advance(): equal counters (the WIP area only up to float summation order)."""
        return all(a.books.keys() == b.books.keys() and all(
            math.isclose(a.books[k], b.books[k], rel_tol=1e-9) if isinstance(a.books[k], float) else
            a.books[k] == b.books[k] for k in a.books) for a, b in zip(self.linesim, self.linesim_advance))


def compare(config: LineConfig, seeds: int = 30, hours: float = 8.0, warmup_h: float = 1.0, tick_s: float = 60.0,
            release_rate_per_h: float | None = None, speed: float = 1.0, source: str = "") -> Comparison:
    """Run both models on ``seeds`` seeds (interleaved, so the timings are side by side)."""
    rate = 0.9 * config.bottleneck_rate_per_h if release_rate_per_h is None else release_rate_per_h
    speeds = [speed] * config.n_stations
    # LineSim's event loop is compiled (numba): load it before the clock runs. Compile and load times are
    # one-off costs, not simulation speed.
    linesim_run(config, 0, rate, speeds, 0.0, 0.1, 360.0, "step")
    ls, la, sp = [], [], []
    for seed in range(seeds):
        ls.append(linesim_run(config, seed, rate, speeds, warmup_h, hours, tick_s, "step"))
        la.append(linesim_run(config, seed, rate, speeds, warmup_h, hours, tick_s, "advance"))
        sp.append(simpy_run(config, seed, rate, speeds, warmup_h, hours))
    return Comparison(source, rate, config.bottleneck_rate_per_h, seeds, hours, warmup_h, tick_s, ls, la, sp)


# ----------------------------------------------------------------------------------------------- report
def _fmt(m: float, h: float, metric: str) -> str:
    digits = 4 if metric in ("scrap_rate", "lost_release_rate") else 2
    return f"{m:.{digits}f} ± {h:.{digits}f}"


def markdown(c: Comparison) -> str:
    speed = c.sim_hours_per_s()
    lines = [f"Line: {c.source}; release {c.release_rate_per_h:.1f} parts/h "
             f"({c.release_rate_per_h / c.bottleneck_rate_per_h:.0%} of bottleneck {c.bottleneck_rate_per_h:.1f}/h), "
             f"speeds 1.0; {c.seeds} seeds x {c.hours:g} h after {c.warmup_h:g} h warm-up; mean ± 95% CI.", "",
             "| metric | LineSim | SimPy | rel. diff | CIs overlap |", "|---|---|---|---|---|"]
    for metric, label in METRICS:
        s = c.summary(metric)
        lines.append(f"| {label} | {_fmt(*s['linesim'], metric)} | {_fmt(*s['simpy'], metric)} | "
                     f"{s['rel_diff']:+.2%} | {'yes' if s['ci_overlap'] else 'no'} |")
    tp = c.summary("throughput_per_hour")
    lines += ["", f"Throughput agreement within 3%: {'yes' if abs(tp['rel_diff']) <= 0.03 else 'no'} "
                  f"({tp['rel_diff']:+.2%}); CIs overlap: {'yes' if tp['ci_overlap'] else 'no'}.", "",
              "| model | simulated h / wall s | vs SimPy |", "|---|---|---|"]
    for name, v in speed.items():
        lines.append(f"| {name} | {v:,.0f} | {v / speed['SimPy']:.1f}x |")
    lines.append(f"\nLineSim.step and LineSim.advance give identical books per seed: "
                 f"{'yes' if c.step_equals_advance else 'NO'}.")
    return "\n".join(lines)


def print_rich(c: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    console.print(f"[bold]Line[/]: {c.source}")
    console.print(f"release {c.release_rate_per_h:.1f} parts/h ({c.release_rate_per_h / c.bottleneck_rate_per_h:.0%} "
                  f"of bottleneck {c.bottleneck_rate_per_h:.1f}/h), {c.seeds} seeds x {c.hours:g} h after "
                  f"{c.warmup_h:g} h warm-up, tick {c.tick_s:g} s")
    t = Table(title="LineSim vs SimPy (mean ± 95% CI)")
    for col in ("metric", "LineSim", "SimPy", "rel. diff", "CIs overlap"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for metric, label in METRICS:
        s = c.summary(metric)
        t.add_row(label, _fmt(*s["linesim"], metric), _fmt(*s["simpy"], metric), f"{s['rel_diff']:+.2%}",
                  "yes" if s["ci_overlap"] else "[red]no[/]")
    console.print(t)
    tp = c.summary("throughput_per_hour")
    ok = abs(tp["rel_diff"]) <= 0.03 and tp["ci_overlap"]
    console.print(f"Throughput: within 3% {'yes' if abs(tp['rel_diff']) <= 0.03 else 'no'} "
                  f"({tp['rel_diff']:+.2%}), CIs overlap {'yes' if tp['ci_overlap'] else 'no'} -> "
                  + ("[green]AGREE[/]" if ok else "[red]DISAGREE[/]"))
    speed = c.sim_hours_per_s()
    t2 = Table(title=f"Speed ({c.seeds} runs x {c.hours + c.warmup_h:g} simulated h each)")
    for col in ("model", "simulated h / wall s", "vs SimPy", "target"):
        t2.add_column(col, justify="left" if col == "model" else "right")
    for name, v in speed.items():
        ratio = v / speed["SimPy"]
        target = "" if name == "SimPy" else ("[green]>= 20x met[/]" if ratio >= 20 else "[red]< 20x[/]")
        t2.add_row(name, f"{v:,.0f}", f"{ratio:.1f}x", target)
    console.print(t2)
    console.print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other processes slow every number)")
    console.print(f"LineSim.step vs LineSim.advance, same seed: identical books "
                  f"{'yes' if c.step_equals_advance else '[red]NO[/]'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=30, help="number of seeds (default 30)")
    p.add_argument("--hours", type=float, default=8.0, help="measured window, simulated hours (default 8)")
    p.add_argument("--warmup-hours", type=float, default=1.0, help="warm-up excluded from statistics (default 1)")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario YAML (default smart_factory)")
    p.add_argument("--release-rate", type=float, default=None,
                   help="release rate, parts/h (default 90%% of the bottleneck rate)")
    p.add_argument("--speed", type=float, default=1.0, help="speed factor of every station (default 1.0)")
    p.add_argument("--markdown-out", default=None, help="append a dated markdown section to this file")
    args = p.parse_args(argv)
    if args.seeds < 2 or args.hours <= 0 or args.warmup_hours < 0:
        print("--seeds must be >= 2, --hours > 0 and --warmup-hours >= 0", file=sys.stderr)
        return 2
    config, tick_s, source = line_config_for(args.scenario)
    c = compare(config, args.seeds, args.hours, args.warmup_hours, tick_s, args.release_rate, args.speed, source)
    print_rich(c)
    md = markdown(c)
    print("\n" + md)
    if args.markdown_out:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.markdown_out, "a", encoding="utf-8") as f:
            f.write(f"\n## LineSim vs SimPy, {stamp}\n\n{md}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
