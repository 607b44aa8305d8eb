"""Classical dispatch policies for `environments.dispatch.DispatchEnv` and the Plant's fleet (`FleetSim`).

Each is built from the simulator's static layout (road distances, depots, vehicle capacities; never its
live state) and maps an observation to a ``MultiDiscrete`` action: for each vehicle, 0 = no new order,
``k`` = append pending-order slot ``k - 1`` to its queue. A vehicle parked at its depot with queued
orders leaves at the first tick it gets no new order, so a route is handed over one order per tick.

* `NearestNeighbourDispatcher`: every parked vehicle takes the closest order that fits, measured from the
  last stop it has been given (so over a few ticks it builds a nearest-neighbour route) and leaves when
  nothing fits or nothing is left.
* `SavingsDispatcher`: holds orders briefly to batch them, then plans routes for the empty parked
  vehicles with Clarke-Wright savings on the pending orders, most urgent route first, each route turned
  the way that is less late, and hands them over.
* `RandomDispatcher`: the naive reference; each vehicle picks a uniformly random allowed option.

All three are deterministic for a given observation sequence (the random one for a given seed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from environments.dispatch import DispatchEnv, FleetSim
from planning.baselines.routing import CVRPInstance, clarke_wright_savings

# Observation columns (see DispatchEnv).
O_VALID, O_NODE, O_DEMAND, O_WS, O_WE, O_AGE = 0, 1, 4, 5, 6, 7
V_REMAINING, V_AT_DEPOT, V_N_STOPS, V_ANCHOR = 2, 4, 5, 6
C_ELAPSED, C_SHIFT_LEFT = 1, 2


def _fleet_sim(fleet: FleetSim | DispatchEnv) -> FleetSim:
    """The simulator whose static layout a dispatcher reads (a DispatchEnv builds one at construction)."""
    sim = getattr(getattr(fleet, "unwrapped", fleet), "sim", fleet)
    assert isinstance(sim, FleetSim), f"expected a FleetSim or DispatchEnv, got {type(fleet).__name__}"
    return sim


class NearestNeighbourDispatcher:
    """Each vehicle parked at its depot takes the nearest pending order that fits its remaining capacity.

    Distance is by road from the vehicle's anchor (its last assigned stop, or its depot). Vehicles are
    served in index order; ties go to the lower slot (the older order).

    Parameters
    ----------
    fleet : FleetSim | DispatchEnv
        Source of the static layout (road distances, number of vehicles and slots).
    """

    def __init__(self, fleet: FleetSim | DispatchEnv):
        sim = _fleet_sim(fleet)
        self.dist_km = sim.network.dist_km
        self.n_vehicles, self.n_slots = sim.n_vehicles, sim.max_pending

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        orders, vehicles = observation["orders"], observation["vehicles"]
        action = np.zeros(self.n_vehicles, dtype=np.int64)
        free = orders[:, O_VALID] > 0.5
        if observation["clock"][C_SHIFT_LEFT] <= 0 or not free.any():
            return action
        nodes = orders[:, O_NODE].astype(np.int64)
        for v in range(self.n_vehicles):
            if vehicles[v, V_AT_DEPOT] < 0.5:
                continue
            ok = free & (orders[:, O_DEMAND] <= vehicles[v, V_REMAINING])
            if not ok.any():
                continue
            anchor = int(vehicles[v, V_ANCHOR])
            k = int(np.argmin(np.where(ok, self.dist_km[anchor, nodes], np.inf)))
            action[v] = k + 1
            free[k] = False
        return action


def minutes_late(time_min, depot: int, stops, start: float, service_time_min: float) -> float:
    """Total minutes late serving ``stops`` ((node, window start, window end), absolute minutes) in order,
    leaving ``depot`` at ``start``; ``time_min[a][b]`` is the vehicle's driving time. Early arrivals wait."""
    here, t, late = depot, start, 0.0
    for node, window_start, window_end in stops:
        t = max(t + time_min[here][node], window_start)
        late += max(0.0, t - window_end)
        t += service_time_min
        here = node
    return late


