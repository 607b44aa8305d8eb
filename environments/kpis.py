"""The plant's KPIs: one definition each, used by every report, study and benchmark (design notes §3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class KPI:
    name: str
    unit: str
    higher_is_better: bool
    definition: str


KPIS: dict[str, KPI] = {k.name: k for k in [
    KPI("throughput_per_hour", "parts/h", True, "good parts leaving the line per simulated hour"),
    KPI("oee", "", True, "availability x performance x quality"),
    KPI("wip_mean", "parts", False, "time-average parts inside the line"),
    KPI("lead_time_mean_min", "min", False, "release to exit, good parts"),
    KPI("scrap_rate", "", False, "scrapped / released"),
    KPI("defect_escape_rate", "", False, "defective parts passed / defective parts inspected"),
    KPI("false_alarm_rate", "", False, "good parts rejected / good parts inspected"),
    KPI("purity_mean", "", True, "mean product purity of the process unit"),
    KPI("energy_per_unit_kwh", "kWh", False, "process plus line energy / good parts"),
    KPI("constraint_violations", "ticks", False, "ticks with a process variable outside its safe limits"),
    KPI("distance_km", "km", False, "fleet distance driven"),
    KPI("on_time_rate", "", True, "orders delivered inside their window / orders delivered"),
    KPI("vehicle_utilization", "", True, "busy vehicle-time / available vehicle-time"),
]}


@dataclass(frozen=True)
class Estimate:
    """Mean of a KPI over seeded runs with a two-sided 95% Student-t confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95_low": self.low, "ci95_high": self.high, "n": self.n}


def mean_ci95(values) -> Estimate:
    """Mean and 95% confidence interval; with one value the interval is the value itself."""
    x = np.asarray(list(values), dtype=float)
    assert x.size > 0, "mean_ci95 needs at least one value"
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, mean, mean, 1)
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Estimate(mean, mean - half, mean + half, int(x.size))


def summarise(per_run: list[dict[str, float]]) -> dict[str, Estimate]:
    """Per-KPI estimates over runs, for every key all runs share."""
    keys = [k for k in per_run[0] if all(k in r for r in per_run)]
    return {k: mean_ci95(r[k] for r in per_run) for k in keys}
