"""The GNN route planner (issue 6): instance generator, encoder and decoder shapes, masking, feasibility of
every decoded and polished solution, and quick training end to end (CLI, metrics, checkpoint, seeding)."""

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from environments.errors import ShopfloorInputError
from planning.baselines.routing import (
    CVRPInstance,
    clarke_wright_savings,
    euclidean_instance,
    nearest_neighbour,
    solution_cost,
    validate_solution,
)
from planning.cvrp_generator import GeneratorConfig, generate_instances, kool_instance, make_instance
from planning.local_search import polish
from planning.route_model import (
    RouteModel,
    RouteModelDims,
    actions_to_routes,
    load_router,
    make_batch,
    pomo_starts,
    sample,
    solve,
    solve_many,
)
from planning.train_router import quick_config, train_router

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads lose badly to 1 on the 2-core machines when anything else runs
    torch.manual_seed(0)
    yield RouteModel().eval()  # untrained: a near-random policy tries the masks hardest
    torch.set_num_threads(threads)  # the other test modules run in this process too


def _instances() -> dict[str, CVRPInstance]:
    rng = np.random.default_rng(123)
    road = make_instance(rng, 30, "uniform", "random", "small")
    detour = road.distances * (1.0 + 0.3 * rng.random(road.distances.shape))  # asymmetric, no coordinates
    np.fill_diagonal(detour, 0.0)
    return {
        "kool-20": kool_instance(rng, 20),
        "kool-100": kool_instance(rng, 100),
        "clustered-50": make_instance(rng, 50, "clustered", "corner", "many_small"),
        "mixed-70-large": make_instance(rng, 70, "mixed", "centre", "large_narrow"),
        "unit-40": make_instance(rng, 40, "uniform", "random", "unit"),
        "road-30": CVRPInstance(detour, road.demands, road.capacity),
    }


INSTANCES = _instances()


def test_generator_is_seeded_and_follows_its_recipe():
    a, b = generate_instances(7, 20), generate_instances(7, 20)
    for x, y in zip(a, b):
        assert np.array_equal(x.distances, y.distances) and np.array_equal(x.demands, y.demands)
        assert x.capacity == y.capacity and x.name == y.name
    assert not np.array_equal(a[0].coords, generate_instances(8, 1)[0].coords)
    for inst in a:
        assert 20 <= inst.n_customers <= 100 and inst.coords.min() >= 0 and inst.coords.max() <= 1
        assert inst.demands[1:].min() >= 1 and inst.capacity >= inst.demands.max()
    rng = np.random.default_rng(0)
    assert [kool_instance(rng, n).capacity for n in (20, 50, 100)] == [30.0, 40.0, 50.0]
    assert kool_instance(rng, 50).demands[1:].max() <= 9
    corner = make_instance(rng, 60, "clustered", "corner", "unit")
    assert np.array_equal(corner.coords[0], [0.0, 0.0]) and (corner.demands[1:] == 1).all()
    # unit demands: capacity = ceil(r), r = Kool's 8.4 customers per route at n = 60 times U[0.7, 1.3]
    assert 6 <= corner.capacity <= 11
    with pytest.raises(ShopfloorInputError, match="demands"):
        GeneratorConfig(demands={"huge": 1.0})


def test_encoder_and_decoder_shapes(model):
    insts = [INSTANCES["kool-20"], INSTANCES["road-30"]]
    batch = make_batch(insts, k=16)
    g = batch.graph
    assert g.x.shape == (21 + 31, 7) and g.edge_attr.shape == (g.edge_index.shape[1], 2)
    h = model.encoder(g.x, g.edge_index, g.edge_attr)
    assert h.shape == (52, 64)
    assert batch.distances.shape == (2, 31, 31) and batch.node_mask.sum(1).tolist() == [21, 31]
    cache = model.encode(batch)
    assert cache.glimpse_k.shape == (2, 4, 31, 16) and cache.logit_k.shape == (2, 31, 64)
    mask = torch.zeros(2, 5, 31, dtype=torch.bool)
    mask[:, :, 0] = True
    mask[0, :, 21:] = True  # padding
    logp = model.decoder(cache, torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5), mask)
    assert logp.shape == (2, 5, 31)
    assert torch.isinf(logp[mask]).all() and torch.allclose(logp.exp().sum(-1), torch.ones(2, 5))
    out = model.rollout(batch, 7, pomo_starts(batch.n_customers, 7), greedy=False)
    assert out.actions.shape[:2] == (2, 7) and out.log_prob.shape == (2, 7) and out.cost.shape == (2, 7)
    assert out.actions[:, :, 0].tolist() == [[1, 2, 3, 4, 5, 6, 7]] * 2