class SavingsDispatcher:
    """Batch pending orders into Clarke-Wright routes for the empty vehicles parked at each depot.

    Each tick, first every vehicle that is being handed a route gets its next order. Then, per depot,
    if some of its vehicles are parked and empty and the unplanned orders nearest that depot are worth
    a trip (their demand fills ``min_fill`` of a vehicle, the oldest has waited ``max_hold_min`` or one is
    within ``slack_min`` of missing its window), savings routes are built for them with the smallest
    free capacity, turned the way that is less late, sorted by earliest window end and given to the free
    vehicles (lowest index first). Routes left without a vehicle are re-planned later with new orders.

    Orders are recognised from tick to tick by their content (node, demand, absolute window), so the
    dispatcher needs no order ids; two orders with the same content are interchangeable for routing.

    Parameters
    ----------
    fleet : FleetSim | DispatchEnv
        Source of the static layout.
    min_fill : float
        Share of a vehicle's capacity the pending demand must reach before a batch is released.
    max_hold_min : float
        Release anyway once the oldest unplanned order has waited this long, minutes.
    slack_min : float
        Release anyway once an order would be served less than this before its window closes, minutes.
    route_planner : CVRPInstance -> routes
        Plans the batch's routes: Clarke-Wright savings, or a learned planner (``agents.policies``
        plugs in the GNN of ``planning.route_model``); the batching and hand-over stay the same.
    """

    def __init__(self, fleet: FleetSim | DispatchEnv, min_fill: float = 0.6, max_hold_min: float = 15.0,
                 slack_min: float = 45.0,
                 route_planner: Callable[[CVRPInstance], list[list[int]]] = clarke_wright_savings):
        assert 0 <= min_fill <= 1, f"min_fill={min_fill} must be in [0, 1]"
        self.route_planner = route_planner
        sim = _fleet_sim(fleet)
        cfg = sim.config
        self.min_fill, self.max_hold_min, self.slack_min = min_fill, max_hold_min, slack_min
        self.dist_km = sim.network.dist_km
        self.n_vehicles, self.n_slots = sim.n_vehicles, sim.max_pending
        self.vehicle_depots = list(sim.vehicle_depots)
        self.depot_nodes = list(sim.depot_nodes)
        self.time_min = [sim.network.time_min(v.speed_kmh) for v in sim.fleet]
        self.service_time_min, self.load_time_min = cfg.service_time_min, cfg.load_time_min
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._plans: list[list[tuple]] = [[] for _ in range(self.n_vehicles)]  # order keys still to hand over

    @staticmethod
    def order_rows(orders: np.ndarray, now: float) -> list[tuple]:
        """(slot, node, demand, window_start, window_end) of every valid row, windows absolute."""
        slots = np.flatnonzero(orders[:, O_VALID] > 0.5)
        return [(k, int(r[O_NODE]), float(r[O_DEMAND]), float(r[O_WS]) + now, float(r[O_WE]) + now)
                for k, r in zip(slots.tolist(), orders[slots].tolist())]

    @staticmethod
    def _same(a: tuple, b: tuple) -> bool:
        return a[1] == b[1] and abs(a[2] - b[2]) < 1e-3 and abs(a[3] - b[3]) < 0.05 and abs(a[4] - b[4]) < 0.05

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        orders, vehicles, clock = observation["orders"], observation["vehicles"], observation["clock"]
        action = np.zeros(self.n_vehicles, dtype=np.int64)
        now = float(clock[C_ELAPSED])
        rows = self.order_rows(orders, now)
        if clock[C_SHIFT_LEFT] <= 0:
            self.reset()
            return action

        reserved = self.hand_over(rows, vehicles, action)
        for _, free, routes in self.new_routes(rows, reserved, vehicles, action, now, orders):
            for v, route in zip(free, routes):
                self.start_route(v, route, action)
        return action

    def start_route(self, v: int, route: list[tuple], action: np.ndarray) -> None:
        """Vehicle ``v`` takes the route's first order now (in ``action``) and the rest on later ticks."""
        action[v] = route[0][0] + 1
        self._plans[v] = route[1:]

    def hand_over(self, rows: list[tuple], vehicles: np.ndarray, action: np.ndarray) -> set[int]:
        """Give every vehicle being handed a route its next order (in ``action``); the slots of every
        planned order still pending are returned (reserved)."""
        reserved: set[int] = set()
        for v, plan in enumerate(self._plans):
            if not plan:
                continue
            if vehicles[v, V_AT_DEPOT] < 0.5:  # it has left (it cannot be given more of this trip)
                self._plans[v] = []
                continue
            matched = self.match(plan, rows, reserved)
            reserved.update(r[0] for r in matched)
            if matched:
                action[v] = matched[0][0] + 1
            self._plans[v] = matched[1:]
        return reserved

    def match(self, plan: list[tuple], rows: list[tuple], taken: set[int]) -> list[tuple]:
        """The rows still pending of a planned route, in its order (slots in ``taken`` excluded)."""
        matched, used = [], set(taken)
        for key in plan:
            row = next((r for r in rows if r[0] not in used and self._same(r, key)), None)
            if row is not None:
                used.add(row[0])
                matched.append(row)
        return matched

    def free_vehicles(self, vehicles: np.ndarray, action: np.ndarray) -> list[int]:
        """Vehicles parked empty at their depot, with no order this tick and no route being handed over."""
        return [v for v in range(self.n_vehicles) if action[v] == 0 and not self._plans[v]
                and vehicles[v, V_AT_DEPOT] > 0.5 and vehicles[v, V_N_STOPS] == 0]

    def new_routes(self, rows: list[tuple], reserved: set[int], vehicles: np.ndarray, action: np.ndarray,
                   now: float, orders: np.ndarray, exclude: set[int] = frozenset()):
        """Per depot with free vehicles (not in ``exclude``) whose unplanned orders are worth a trip:
        (depot, its free vehicles, routes in hand-over order, each a list of order rows)."""
        unplanned = [r for r in rows if r[0] not in reserved]
        free_at: dict[int, list[int]] = {}
        for v in self.free_vehicles(vehicles, action):
            if v not in exclude:
                free_at.setdefault(self.vehicle_depots[v], []).append(v)
        if not free_at or not unplanned:
            return []
        # an order goes to the nearest depot that has a free vehicle (else the oldest orders of a busy
        # depot would block the others)
        open_depots = [d for d in self.depot_nodes if d in free_at]
        nearest = np.asarray(open_depots)[np.argmin(self.dist_km[np.ix_(open_depots, [r[1] for r in unplanned])],
                                                    axis=0)].tolist()
        out = []
        for depot in open_depots:
            free = free_at[depot]
            mine = [r for r, d in zip(unplanned, nearest) if d == depot]
            if not mine:
                continue
            capacity = float(min(vehicles[v, V_REMAINING] for v in free))
            if self._release(mine, depot, capacity, free[0], now, orders):
                out.append((depot, free, self._plan_routes(mine, depot, capacity, free[0], now)))
        return out

    def _release(self, rows: list[tuple], depot: int, capacity: float, v: int, now: float,
                 orders: np.ndarray) -> bool:
        """Is the batch worth a trip now (full enough, waited long enough, or urgent)?"""
        if sum(r[2] for r in rows) >= self.min_fill * capacity:
            return True
        if max(float(orders[r[0], O_AGE]) for r in rows) >= self.max_hold_min:
            return True
        t = self.time_min[v][depot]
        start = now + self.load_time_min
        return any(r[4] - (start + t[r[1]]) <= self.slack_min for r in rows)

    def _lateness(self, route: list[tuple], depot: int, v: int, start: float) -> float:
        """Total minutes late if vehicle ``v`` leaves ``depot`` at ``start`` and serves ``route`` in order."""
        return minutes_late(self.time_min[v], depot, [(r[1], r[3], r[4]) for r in route], start, self.service_time_min)

    def _plan_routes(self, rows: list[tuple], depot: int, capacity: float, v: int, now: float) -> list[list[tuple]]:
        nodes = [depot] + [r[1] for r in rows]
        instance = CVRPInstance(self.dist_km[np.ix_(nodes, nodes)], np.array([0.0] + [r[2] for r in rows]),
                                capacity, node_ids=nodes)
        start = now + self.load_time_min
        routes = []
        for idx in self.route_planner(instance):
            route = [rows[i - 1] for i in idx]
            if self._lateness(route[::-1], depot, v, start) < self._lateness(route, depot, v, start):
                route.reverse()
            routes.append(route)
        routes.sort(key=lambda route: (min(r[4] for r in route), route[0][0]))
        return routes


class RandomDispatcher:
    """Naive reference: each vehicle picks uniformly among its allowed options (0 included).

    Allowed options follow the action mask as far as the observation shows it: a valid slot whose demand
    fits the vehicle's remaining capacity, not picked by a lower-numbered vehicle this tick.
    """

    def __init__(self, fleet: FleetSim | DispatchEnv, seed: int | None = 0):
        sim = _fleet_sim(fleet)
        self.n_vehicles, self.n_slots = sim.n_vehicles, sim.max_pending
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        orders, vehicles = observation["orders"], observation["vehicles"]
        action = np.zeros(self.n_vehicles, dtype=np.int64)
        if observation["clock"][C_SHIFT_LEFT] <= 0:
            return action
        free = orders[:, O_VALID] > 0.5
        for v in range(self.n_vehicles):
            options = np.flatnonzero(free & (orders[:, O_DEMAND] <= vehicles[v, V_REMAINING]))
            k = int(self.rng.integers(len(options) + 1))
            if k > 0:
                action[v] = options[k - 1] + 1
                free[options[k - 1]] = False
        return action
