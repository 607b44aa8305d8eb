"""Static CVRP helpers: instance reading, solution checks, nearest neighbour and Clarke-Wright savings."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from environments.errors import ShopfloorInputError
from planning.baselines.routing import (
    CVRPInstance,
    clarke_wright_savings,
    euclidean_instance,
    instance_from_vrplib,
    lower_bound_routes,
    nearest_neighbour,
    read_vrplib_solution_cost,
    route_cost,
    savings_list,
    solution_cost,
    two_opt,
    validate_solution,
)

CVRPLIB = Path(__file__).resolve().parents[1] / "benchmarks" / "cvrplib"  # a copy of ../shared/cvrplib
INSTANCES = ["X-n101-k25", "X-n106-k14", "X-n110-k13"]


def _square() -> CVRPInstance:
    """Depot at the origin, four customers on the corners of a 2x2 square around it."""
    coords = np.array([[0, 0], [1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=float)
    return euclidean_instance(coords, np.array([0, 1, 1, 1, 1]), capacity=2)


def test_route_cost_and_solution_cost():
    inst = _square()
    r2 = np.sqrt(2)
    assert route_cost(inst, []) == 0.0
    assert route_cost(inst, [1]) == pytest.approx(2 * r2)
    assert route_cost(inst, [1, 2]) == pytest.approx(2 * r2 + 2)
    assert solution_cost(inst, [[1, 2], [3, 4]]) == pytest.approx(4 * r2 + 4)


def test_validate_solution_catches_each_problem():
    inst = _square()
    validate_solution(inst, [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="customer 4 is visited 0 times"):
        validate_solution(inst, [[1, 2], [3]])
    with pytest.raises(ValueError, match="customer 1 is visited 2 times"):
        validate_solution(inst, [[1, 2], [3, 4], [1]])
    with pytest.raises(ValueError, match="carries 3.0 units"):
        validate_solution(inst, [[1, 2, 3], [4]])
    with pytest.raises(ValueError, match="visits 9"):
        validate_solution(inst, [[1, 2], [3, 4, 9]])


def test_savings_merges_neighbours_on_the_square():
    inst = _square()
    routes = clarke_wright_savings(inst)
    validate_solution(inst, routes)
    assert len(routes) == 2 == lower_bound_routes(inst)
    # Neighbouring corners (distance 2) are joined, never opposite ones (distance 2*sqrt(2)).
    assert solution_cost(inst, routes) == pytest.approx(4 * np.sqrt(2) + 4)


def test_savings_list_sorted_and_deterministic():
    rng = np.random.default_rng(1)
    inst = euclidean_instance(rng.random((30, 2)), np.r_[0, rng.integers(1, 5, 29)], capacity=10)
    pairs, s = savings_list(inst.distances)
    assert (np.diff(s) <= 1e-12).all() and (s > 0).all()
    assert (pairs[:, 0] < pairs[:, 1]).all() and pairs.min() >= 1
    d = inst.distances
    i, j = pairs[0]
    assert s[0] == pytest.approx(d[i, 0] + d[0, j] - d[i, j])
    assert clarke_wright_savings(inst) == clarke_wright_savings(inst)


@pytest.mark.parametrize("name", INSTANCES)
def test_cvrplib_instances_give_valid_solutions(name):
    inst = instance_from_vrplib(CVRPLIB / f"{name}.vrp")
    best = read_vrplib_solution_cost(CVRPLIB / f"{name}.sol")
    assert inst.n_customers == int(name.split("-n")[1].split("-")[0]) - 1
    cw = clarke_wright_savings(inst)  # its speed is benchmarks/routing.py's (~2 ms here), not a test's
    nn = nearest_neighbour(inst)
    validate_solution(inst, cw)
    validate_solution(inst, nn)
    cw_cost, nn_cost = solution_cost(inst, cw), solution_cost(inst, nn)
    assert best <= cw_cost <= 1.10 * best, f"savings {cw_cost} vs best known {best}"
    assert cw_cost < nn_cost
    improved = [two_opt(inst, r) for r in cw]
    validate_solution(inst, improved)
    assert solution_cost(inst, improved) <= cw_cost + 1e-9


def test_cvrplib_distances_match_the_best_known_solution():
    """EUC_2D is rounded as VRPLIB defines, so the published routes cost exactly the published cost."""
    import vrplib

    inst = instance_from_vrplib(CVRPLIB / "X-n101-k25.vrp")
    sol = vrplib.read_solution(str(CVRPLIB / "X-n101-k25.sol"))
    validate_solution(inst, sol["routes"])
    assert solution_cost(inst, sol["routes"]) == sol["cost"] == 27591


def test_savings_gives_valid_routes_on_a_large_instance():
    rng = np.random.default_rng(0)
    inst = euclidean_instance(rng.random((401, 2)) * 100, np.r_[0, rng.integers(1, 10, 400)], capacity=50)
    routes = clarke_wright_savings(inst)
    validate_solution(inst, routes)
    assert solution_cost(inst, routes) < solution_cost(inst, nearest_neighbour(inst))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), capacity=st.integers(5, 30), seed=st.integers(0, 10_000))
def test_constructions_always_valid(n, capacity, seed):
    rng = np.random.default_rng(seed)
    inst = euclidean_instance(rng.random((n + 1, 2)), np.r_[0, rng.integers(1, capacity + 1, n)], capacity)
    for routes in (nearest_neighbour(inst), clarke_wright_savings(inst)):
        validate_solution(inst, routes)
        assert len(routes) >= lower_bound_routes(inst)


def test_asymmetric_distances_stay_valid():
    rng = np.random.default_rng(3)
    d = rng.random((21, 21)) * 10
    np.fill_diagonal(d, 0)
    inst = CVRPInstance(d, np.r_[0, rng.integers(1, 4, 20)], capacity=8)
    validate_solution(inst, clarke_wright_savings(inst))
    validate_solution(inst, nearest_neighbour(inst))


@pytest.mark.parametrize("content, match", [
    ("hello\nthis is not a vrp file\n", "not a readable VRPLIB instance"),
    ("NAME : x\nTYPE : CVRP\nDIMENSION : 3\nEDGE_WEIGHT_TYPE : EUC_2D\nCAPACITY : 10\nNODE_COORD_SECTION\n"
     "1 0 0\n2 1 1\n3 2 2\nDEMAND_SECTION\n1 0\n2 5\n3 50\nDEPOT_SECTION\n1\n-1\nEOF\n", "capacity 10.0"),
    ("NAME : x\nTYPE : CVRP\nDIMENSION : 3\nEDGE_WEIGHT_TYPE : EUC_2D\nCAPACITY : 10\nNODE_COORD_SECTION\n"
     "1 0 0\n2 1 1\n3 2 2\nEOF\n", "no DEMAND section"),
])
def test_bad_vrplib_file_raises_input_error(tmp_path, content, match):
    path = tmp_path / "bad.vrp"
    path.write_text(content)
    with pytest.raises(ShopfloorInputError, match=match) as info:
        instance_from_vrplib(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_vrplib_file_raises_input_error(tmp_path):
    with pytest.raises(ShopfloorInputError, match="no such instance file"):
        instance_from_vrplib(tmp_path / "nope.vrp")


def test_depot_is_moved_to_index_zero(tmp_path):
    path = tmp_path / "depot2.vrp"
    path.write_text("NAME : d2\nTYPE : CVRP\nDIMENSION : 3\nEDGE_WEIGHT_TYPE : EUC_2D\nCAPACITY : 10\n"
                    "NODE_COORD_SECTION\n1 3 4\n2 0 0\n3 6 8\nDEMAND_SECTION\n1 4\n2 0\n3 5\n"
                    "DEPOT_SECTION\n2\n-1\nEOF\n")
    inst = instance_from_vrplib(path)
    assert inst.demands.tolist() == [0, 4, 5]
    assert inst.distances[0].tolist() == [0, 5, 10]