def _check_actions(inst: CVRPInstance, actions: list[int]) -> None:
    """The decoder's rules along one action sequence: no repeat, no overload, no depot right after the depot."""
    seen, load, prev = set(), 0.0, 0
    n_done_at = next(i for i in range(len(actions) + 1) if set(actions[:i]) >= set(range(1, inst.n_customers + 1)))
    for t, a in enumerate(actions):
        if a == 0:
            assert prev != 0 or t >= n_done_at, f"depot twice in a row at step {t} before all customers were served"
            load = 0.0
        else:
            assert a not in seen, f"customer {a} visited twice"
            seen.add(a)
            load += inst.demands[a]
            assert load <= inst.capacity + 1e-9, f"load {load} above capacity {inst.capacity}"
        prev = a
    assert seen == set(range(1, inst.n_customers + 1))
    assert actions[0] != 0 and all(a == 0 for a in actions[n_done_at:])


@pytest.mark.parametrize("mode", ["greedy", "sample", "multistart"])
def test_masks_hold_along_every_rollout(model, mode):
    insts = list(INSTANCES.values())
    batch = make_batch(insts, k=12)
    p = {"greedy": 1, "sample": 8, "multistart": 8}[mode]
    starts = pomo_starts(batch.n_customers, p) if mode == "multistart" else None
    out = model.rollout(batch, p, starts, greedy=mode != "sample", generator=torch.Generator().manual_seed(1))
    for b, inst in enumerate(insts):
        for r in range(p):
            _check_actions(inst, out.actions[b, r].tolist())
            routes = actions_to_routes(out.actions[b, r].tolist())
            cost = float(out.cost[b, r] * batch.scale[b])
            assert cost == pytest.approx(solution_cost(inst, routes), rel=1e-4)


def test_a_tight_capacity_forces_a_return_to_the_depot(model):
    coords = np.array([[0.5, 0.5], [0.1, 0.1], [0.12, 0.1], [0.9, 0.9], [0.88, 0.9]])
    inst = euclidean_instance(coords, np.array([0, 3, 3, 2, 2]), capacity=4)  # 3 + 2 fits, 3 + 3 does not
    for mode in ("greedy", "sample", "multistart"):
        sol = solve(model, inst, mode, n=4)
        validate_solution(inst, sol.routes)
        assert len(sol.routes) >= 2


def test_sampling_never_picks_a_zero_probability_entry():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).expand(2000, 5)
    idx = sample(probs, torch.Generator().manual_seed(0))
    assert set(idx.tolist()) == {1, 3} and 0.45 < (idx == 1).float().mean() < 0.55


@pytest.mark.parametrize("name", list(INSTANCES))
def test_every_decoded_and_polished_solution_is_feasible(model, name):
    inst = INSTANCES[name]
    costs = {}
    for mode, kw in [("greedy", {}), ("sample", {"n": 16}), ("multistart", {}), ("multistart", {"augment": 8})]:
        sol = solve(model, inst, mode, **kw)
        validate_solution(inst, sol.routes)
        assert sol.cost == pytest.approx(solution_cost(inst, sol.routes))
        costs[mode] = min(costs.get(mode, np.inf), sol.cost)
        polished = solve(model, inst, mode, polish_s=0.1, **kw)
        validate_solution(inst, polished.routes)
        assert polished.cost <= sol.cost + 1e-9
    # every start's greedy rollout is among multistart's, so the best of them is no worse than start 1 alone
    assert costs["multistart"] <= solve(model, inst, "multistart", n=1).cost + 1e-9


