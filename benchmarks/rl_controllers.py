"""The learned process and pacing controllers against the classical ones, on held-out seeds.

For each scenario (the default plant, and the harder one the controllers were not trained on), each
controller runs one 8-hour episode per held-out seed (``planning.train_rl.HELD_OUT_SEEDS``, never used in
training or model selection) on the unit's own simulator, behind the same safety shield as in the
plant. The same seed gives every controller the same disturbances and breakdowns, so differences are
paired by seed. Printed: each KPI's mean and 95% t interval, and the bars of issue 7.

* Process: fixed setpoints, the tuned PID (``planning.baselines.pid``) and the SAC policy.
* Pacing: push (95% of the bottleneck rate), CONWIP at the scenario's WIP cap, and the SAC policy.
  "At equal WIP" compares with CONWIP run at every cap from 4 to 16: per seed, CONWIP's throughput is
  interpolated (linearly in mean WIP) at the SAC policy's mean WIP of that seed.

Usage::

    .venv/bin/python benchmarks/rl_controllers.py [--seeds 20] [--process planning/policies/process_sac.zip]
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

from environments.kpis import mean_ci95  # noqa: E402
from environments.scenario import load_scenario  # noqa: E402
from planning.baselines.pacing import ConwipRelease, PushRelease  # noqa: E402
from planning.baselines.pid import FixedSetpoints, PIDController  # noqa: E402
from planning.evaluation import evaluate  # noqa: E402
from planning.rl_controller import SHIPPED_POLICIES, RLController  # noqa: E402
from planning.train_rl import HELD_OUT_SEEDS  # noqa: E402

SCENARIOS = (ROOT / "scenarios" / "smart_factory.yaml", ROOT / "scenarios" / "smart_factory_harder.yaml")
PROCESS_KPIS = ("purity_mean", "energy_per_unit_kwh", "constraint_violations", "episode_reward",
                "production_total_kg", "shield_interventions")
PACING_KPIS = ("throughput_per_hour", "wip_mean", "lead_time_mean_min", "scrap_rate", "episode_reward",
               "shield_interventions")


def ci(values, fmt: str = "{:.4g}") -> str:
    e = mean_ci95(values)
    return f"{fmt.format(e.mean)} ± {fmt.format(e.half_width)}"


def paired_rel(a, b) -> str:
    """Mean relative change of b against a (paired by seed), with its 95% interval."""
    return ci((np.asarray(b) - np.asarray(a)) / np.asarray(a), "{:+.1%}")


def table(title: str, runs: dict[str, list[dict]], kpis) -> None:
    print(f"\n### {title}\n")
    print("| controller | " + " | ".join(kpis) + " |")
    print("|---|" + "---:|" * len(kpis))
    for name, rows in runs.items():
        print(f"| {name} | " + " | ".join(ci([r[k] for r in rows]) for k in kpis) + " |")


def column(rows, key):
    return [r[key] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=len(HELD_OUT_SEEDS))
    ap.add_argument("--process", default=str(SHIPPED_POLICIES["process"]))
    ap.add_argument("--pacing", default=str(SHIPPED_POLICIES["pacing"]))
    args = ap.parse_args()
    seeds = HELD_OUT_SEEDS[:args.seeds] if args.seeds <= len(HELD_OUT_SEEDS) else \
        tuple(range(HELD_OUT_SEEDS[0], HELD_OUT_SEEDS[0] + args.seeds))
    print(f"{len(seeds)} held-out seeds {seeds[0]}..{seeds[-1]}, {time.strftime('%Y-%m-%d')}")
    for path in SCENARIOS:
        sc = load_scenario(path)
        t0 = time.perf_counter()
        process = {
            "fixed setpoints": evaluate("process", sc, FixedSetpoints(sc.process), seeds),
            "PID (tuned)": evaluate("process", sc, PIDController(sc.process, dt_min=sc.tick_s / 60.0), seeds),
            "SAC (shipped)": evaluate("process", sc, RLController.load(args.process), seeds),
        }
        table(f"{sc.name}: process unit ({time.perf_counter() - t0:.0f} s)", process, PROCESS_KPIS)
        fixed, pid, rl = process.values()
        print(f"\n- purity, SAC vs fixed: {paired_rel(column(fixed, 'purity_mean'), column(rl, 'purity_mean'))} "
              f"(bar >= +5%)")
        print(f"- energy per unit, SAC vs fixed: "
              f"{paired_rel(column(fixed, 'energy_per_unit_kwh'), column(rl, 'energy_per_unit_kwh'))} (bar <= -10%)")
        print(f"- constraint violations, SAC: {sum(column(rl, 'constraint_violations')):.0f} (bar 0)")
        print(f"- reward, SAC vs PID: {paired_rel(column(pid, 'episode_reward'), column(rl, 'episode_reward'))} "
              f"(bar >= 0)")

        t0 = time.perf_counter()
        cap = sc.agents.pacing.wip_cap
        pacing = {
            "push (95%)": evaluate("pacing", sc, PushRelease(sc.line, 0.95), seeds),
            f"CONWIP (cap {cap})": evaluate("pacing", sc, ConwipRelease(sc.line, cap, sc.tick_s), seeds),
            "SAC (shipped)": evaluate("pacing", sc, RLController.load(args.pacing), seeds),
        }
        table(f"{sc.name}: line pacing ({time.perf_counter() - t0:.0f} s)", pacing, PACING_KPIS)
        _, conwip, rl = pacing.values()
        print(f"\n- throughput, SAC vs CONWIP (cap {cap}): "
              f"{paired_rel(column(conwip, 'throughput_per_hour'), column(rl, 'throughput_per_hour'))}")
        print(f"- mean WIP, SAC vs CONWIP (cap {cap}): {paired_rel(column(conwip, 'wip_mean'), column(rl, 'wip_mean'))}")
        sweep = {c: evaluate("pacing", sc, ConwipRelease(sc.line, c, sc.tick_s), seeds) for c in range(4, 17)}
        at_equal_wip = []
        for i, run in enumerate(rl):
            wips = np.array([sweep[c][i]["wip_mean"] for c in sweep])
            ths = np.array([sweep[c][i]["throughput_per_hour"] for c in sweep])
            order = np.argsort(wips)
            at_equal_wip.append(float(np.interp(run["wip_mean"], wips[order], ths[order])))
        print("- CONWIP over caps 4..16, mean over seeds (cap: WIP, throughput): " + ", ".join(
            f"{c}: {np.mean(column(r, 'wip_mean')):.1f}, {np.mean(column(r, 'throughput_per_hour')):.1f}"
            for c, r in sweep.items()))
        print(f"- throughput, SAC vs CONWIP at the SAC's own WIP (interpolated per seed): "
              f"{paired_rel(at_equal_wip, column(rl, 'throughput_per_hour'))} (bar >= +10%; or CONWIP's throughput "
              f"at -20% WIP)")


if __name__ == "__main__":
    main()
