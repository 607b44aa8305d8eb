"""Reference CVRP solvers for measuring the route planner: PyVRP (the quality reference) and OR-Tools.

Both are optional (``pip install -e '.[bench]'``); calling one that is not installed raises a
``ShopfloorInputError`` that says how to install it. Both take integer arc costs, so distances are
scaled by ``COST_SCALE`` and rounded; the returned cost is recomputed on the instance's own distances.

* ``pyvrp_solve``: PyVRP's hybrid genetic search, stopped after ``time_limit_s``.
* ``ortools_solve``: OR-Tools' routing solver, path-cheapest-arc start, guided local search until
  ``time_limit_s``. Arc costs go in as a transit matrix (``RegisterTransitMatrix``), not a Python
  callback, which would cost a Python call per arc evaluation.
"""

from __future__ import annotations

import math

import numpy as np

from environments.errors import ShopfloorInputError
from planning.baselines.routing import CVRPInstance, lower_bound_routes, validate_solution

COST_SCALE = 1000.0  # integer arc costs: 1 unit of distance = 1000 (VRPLIB's integer distances stay exact)


def _integer_costs(instance: CVRPInstance) -> np.ndarray:
    scale = 1.0 if np.allclose(instance.distances, np.round(instance.distances)) else COST_SCALE
    return np.round(instance.distances * scale).astype(np.int64)


def _integer_demands(instance: CVRPInstance) -> tuple[np.ndarray, int]:
    q, cap = instance.demands, instance.capacity
    if np.allclose(q, np.round(q)) and float(cap).is_integer():
        return np.round(q).astype(np.int64), int(cap)
    # fractional demands: scale so that no rounding can make a feasible route infeasible
    return np.ceil(q * 1000).astype(np.int64), int(math.floor(cap * 1000))


def pyvrp_solve(instance: CVRPInstance, time_limit_s: float = 5.0, seed: int = 0) -> list[list[int]]:
    """PyVRP's best routes within ``time_limit_s`` (customer indices, the depot left out)."""
    try:
        from pyvrp import Model
        from pyvrp.stop import MaxRuntime
    except ImportError:
        raise ShopfloorInputError("the pyvrp solver needs PyVRP; allowed: `pip install -e '.[bench]'` or "
                                  "another --solver (gnn, savings)") from None
    costs = _integer_costs(instance)
    demands, capacity = _integer_demands(instance)
    m = Model()
    locations = [m.add_location(x=0, y=0) for _ in range(len(demands))]
    depot = m.add_depot(locations[0])
    m.add_vehicle_type(num_available=instance.n_customers, capacity=capacity, start_depot=depot, end_depot=depot)
    for i in range(1, len(demands)):
        m.add_client(locations[i], delivery=int(demands[i]))
    for i, a in enumerate(locations):
        for j, b in enumerate(locations):
            if i != j:
                m.add_edge(a, b, distance=int(costs[i, j]))
    result = m.solve(stop=MaxRuntime(time_limit_s), seed=seed, display=False)
    if not result.is_feasible():
        raise ShopfloorInputError(f"{instance.name}: PyVRP found no feasible solution in {time_limit_s:g} s")
    # a client activity's idx counts clients only; the instance's index counts the depot first
    routes = [[int(a.idx) + 1 for a in route if a.is_client()] for route in result.best.routes()]
    validate_solution(instance, routes)
    return routes


def ortools_solve(instance: CVRPInstance, time_limit_s: float = 5.0) -> list[list[int]]:
    """OR-Tools' guided local search for ``time_limit_s`` (customer indices, the depot left out)."""
    try:
        from ortools.constraint_solver import pywrapcp, routing_enums_pb2
    except ImportError:
        raise ShopfloorInputError("the ortools solver needs OR-Tools; allowed: `pip install -e '.[bench]'` or "
                                  "another --solver (gnn, savings)") from None
    costs = _integer_costs(instance)
    demands, capacity = _integer_demands(instance)
    n = len(demands)
    n_vehicles = max(lower_bound_routes(instance) * 2, lower_bound_routes(instance) + 2)
    manager = pywrapcp.RoutingIndexManager(n, n_vehicles, 0)
    routing = pywrapcp.RoutingModel(manager)
    arc = routing.RegisterTransitMatrix(costs.tolist())
    routing.SetArcCostEvaluatorOfAllVehicles(arc)
    load = routing.RegisterUnaryTransitVector(demands.tolist())
    routing.AddDimensionWithVehicleCapacity(load, 0, [capacity] * n_vehicles, True, "load")
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(int(time_limit_s * 1000))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        raise ShopfloorInputError(f"{instance.name}: OR-Tools found no feasible solution in {time_limit_s:g} s")
    routes = []
    for v in range(n_vehicles):
        index, route = solution.Value(routing.NextVar(routing.Start(v))), []
        while not routing.IsEnd(index):
            route.append(manager.IndexToNode(index))
            index = solution.Value(routing.NextVar(index))
        if route:
            routes.append(route)
    validate_solution(instance, routes)
    return routes