@pytest.mark.parametrize("name", ["kool-100", "clustered-50", "road-30"])
def test_polish_never_makes_a_solution_worse(name):
    inst = INSTANCES[name]
    rng = np.random.default_rng(0)
    order = rng.permutation(np.arange(1, inst.n_customers + 1)).tolist()
    random_routes, route, load = [], [], 0.0  # a poor but feasible start: customers in random order
    for c in order:
        if load + inst.demands[c] > inst.capacity:
            random_routes.append(route)
            route, load = [], 0.0
        route.append(c)
        load += inst.demands[c]
    random_routes.append(route)
    for routes in (random_routes, nearest_neighbour(inst), clarke_wright_savings(inst)):
        before = solution_cost(inst, routes)
        after = polish(inst, routes, 0.5)
        validate_solution(inst, after)
        assert solution_cost(inst, after) <= before + 1e-9
    searched = polish(inst, random_routes, 0.0, iterations=20_000)  # iterations, not seconds: any machine
    assert solution_cost(inst, searched) < 0.8 * solution_cost(inst, random_routes)


def test_ruin_and_recreate_leaves_the_local_optimum_of_the_descent():
    inst = INSTANCES["kool-100"]
    savings = clarke_wright_savings(inst)
    # fixed iteration counts, not time budgets: on a loaded CI machine 0.4 s bought too few iterations
    descent = solution_cost(inst, polish(inst, savings, 0.0, ruin=False, iterations=0))  # to its local optimum
    searched = polish(inst, nearest_neighbour(inst), 0.0, iterations=20_000)  # from a far worse start
    validate_solution(inst, searched)
    assert solution_cost(inst, searched) < 0.98 * descent


def test_ruin_and_recreate_drives_one_way_streets_the_cheap_way():
    n = 8
    angle = -2 * np.pi * np.arange(n) / n  # customers clockwise round the depot
    xy = np.vstack([[0.0, 0.0], np.c_[np.cos(angle), np.sin(angle)]])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    for a in range(1, n + 1):  # between customers, anticlockwise costs three times as much
        for b in range(1, n + 1):
            if (b - a) % n > n // 2:
                d[a, b] *= 3.0
    inst = CVRPInstance(d, np.r_[0.0, np.ones(n)], capacity=float(n))
    anticlockwise = [list(range(n, 0, -1))]
    best = polish(inst, anticlockwise, 0.2)
    validate_solution(inst, best)
    assert len(best) == 1 and all((b - a) % n == 1 for a, b in zip(best[0], best[0][1:]))  # clockwise, any start


def test_solve_rejects_bad_options(model):
    with pytest.raises(ShopfloorInputError, match="mode"):
        solve(model, INSTANCES["kool-20"], "beam")
    with pytest.raises(ShopfloorInputError, match="augment"):
        solve(model, INSTANCES["kool-20"], "multistart", augment=9)


