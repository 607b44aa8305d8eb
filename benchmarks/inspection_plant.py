"""The InspectionAgent in the whole Plant: defect CNN against the plain-threshold baseline, over seeds.

Runs the scenario (default: the main job) once per seed and inspection policy as a study on Ray, and
prints each inspection KPI's mean and 95% confidence interval, plus the paired difference per seed
(the same seed gives both policies the same plant, the same parts and the same images).

Usage::

    .venv/bin/python benchmarks/inspection_plant.py [--seeds 10] [--scenario scenarios/smart_factory.yaml]
        [--policies threshold,cnn] [--image-shift S] [--commission none,0.01]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cluster.orchestrator import ensure_ray  # noqa: E402
from cluster.study import run_study  # noqa: E402
from environments.kpis import mean_ci95  # noqa: E402

KPIS = ("defect_escape_rate", "false_alarm_rate", "throughput_per_hour", "scrap_rate")


def compare_in_plant(scenario: Path, seeds: int, sets: dict[str, list[object]], kpis: tuple[str, ...],
                     what: str) -> None:
    """Run a study (every configuration on the same seeds) and print each KPI's mean ± 95% CI, with the
    paired difference per seed when there are two configurations."""
    ensure_ray(None)
    result = run_study(scenario, seeds, sets)
    console = Console(width=170)
    table = Table(title=f"{result.scenario}: {what} in the Plant, {len(result.seeds)} seeds, mean ± 95% CI "
                        f"({result.wall_s:.0f} s)")
    table.add_column("KPI")
    for k in range(len(result.configurations)):
        table.add_column(result.label(k), justify="right")
    for k in range(1, len(result.configurations)):
        table.add_column(f"paired diff ({result.label(k)} - {result.label(0)})", justify="right")
    for name in kpis:
        cells = [f"{s[name].mean:.4f} ± {s[name].half_width:.4f}" if name in s else "-" for s in result.summaries]
        diffs = []
        by_seed = [{r["seed"]: r[name] for r in result.per_run if r["configuration"] == k}
                   for k in range(len(result.configurations))]
        for k in range(1, len(result.configurations)):
            common = sorted(set(by_seed[0]) & set(by_seed[k]))
            e = mean_ci95(np.array([by_seed[k][s] - by_seed[0][s] for s in common])) if len(common) >= 2 else None
            diffs.append(f"{e.mean:+.4f} ± {e.half_width:.4f}" if e else "")
        table.add_row(name, *cells, *diffs)
    console.print(table)
    for f in result.failures:
        console.print(f"failed: {f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "smart_factory.yaml")
    ap.add_argument("--policies", default="threshold,cnn")
    ap.add_argument("--image-shift", type=float, default=None, help="Override inspection.image_shift.")
    ap.add_argument("--commission", default=None,
                    help="agents.inspection.commission_false_alarm values, comma-separated, 'none' for the stored "
                         "threshold (e.g. none,0.01: each policy with and without commissioning at the station)")
    args = ap.parse_args()
    sets: dict[str, list[object]] = {"agents.inspection.policy": args.policies.split(",")}
    if args.image_shift is not None:
        sets["inspection.image_shift"] = [args.image_shift]
    if args.commission is not None:
        sets["agents.inspection.commission_false_alarm"] = [None if v.strip().lower() == "none" else float(v)
                                                             for v in args.commission.split(",")]
    compare_in_plant(args.scenario, args.seeds, sets, KPIS, "inspection")


if __name__ == "__main__":
    main()
