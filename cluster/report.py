"""The run directory (design notes §6): resolved scenario, kpis.json, report.md and plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cluster.run import RunResult, SeedRun, kpis_json  # noqa: E402
from environments.kpis import KPIS  # noqa: E402
from environments.parts import DEFECT_TYPES  # noqa: E402


def write_run_dir(result: RunResult) -> Path:
    run_dir = result.run_dir
    assert run_dir is not None, "result has no run_dir"
    (run_dir / "plots").mkdir(parents=True, exist_ok=True)
    (run_dir / "kpis.json").write_text(kpis_json(result))
    first = result.runs[0]
    plots = {
        "line": plot_line(first, run_dir / "plots" / "line.png"),
        "reactor": plot_reactor(first, result, run_dir / "plots" / "reactor.png"),
        "routes": plot_routes(first, run_dir / "plots" / "routes.png"),
        "inspection": plot_inspection(first, run_dir / "plots" / "inspection.png"),
    }
    (run_dir / "report.md").write_text(report_markdown(result, plots))
    return run_dir


def kpi_rows(result: RunResult) -> list[tuple[str, str, str]]:
    """(KPI, value, definition) rows: the design's KPIs first, with a 95% CI when there are several seeds."""
    rows = []
    for name, kpi in KPIS.items():
        est = result.summary.get(name)
        if est is None:
            continue
        value = f"{est.mean:.4g}"
        if est.n > 1:
            value += f" ± {est.half_width:.2g}"
        rows.append((name, f"{value} {kpi.unit}".strip(), kpi.definition))
    return rows