def test_quick_training_is_seeded_and_writes_metrics_and_a_loadable_checkpoint(tmp_path):
    res = subprocess.run([sys.executable, "-m", "cluster.cli", "train", "router", "--quick", "--seed", "3",
                          "--out", str(tmp_path / "a.pt")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "gap to savings" in res.stdout
    metrics = train_router(quick_config(3), tmp_path / "b.pt")
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert "shopfloor train router --quick --seed 3" in a["meta"]["command"] and a["meta"]["complete"]
    written = json.loads((tmp_path / "a.metrics.json").read_text())
    assert written["config"]["seed"] == 3 and len(written["history"]) == 4 == len(metrics["history"])
    assert [row["phase"] for row in written["history"]] == ["untrained", "imitation", "imitation", "reinforce"]
    for row in written["history"][1:]:
        assert {"train/loss", "val/greedy_cost", "val/savings_cost", "val/gap_to_savings", "time/wall_s"} <= set(row)
    assert "train/cost" in written["history"][-1]
    assert written["best"]["val/gap_to_savings"] == min(r["val/gap_to_savings"] for r in written["history"][1:])
    loaded, ckpt = load_router(tmp_path / "a.pt")
    assert loaded.dims == RouteModelDims() and ckpt["meta"]["seed"] == 3
    assert (tmp_path / "a.pt").stat().st_size <= 10 * 2**20
    for sol, inst in zip(solve_many(loaded, list(INSTANCES.values()), "multistart", polish_s=0.1),
                         INSTANCES.values()):
        validate_solution(inst, sol.routes)


def test_training_goes_on_from_a_checkpoint(tmp_path):
    first = train_router(replace(quick_config(3), epochs=0), tmp_path / "first.pt")  # imitation alone
    on = train_router(replace(quick_config(4), init=str(tmp_path / "first.pt"), expert_instances=0), tmp_path / "on.pt")
    # the run starts where the checkpoint's best epoch ended: the same validation gap, then REINFORCE
    assert on["history"][0]["phase"] == "init" and [r["phase"] for r in on["history"][1:]] == ["reinforce"]
    assert on["history"][0]["val/gap_to_savings"] == first["best"]["val/gap_to_savings"]
    _, ckpt = load_router(tmp_path / "on.pt")
    assert ckpt["meta"]["init"]["path"] == str(tmp_path / "first.pt") and ckpt["meta"]["init"]["seed"] == 3
    # the start is kept unless an epoch beats it on validation
    assert on["best"]["val/gap_to_savings"] == min(r["val/gap_to_savings"] for r in on["history"])
    assert ckpt["meta"]["epoch"] == on["best"]["epoch"] and ckpt["meta"]["complete"]
    with pytest.raises(ShopfloorInputError, match="has the model size .*allowed: a checkpoint of this run's size"):
        train_router(replace(quick_config(4), init=str(tmp_path / "first.pt"), dims=RouteModelDims(d_model=32, d_ff=64)),
                     tmp_path / "wrong.pt")


def test_train_router_sets_the_model_size_and_rejects_a_width_the_heads_cannot_split(tmp_path):
    cmd = [sys.executable, "-m", "cluster.cli", "train", "router", "--quick", "--out", str(tmp_path / "s.pt")]
    res = subprocess.run(cmd + ["--d-model", "32", "--layers", "2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    loaded, _ = load_router(tmp_path / "s.pt")
    assert (loaded.dims.d_model, loaded.dims.d_ff, loaded.dims.n_layer) == (32, 64, 2)
    assert len(loaded.encoder.blocks) == 2
    res = subprocess.run(cmd[:-1] + [str(tmp_path / "bad.pt"), "--d-model", "30"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "d_model=30 with n_head=4 is invalid" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "bad.pt").exists()


def test_load_router_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ShopfloorInputError, match="does not exist"):
        load_router(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ShopfloorInputError, match="not a route model checkpoint"):
        load_router(tmp_path / "junk.pt")


def test_shipped_router_weights_hold_their_measured_quality():
    """planning/policies/router.pt, from `shopfloor train router --seed 0` (33 min on the sixth session's
    CPU, benchmarks/RESULTS.md). Floors sit above what was measured on these instances (greedy +7.1%
    behind savings, where the weights before were +8.5% and the REINFORCE-only ones +37%; multi-start x8
    polished to a local optimum -3.1%), so a worse retraining fails here."""
    path = ROOT / "planning" / "policies" / "router.pt"
    assert path.stat().st_size <= 10 * 2**20
    model, ckpt = load_router(path)
    # where the weights were written does not change them
    assert re.sub(r" --out \S+", "", ckpt["meta"]["command"]) == "shopfloor train router --seed 0"
    assert ckpt["meta"]["complete"]
    rng = np.random.default_rng(31337)  # held out: neither the training nor the validation seeds
    instances = [kool_instance(rng, 50) for _ in range(12)]
    savings = np.array([solution_cost(i, clarke_wright_savings(i)) for i in instances])
    greedy = solve_many(model, instances, "greedy")
    for inst, sol in zip(instances, greedy):
        validate_solution(inst, sol.routes)
    assert np.mean([s.cost for s in greedy] / savings - 1) <= 0.10
    # every first customer of 8 views, taken down to the descent's local optimum: no clock in the result
    starts = [solve(model, inst, "multistart", augment=8).routes for inst in instances]
    polished = np.array([solution_cost(inst, polish(inst, r, 60.0, ruin=False)) for inst, r in zip(instances, starts)])
    assert np.mean(polished / savings - 1) <= 0.0
