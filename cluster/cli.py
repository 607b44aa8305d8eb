"""The `shopfloor` command. A thin layer over the public functions; exit 0 ok, 2 bad input, 1 internal error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cluster.cli_common import console, err_console, fail_on_bad_input, report_file_error
from cluster.cli_train import train_app
from environments.errors import ShopfloorInputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="AI agents run a simulated factory and its delivery fleet.")
app.add_typer(train_app, name="train")


def parse_set(items: list[str]) -> dict[str, object]:
    """`--set KEY=VALUE` items as scenario overrides (each value read as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ShopfloorInputError(f"--set {item!r}: expected KEY=VALUE, e.g. agents.pacing.policy=push")
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command()
@fail_on_bad_input
def run(
    scenario: Annotated[Path | None, typer.Argument(help="Scenario YAML file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the first run (default: the scenario's).")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, help="Number of seeded runs (default: the scenario's).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<scenario>-<UTC time>).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a field: KEY=VALUE (dotted).")] = [],
    resume: Annotated[Path | None, typer.Option(help="Finish the killed run in this run directory.")] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the agents in this process, without Ray.")] = False,
) -> None:
    """Run the plant of SCENARIO with its agents on Ray; print the KPI table and write the run directory."""
    from environments.scenario import load_scenario

    if resume is None and scenario is None:
        raise ShopfloorInputError("give a SCENARIO file to run, or --resume RUN_DIR to finish a killed run")
    if resume is not None and (scenario is not None or set_ or seed is not None or seeds is not None or out):
        raise ShopfloorInputError("--resume RUN_DIR continues that run as it was; it takes no SCENARIO, --set, "
                                  "--seed, --seeds or --out")
    if resume is None:
        overrides = parse_set(set_)
        if seed is not None:
            overrides["seed"] = seed
        if seeds is not None:
            overrides["seeds"] = seeds
        sc = load_scenario(scenario, overrides)  # bad input fails here, before the heavy imports below
    else:
        from cluster.run import scenario_of_run_dir

        sc = scenario_of_run_dir(resume)

    from cluster.report import kpi_rows
    from cluster.run import resume_scenario, run_scenario

    mode = "local" if local else "ray"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("ticks"), TimeElapsedColumn(), console=err_console, transient=False) as progress:
        task = progress.add_task(f"{sc.name}", total=sc.n_ticks * sc.seeds)
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        if resume is None:
            result = run_scenario(sc, out, on_tick=advance, mode=mode, address=address)
        else:
            result = resume_scenario(resume, on_tick=advance, mode=mode, address=address)
    _print_kpis(result, kpi_rows)
    console.print(f"run directory: {result.run_dir}")


def _print_kpis(result, kpi_rows) -> None:
    table = Table(title=f"{result.scenario.name}: KPIs over {len(result.runs)} seed(s)")
    table.add_column("KPI")
    table.add_column("value", justify="right")
    table.add_column("definition", style="dim")
    for row in kpi_rows(result):
        table.add_row(*row)
    console.print(table)


@app.command()
@fail_on_bad_input
def replay(run_dir: Annotated[Path, typer.Argument(help="A run directory written by `shopfloor run`.")]) -> None:
    """Recompute a run's KPIs from its event logs and check them against its kpis.json."""
    import json

    from cluster.run import replay_run_dir

    replayed = replay_run_dir(run_dir)
    recorded = {}
    if (run_dir / "kpis.json").is_file():
        recorded = {r["seed"]: r for r in json.loads((run_dir / "kpis.json").read_text())["per_seed"]}
    table = Table(title=f"replay of {run_dir}")
    for col in ("seed", "KPIs recomputed", "identical to kpis.json"):
        table.add_column(col)
    all_same = True
    for seed, kpis in replayed.items():
        rec = recorded.get(seed)
        same = rec is not None and all(rec.get(k) == v for k, v in kpis.items())
        all_same &= same
        table.add_row(str(seed), str(len(kpis)), "yes" if same else ("no kpis.json" if rec is None else "NO"))
    console.print(table)
    if not all_same:
        raise typer.Exit(1)