def report_markdown(result: RunResult, plots: dict[str, Path]) -> str:
    sc = result.scenario
    seeds = ", ".join(str(r.seed) for r in result.runs)
    lines = [
        f"# Run report: {sc.name}",
        "",
        sc.description or "",
        "",
        f"- Seeds: {seeds} ({len(result.runs)} run{'s' if len(result.runs) > 1 else ''}; ± is the 95% CI half-width)",
        f"- Simulated: {sc.duration_h:g} h in ticks of {sc.tick_s:g} s",
        f"- Wall time per run: {np.mean([r.wall_s for r in result.runs]):.1f} s",
        "",
        "## Policies",
        "",
        "| agent | policy |",
        "|---|---|",
    ]
    for agent in ("process", "pacing", "dispatch", "inspection", "voice"):
        lines.append(f"| {agent} | {getattr(sc.agents, agent).policy} |")
    lines += ["", "## Coordination", "",
              "| seed | deadline misses | restarts | conflicts | vetoes | clamps | safe defaults | commands ok / refused"
              " | tick p50 / p99 (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result.runs:
        k, t = r.kpis, r.timing
        lines.append(f"| {r.seed} | {k.get('deadline_misses', 0):g} | {t.get('agent_restarts', 0):g} | "
                     f"{k.get('conflicts', 0):g} | {k.get('vetoes', 0):g} | {k.get('clamps', 0):g} | "
                     f"{k.get('safe_defaults', 0):g} | {k.get('commands_accepted', 0):g} / "
                     f"{k.get('commands_rejected', 0):g} | {t.get('tick_latency_p50_ms', 0):.1f} / "
                     f"{t.get('tick_latency_p99_ms', 0):.1f} |")
    lines += ["", f"Agents ran {'as Ray actors' if result.mode == 'ray' else 'in one process'}.", ""]
    lines += operator_markdown(result.runs[0])
    lines += negotiation_markdown(result.runs[0])
    lines += ["## KPIs", "", "| KPI | value | definition |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {d} |" for n, v, d in kpi_rows(result)]
    lines += ["", "## Plots", ""]
    for title, path in plots.items():
        lines.append(f"![{title}](plots/{path.name})")
    return "\n".join(lines) + "\n"


def operator_markdown(run: SeedRun) -> list[str]:
    """The operator's voice events of one seed and what came of each (commands and searches)."""
    if not run.operator_log:
        return []
    lines = [f"## Operator (seed {run.seed})", "", "| minute | said | outcome |", "|---|---|---|"]
    for row in run.operator_log:
        minute = f"{row['tick'] * (run.trace[1]['time_min'] - run.trace[0]['time_min']):.0f}" if len(run.trace) > 1 else "-"
        said = []
        if row.get("audio"):
            heard = f"\"{row['heard']}\"" if row.get("heard") else "(nothing heard)"
            said.append(f"{Path(row['audio']).name}: {heard} -> {row.get('intent', 'none')} {row.get('slots') or ''}")
        if row.get("command"):
            said.append(f"{row['command']['unit']}: {row['command']['settings']}")
        if row.get("query"):
            said.append(f"find \"{row['query']}\"")
        outcome = [row.get("outcome", "")] if row.get("command") or row.get("audio") else []
        if row.get("applied") and row.get("audio"):
            outcome.append(f"command/{row['applied']['unit']} {row['applied']['settings']}")
        if row.get("answer") is not None:
            found = row["answer"]["results"]
            parts = ", ".join(f"{r['part_id']} ({r['verdict']}, {r['score']:.2f})" for r in found[:5])
            outcome.append(f"{len(found)} parts of {row['answer'].get('history_size', 0)} inspected: {parts}"
                           + (" ..." if len(found) > 5 else "") if found else row["answer"].get("reason", "no parts"))
        lines.append(f"| {minute} | {'; '.join(said)} | {'; '.join(o for o in outcome if o)} |")
    return lines + [""]


def negotiation_markdown(run: SeedRun) -> list[str]:
    """The defect alarms of one seed: who bid what to remedy each, who won, and what came of it."""
    lines = [f"## Defect alarms and negotiations (seed {run.seed})", ""]
    if not run.negotiation_log:
        return lines + ["No defect alarm was raised.", ""]
    lines += ["| tick | reject rate (normal) | bids: remedy, plant's loss per hour with it | winner | outcome |",
              "|---|---|---|---|---|"]
    for row in run.negotiation_log:
        bids = "; ".join(f"{unit}: {b['remedy']}, {b['cost']:.3g}/h" for unit, b in sorted(row["bids"].items())) \
            or "none"
        alarm = row.get("alarm", {})
        rates = f"{alarm.get('reject_rate', 0):.2f} ({alarm.get('normal_rate', 0):.2f})"
        lines.append(f"| {row['tick']} | {rates} | {bids} | {row['winner'] or '-'} | {row['outcome']} |")
    return lines + [""]


def _times_h(run: SeedRun) -> np.ndarray:
    return np.array([t["time_min"] for t in run.trace]) / 60.0


def plot_line(run: SeedRun, path: Path) -> Path:
    t = _times_h(run)
    buffers = np.array([tr["buffer_levels"] for tr in run.trace])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for i in range(buffers.shape[1]):
        ax1.step(t, buffers[:, i], where="post", lw=0.8, label=f"buffer {i}")
    ax1.set_ylabel("parts in buffer")
    ax1.legend(loc="upper right", fontsize=7, ncol=4)
    ax1.set_title("Line: buffer levels and WIP")
    ax2.step(t, [tr["wip"] for tr in run.trace], where="post", color="k", lw=1, label="WIP")
    down = np.array([tr["stations_down"] for tr in run.trace]).any(axis=1)
    ax2.fill_between(t, 0, 1, where=down, transform=ax2.get_xaxis_transform(), color="tab:red", alpha=0.15,
                     label="a station down")
    ax2.set_ylabel("parts in line")
    ax2.set_xlabel("time (h)")
    ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reactor(run: SeedRun, result: RunResult, path: Path) -> Path:
    cfg = result.scenario.process
    t = _times_h(run)
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    ax = axes[0]
    ax.plot(t, [tr["reactor_temp_c"] for tr in run.trace], lw=1, label="reactor temperature")
    ax.plot(t, [tr["jacket_setpoint_c"] for tr in run.trace], lw=0.8, ls="--", label="jacket setpoint")
    ax.axhline(cfg.temperature_max_c, color="tab:red", lw=1, label="safe limits")
    ax.axhline(cfg.temperature_min_c, color="tab:red", lw=1)
    ax.set_ylabel("°C")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title("Process unit: trajectory against its safe limits")
    ax = axes[1]
    ax.plot(t, [tr["pressure_bar"] for tr in run.trace], lw=1, label="pressure")
    ax.plot(t, [tr["pressure_setpoint_bar"] for tr in run.trace], lw=0.8, ls="--", label="setpoint")
    ax.axhline(cfg.pressure_max_bar, color="tab:red", lw=1, label="safe limit")
    ax.set_ylabel("bar")
    ax.legend(loc="upper right", fontsize=7)
    ax = axes[2]
    ax.plot(t, [tr["purity"] for tr in run.trace], lw=1, color="tab:green")
    ax.axhline(cfg.purity_spec, color="grey", lw=0.8, ls=":", label="purity spec")
    ax.set_ylabel("purity")
    ax.set_xlabel("time (h)")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_routes(run: SeedRun, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 7))
    for (x0, y0), (x1, y1) in run.routes["edges_xy"]:
        ax.plot([x0, x1], [y0, y1], color="0.85", lw=0.6, zorder=1)
    colours = plt.cm.tab10.colors
    for k, r in enumerate(run.routes["vehicles"]):
        colour = colours[k % 10]
        if r["path_xy"]:
            xy = np.asarray(r["path_xy"])
            ax.plot(xy[:, 0], xy[:, 1], color=colour, lw=1.4, alpha=0.8, zorder=2,
                    label=f"vehicle {r['vehicle']} ({r['distance_km']:.0f} km)")
        if r["stops_xy"]:
            stops = np.asarray(r["stops_xy"])
            ax.scatter(stops[:, 0], stops[:, 1], s=14, color=colour, zorder=3)
    for k, (x, y) in enumerate(run.routes["depots_xy"]):
        ax.scatter([x], [y], marker="s", s=90, color="k", zorder=4, label="depot" if k == 0 else None)
    ax.set_aspect("equal")
    ax.set_xlabel("km")
    ax.set_ylabel("km")
    ax.set_title("Fleet: routes driven on the road network")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_inspection(run: SeedRun, path: Path) -> Path:
    matrix = np.zeros((len(DEFECT_TYPES), 2), dtype=int)
    for true_type, rejected in run.inspections:
        matrix[true_type, int(rejected)] += 1
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    for i in range(matrix.shape[0]):
        for j in range(2):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks([0, 1], ["passed", "rejected"])
    ax.set_yticks(range(len(DEFECT_TYPES)), DEFECT_TYPES)
    ax.set_title("Inspection: true type against verdict")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
