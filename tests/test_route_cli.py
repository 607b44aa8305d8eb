"""`shopfloor route`: instance files (VRPLIB and JSON), every solver's routes checked, bad files refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from environments.errors import ShopfloorInputError
from planning.baselines.routing import instance_from_json, read_instance, solution_cost, validate_solution
from planning.train_router import quick_config, train_router

ROOT = Path(__file__).resolve().parents[1]
X_INSTANCE = ROOT / "benchmarks" / "cvrplib" / "X-n101-k25.vrp"


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _route(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", "route", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_json_instances_read_and_bad_ones_get_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.random((9, 2))
    good = _write(tmp_path / "good.json", {"name": "g", "capacity": 10, "demands": [0] + [3] * 8,
                                           "coords": coords.tolist()})
    inst = read_instance(good)
    assert inst.n_customers == 8 and inst.capacity == 10
    assert inst.distances[1, 2] == pytest.approx(np.linalg.norm(coords[1] - coords[2]))
    bad = {
        "infeasible": ({"capacity": 2, "demands": [0, 3], "coords": [[0, 0], [1, 1]]}, "customer 1 demands 3"),
        "missing": ({"capacity": 2, "demands": [0, 1]}, "missing coords or distances"),
        "no_capacity": ({"demands": [0, 1], "coords": [[0, 0], [1, 1]]}, "missing capacity"),
        "shape": ({"capacity": 2, "demands": [0, 1], "coords": [[0, 0]]}, "coords has shape"),
        "depot": ({"capacity": 2, "demands": [1, 1], "coords": [[0, 0], [1, 1]]}, r"the depot \(0\)"),
        "not_json": ("{capacity: ", "not valid JSON"),
        "list": ([1, 2], "must be a JSON object"),
    }
    for name, (data, words) in bad.items():
        with pytest.raises(ShopfloorInputError, match=words) as e:
            instance_from_json(_write(tmp_path / f"{name}.json", data))
        assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def router(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("router") / "router.pt"
    train_router(quick_config(0), path)
    return path


def test_every_solver_gives_feasible_routes_on_a_cvrplib_instance(router):
    inst = read_instance(X_INSTANCE)
    costs = {}
    solvers = ["savings", "nearest", "gnn"]
    try:
        import ortools  # noqa: F401
        import pyvrp  # noqa: F401
        solvers += ["pyvrp", "ortools"]
    except ImportError:  # the bench extra is not installed: the solver must say how to get it
        res = _route(X_INSTANCE, "--solver", "pyvrp")
        assert res.returncode == 2 and "pip install -e '.[bench]'" in res.stderr and "Traceback" not in res.stderr
    for solver in solvers:
        res = _route(X_INSTANCE, "--json", "--solver", solver, "--time-limit", "0.5", "--model", router)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        validate_solution(inst, out["routes"])
        assert out["feasible"] and out["cost"] == pytest.approx(solution_cost(inst, out["routes"]))
        costs[solver] = out["cost"]
    assert costs["savings"] < costs["nearest"]
    if "pyvrp" in costs:
        assert costs["pyvrp"] <= costs["savings"]  # X-n101-k25: 28,104 in 1 s against 28,986


def test_bad_instance_files_exit_2_with_one_line(tmp_path):
    cases = {
        _write(tmp_path / "over.json", {"capacity": 2, "demands": [0, 3], "coords": [[0, 0], [1, 1]]}): "infeasible",
        _write(tmp_path / "bad.vrp", "NAME: x\nTYPE: CVRP\n"): "VRPLIB",
        _write(tmp_path / "nodemand.vrp", "NAME: x\nTYPE: CVRP\nDIMENSION: 2\nCAPACITY: 5\nEDGE_WEIGHT_TYPE: EUC_2D\n"
                                          "NODE_COORD_SECTION\n1 0 0\n2 1 1\nDEPOT_SECTION\n1\n-1\nEOF\n"): "DEMAND",
        tmp_path / "missing.vrp": "no such instance file",
    }
    for path, words in cases.items():
        res = _route(path, "--solver", "savings")
        assert res.returncode == 2, (path, res.stdout)
        assert words in res.stderr and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, \
            res.stderr
    res = _route(X_INSTANCE, "--solver", "magic")
    assert res.returncode == 2 and "allowed: gnn, savings, nearest, pyvrp, ortools" in res.stderr


def test_solve_within_is_feasible_and_no_worse_than_its_first_view(router):
    from planning.route_model import load_router, solve, solve_within

    model, _ = load_router(router)
    inst = read_instance(ROOT / "benchmarks" / "cvrplib" / "X-n106-k14.vrp")
    first_view = solve(model, inst, "multistart")
    for budget in (0.0, 0.3):
        found = solve_within(model, inst, budget)
        validate_solution(inst, found.routes)
        assert found.cost <= first_view.cost + 1e-6 and found.n_solutions >= inst.n_customers


def test_the_dispatch_agent_plans_with_the_gnn_in_a_run(router):
    from agents.runtime import start_local_run
    from environments.scenario import parse_scenario

    base = {"name": "gnn-dispatch", "duration_h": 3.0, "fleet": {"road": {"n_nodes": 36, "size_km": 5},
                                                                 "n_vehicles": 2},
            "coupling": {"parts_per_order": 4}}
    kpis = {}
    for policy in ("savings", f"gnn:{router}"):
        sc = parse_scenario({**base, "agents": {"dispatch": {"policy": policy}}})
        run, board = start_local_run(sc, 3, None)
        while not run.done:
            run.step()
        kpis[policy.split(":")[0]] = run.kpis()
        board.close()
    # the same orders arrive (the plant upstream is the same); the GNN's routes deliver them
    assert kpis["gnn"]["orders_delivered"] >= 5
    assert kpis["gnn"]["orders_delivered"] >= kpis["savings"]["orders_delivered"] - 2
    assert kpis["gnn"]["distance_km"] > 0