@app.command()
@fail_on_bad_input
def study(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    seeds: Annotated[int, typer.Option(min=1, help="Seeded runs per configuration.")] = 10,
    set_: Annotated[list[str], typer.Option("--set", help="KEY=V1,V2,...: one configuration per value.")] = [],
    workers: Annotated[int | None, typer.Option(min=1, help="Runs at once (default: the cluster's CPUs).")] = None,
    out: Annotated[Path | None, typer.Option(help="Study directory (default runs/study-<scenario>-<UTC time>).")] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
) -> None:
    """Compare configurations over many seeds in parallel on Ray: mean and 95% CI per KPI, study.json, plots."""
    import yaml
    from datetime import datetime, timezone

    from environments.scenario import load_scenario

    sets: dict[str, list[object]] = {}
    for item in set_:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ShopfloorInputError(f"--set {item!r}: expected KEY=V1,V2,... e.g. agents.pacing.policy=push,conwip")
        sets[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    sc = load_scenario(scenario)
    out = out or Path("runs") / f"study-{sc.name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"

    from cluster.orchestrator import ensure_ray
    from cluster.study import configurations, run_study

    ensure_ray(address)
    total = len(configurations(sets)) * seeds
    with Progress(TextColumn("[bold]study"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                  TimeElapsedColumn(), console=err_console) as progress:
        task = progress.add_task("runs", total=total)
        result = run_study(scenario, seeds, sets, workers, out, on_done=lambda n: progress.advance(task, n))
    from environments.kpis import KPIS

    table = Table(title=f"{result.scenario}: {len(result.seeds)} seeds per configuration, mean ± 95% CI")
    table.add_column("KPI")
    for k in range(len(result.configurations)):
        table.add_column(result.label(k), justify="right")
    for name, kpi in KPIS.items():
        cells = []
        for summary in result.summaries:
            e = summary.get(name)
            cells.append(f"{e.mean:.4g} ± {e.half_width:.2g}" if e else "-")
        if any(c != "-" for c in cells):
            table.add_row(name, *cells)
    console.print(table)
    for f in result.failures:
        err_console.print(f"run failed: configuration {result.label(f['configuration'])}, seed {f['seed']}: "
                          f"{f['error']}", markup=False, highlight=False)
    console.print(f"study directory: {out} ({result.wall_s:.1f} s)")
    if result.failures:
        raise typer.Exit(1)


@app.command()
@fail_on_bad_input
def inspect(
    images: Annotated[list[Path], typer.Argument(help="Image files of parts (PNG, JPEG, BMP, TIFF, WebP, ...).")],
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per image, one per line.")] = False,
    weights: Annotated[Path | None, typer.Option(help="Defect CNN checkpoint (default: the shipped one).")] = None,
    clip: Annotated[str | None, typer.Option(help="CLIP: local-dir:PATH or NAME[:TAG] (default: the shipped one).")] = None,
    top: Annotated[int, typer.Option(min=1, max=7, help="CLIP labels to show per image.")] = 3,
    runtime: Annotated[str, typer.Option(help="torch, or int8: the CNN and CLIP's image tower in onnxruntime on "
                                              "their INT8 graphs (built once, then cached), several times faster "
                                              "on many images.")] = "torch",
    batch: Annotated[int, typer.Option(min=1, max=1024, help="Images read and inspected together.")] = 64,
) -> None:
    """Inspect part images: the defect CNN's verdict and p(defect), and CLIP's zero-shot labels.

    A file that cannot be read gets a one-line error for itself; the others are still inspected, and the
    exit code is 2 if any file failed. Files are inspected ``--batch`` at a time, each reported in order as
    its batch is done.
    """
    import json

    import numpy as np

    from perception.clip_model import load_clip
    from perception.defect_cnn import CNNInspector
    from perception.image_io import fit_square, load_image

    # bad weights or runtime fail here, before any file is read
    cnn = CNNInspector(weights, runtime=runtime)
    vlm = load_clip(clip, image_runtime=runtime)
    n_failed = 0
    table = Table(title="inspection")
    for col in ("file", "defect", "p_defect", "CLIP labels"):
        table.add_column(col)
    for start in range(0, len(images), batch):
        outcomes: list[tuple[Path, ShopfloorInputError | None]] = []  # each file's read error, in order
        cnn_images, clip_images = [], []  # camera-sized copies only: full-size photos could fill the memory
        for path in images[start:start + batch]:
            try:
                image = load_image(path)
            except ShopfloorInputError as exc:
                outcomes.append((path, exc))
                continue
            outcomes.append((path, None))
            cnn_images.append(fit_square(image, cnn.image_size))
            clip_images.append(fit_square(image, vlm.image_size[0]))
        results = iter(zip(cnn.verdicts(np.stack(cnn_images)), vlm.labels(np.stack(clip_images), k=top))
                       if cnn_images else ())
        for path, error in outcomes:
            if error is not None:
                n_failed += 1
                report_file_error(path, error, json_)
                continue
            verdict, labels = next(results)
            row = {"file": str(path), "defect": verdict.defect, "p_defect": round(verdict.p_defect, 4),
                   "clip_labels": [[label, round(float(score), 4)] for label, score in labels]}
            if json_:
                print(json.dumps(row), flush=True)
            else:
                table.add_row(row["file"], row["defect"], f"{row['p_defect']:.3f}",
                              ", ".join(f"{label} {score:.2f}" for label, score in row["clip_labels"]))
    if not json_ and table.row_count:
        console.print(table)
    if n_failed:
        raise typer.Exit(2)


@app.command()
@fail_on_bad_input
def voice(
    audio: Annotated[list[Path], typer.Argument(help="Spoken commands: WAV or FLAC (other formats need ffmpeg).")],
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per file, one per line.")] = False,
    scenario: Annotated[Path, typer.Option(help="The plant whose names and limits the commands are checked "
                                                "against.")] = Path("scenarios/smart_factory.yaml"),
    model: Annotated[str | None, typer.Option(help="Whisper checkpoint path or model name (default: tiny.en).")] = None,
    grammar: Annotated[bool, typer.Option("--grammar/--no-grammar", help="Hold Whisper to the command grammar "
                                                                       "(default); --no-grammar decodes freely.")] = True,
) -> None:
    """Transcribe spoken commands and check them: text, intent, slots, and whether the plant would accept them.

    The files are taken as one operator's utterances in order, so a 'confirm' in a later file confirms a
    stop asked for in an earlier one. An unreadable file gets a one-line error and exit code 2; a silent
    one is answered (nothing was said), as is a command the plant refuses.
    """
    import json

    from planning.safety import SafetyLimits
    from agents.voice_agent import hear_command, make_listener
    from agents.voice_commands import CommandGate, vocabulary_for
    from environments.scenario import load_scenario

    sc = load_scenario(scenario)
    listener = make_listener(model, vocabulary_for(sc), grammar)
    gate = CommandGate(SafetyLimits.from_scenario(sc), confirm_window_s=sc.agents.voice.confirm_window_s)
    table = Table(title="voice commands")
    for col in ("file", "text", "intent", "slots", "accepted", "reason"):
        table.add_column(col)
    n_failed, clock_s = 0, 0.0
    for path in audio:
        heard, _ = hear_command(listener, gate, str(path), clock_s, {})
        if heard.pop("unreadable", False):
            n_failed += 1
            report_file_error(path, ShopfloorInputError(heard["reason"]), json_)
            continue
        clock_s += 3.0  # one utterance after another: a confirm in the next file is within the window
        row = {"file": str(path), "text": heard["heard"], "intent": heard["intent"], "slots": heard["slots"],
               "accepted": heard["accepted"], "reason": heard["reason"]}
        if json_:
            print(json.dumps(row), flush=True)
        else:
            table.add_row(row["file"], row["text"], row["intent"], json.dumps(row["slots"]), str(row["accepted"]),
                          row["reason"])
    if not json_ and table.row_count:
        console.print(table)
    if n_failed:
        raise typer.Exit(2)


ROUTE_SOLVERS = ("gnn", "savings", "nearest", "pyvrp", "ortools")


@app.command()
@fail_on_bad_input
def route(
    instance: Annotated[Path, typer.Argument(help="A CVRP instance: VRPLIB (.vrp) or our JSON (.json).")],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.0, help="Seconds of search (the GNN: decoding "
                                              "views, then local search).")] = 1.0,
    solver: Annotated[str, typer.Option(help=f"One of {', '.join(ROUTE_SOLVERS)}.")] = "gnn",
    model: Annotated[Path, typer.Option(help="The GNN's weights (shopfloor train router).")] = Path(
        "planning/policies/router.pt"),
    seed: Annotated[int, typer.Option(help="Seed of PyVRP's search.")] = 0,
) -> None:
    """Solve a CVRP instance: the routes, their cost, and a feasibility check (capacity, every customer once)."""
    import json
    import time

    from planning.baselines.routing import (
        clarke_wright_savings,
        nearest_neighbour,
        read_instance,
        solution_cost,
        validate_solution,
    )

    if solver not in ROUTE_SOLVERS:
        raise ShopfloorInputError(f"--solver {solver!r} is not known; allowed: {', '.join(ROUTE_SOLVERS)}")
    inst = read_instance(instance)
    if solver == "gnn":
        from planning.route_model import load_router, solve_within
        from planning.ruin_recreate import warm_up

        net, _ = load_router(model)
        warm_up()  # the search's compiled code, loaded before the clock starts
    start = time.perf_counter()  # the search, not loading
    if solver == "gnn":
        routes = solve_within(net, inst, time_limit).routes  # multi-start views, then local search
    elif solver in ("pyvrp", "ortools"):
        from planning.reference_solvers import ortools_solve, pyvrp_solve

        routes = pyvrp_solve(inst, time_limit, seed) if solver == "pyvrp" else ortools_solve(inst, time_limit)
    else:
        routes = clarke_wright_savings(inst) if solver == "savings" else nearest_neighbour(inst)
    seconds = time.perf_counter() - start
    validate_solution(inst, routes)  # capacity, every customer once
    out = {"instance": inst.name, "solver": solver, "cost": solution_cost(inst, routes), "routes": routes,
           "n_routes": len(routes), "feasible": True, "seconds": seconds}
    if json_:
        print(json.dumps(out))
        return
    table = Table(title=f"{inst.name}: {solver}, cost {out['cost']:.6g}, {len(routes)} routes, {seconds:.2f} s")
    table.add_column("route", justify="right")
    table.add_column("load", justify="right")
    table.add_column("customers")
    for k, r in enumerate(routes, 1):
        table.add_row(str(k), f"{inst.demands[r].sum():g}/{inst.capacity:g}", " ".join(map(str, r)))
    console.print(table)


@app.command()
def envs() -> None:
    """List the registered environments."""
    import gymnasium

    import environments

    table = Table(title="shopfloor environments")
    table.add_column("id", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("action")
    for env_id, entry in environments.ENVIRONMENTS.items():
        env = gymnasium.make(env_id)
        table.add_row(env_id, entry.split(":")[1], str(env.action_space))
        env.close()
    table.add_row("(PettingZoo parallel env)", environments.PLANT.split(":")[1], "one space per agent")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
