"""A delivery fleet on a road network: orders with time windows arrive, a dispatcher assigns them to vehicles.

The fleet model
---------------
* **Road network** (`environments.road_network`): a generated city or a GraphML file. Vehicles follow the
  shortest-distance path between stops; an edge takes ``length_km / min(road speed, vehicle speed)``.
* **Depots**: ``n_depots`` well-spread nodes (the most central first). Vehicle ``i`` belongs to depot
  ``i % n_depots``; it loads there and comes back there. Every other node is a possible customer.
* **Orders** carry a customer node, a demand (units) and a time window ``[start, end]`` (minutes since
  reset). Standalone, they arrive by a seeded Poisson process; in the whole Plant, finished goods become
  orders through `FleetSim.add_order` (or `FleetSim.add_random_order`).
* **Vehicles** have a capacity (units) and a top speed. An assigned order joins the vehicle's *queue*
  for its next trip. A vehicle waiting at its depot with a non-empty queue *departs* at the start of the
  first tick in which it gets no new order (so a dispatcher hands over a route one order per tick and
  then lets it go). It loads for ``load_time_min``, drives to its stops in the order they were assigned,
  waits at a stop until the window opens, serves for ``service_time_min`` and returns to its depot. Orders
  assigned while it is out wait for the next trip. No trip starts after ``shift_minutes``.
* **Time windows are soft**: serving after the window closes is late, not forbidden. Lateness is measured
  at the start of service; an order is delivered when its service ends.

Books: ``orders created == delivered + pending + assigned`` at every instant, where *assigned* counts
orders queued for a vehicle's next trip and orders on board (including the one being served).

The core (`FleetSim`) has no gym dependency; `DispatchEnv` is the Gymnasium wrapper. Random numbers come
from the seeded generator in pre-drawn batches, so a seed gives the same run.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.draws import Draws
from environments.errors import ShopfloorInputError
from environments.road_network import RoadConfig, RoadNetwork, build_road_network, shortest_path

IDLE, LOAD, DRIVE, WAIT, SERVICE = range(5)  # vehicle activities; IDLE = parked at the depot

ORDER_FEATURES = ("valid", "node", "x_km", "y_km", "demand_units", "window_start_min", "window_end_min", "age_min")
VEHICLE_FEATURES = ("x_km", "y_km", "remaining_capacity_units", "route_remaining_km", "at_depot", "n_stops",
                    "anchor_node", "minutes_until_free")
CLOCK_FEATURES = ("time_of_day_h", "elapsed_min", "shift_left_min", "n_pending")
HORIZON_MIN = 1.0e5  # relative times in the observation are clipped to +-HORIZON_MIN minutes
BIG = 1.0e7  # bound of unbounded counters in the observation


class VehicleConfig(BaseModel):
    """One delivery vehicle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity_units: float = Field(20.0, gt=0, description="Load the vehicle carries per trip, units.")
    speed_kmh: float = Field(40.0, gt=0, le=200, description="Top speed; roads with a lower limit are slower, km/h.")


class FleetConfig(BaseModel):
    """The fleet, its road network, its orders and the dispatch reward."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    road: RoadConfig = Field(default_factory=RoadConfig, description="Road network: generated city or GraphML.")
    n_depots: int = Field(1, ge=1, le=32, description="Depots; vehicle i belongs to depot i % n_depots.")
    vehicles: list[VehicleConfig] | None = Field(None, min_length=1, max_length=256,
                                                 description="Explicit fleet; None means n_vehicles identical ones.")
    n_vehicles: int = Field(4, ge=1, le=256, description="Vehicles; with `vehicles` given, its length.")
    capacity_units: float = Field(20.0, gt=0, description="Capacity of each vehicle unless `vehicles` is given, units.")
    speed_kmh: float = Field(40.0, gt=0, le=200,
                             description="Top speed of each vehicle unless `vehicles` is given, km/h.")
    shift_minutes: float = Field(600.0, gt=0, description="No trip starts after this time since reset, minutes.")
    start_hour: float = Field(8.0, ge=0, lt=24, description="Time of day at reset, hours.")
    order_rate_per_h: float = Field(20.0, ge=0, description="Standalone Poisson order arrival rate, orders/h.")
    demand_min_units: int = Field(1, ge=1, description="Smallest order, units (uniform integer demand).")
    demand_max_units: int = Field(5, ge=1, description="Largest order, units (uniform integer demand).")
    window_offset_max_min: float = Field(30.0, ge=0,
                                         description="Window opens uniformly 0..this after the order, minutes.")
    time_window_min: float = Field(120.0, gt=0, description="Width of a delivery time window, minutes.")
    service_time_min: float = Field(3.0, ge=0, description="Time to hand over one order at the customer, minutes.")
    load_time_min: float = Field(5.0, ge=0, description="Time to load a vehicle at the depot per trip, minutes.")
    max_pending_orders: int = Field(16, ge=1, le=256, description="Pending-order slots in observation and action.")
    delivery_reward: float = Field(1.0, ge=0, description="Reward per order delivered.")
    distance_cost_per_km: float = Field(0.05, ge=0, description="Reward cost per km driven.")
    lateness_cost_per_min: float = Field(0.01, ge=0, description="Reward cost per order-minute past a window's end.")
    invalid_action_cost: float = Field(0.01, ge=0, description="Reward cost per ignored (invalid) assignment.")

    @model_validator(mode="after")
    def _check(self) -> FleetConfig:
        if self.vehicles is not None:
            if "n_vehicles" in self.model_fields_set and self.n_vehicles != len(self.vehicles):
                raise ValueError(f"n_vehicles {self.n_vehicles} does not match the {len(self.vehicles)} vehicles "
                                 "listed; give one or make them agree")
            # A resolved scenario (every default written out) must validate again to the same config.
            object.__setattr__(self, "n_vehicles", len(self.vehicles))
        if self.demand_min_units > self.demand_max_units:
            raise ValueError(f"demand_min_units {self.demand_min_units} must not exceed "
                             f"demand_max_units {self.demand_max_units}")
        biggest = max(v.capacity_units for v in self.fleet)
        if self.demand_max_units > biggest:
            raise ValueError(f"demand_max_units {self.demand_max_units} exceeds the largest vehicle capacity "
                             f"{biggest}; every order must fit some vehicle")
        if self.road.graphml_path is None and self.n_depots > self.road.n_nodes // 2:
            raise ValueError(f"n_depots {self.n_depots} is too many for a {self.road.n_nodes}-node city; "
                             f"allowed at most {self.road.n_nodes // 2}")
        return self

    @property
    def fleet(self) -> list[VehicleConfig]:
        """Every vehicle's configuration."""
        if self.vehicles is not None:
            return list(self.vehicles)
        return [VehicleConfig(capacity_units=self.capacity_units, speed_kmh=self.speed_kmh)] * self.n_vehicles


class Order:
    """One delivery. Times are minutes since reset; ``vehicle`` is -1 while pending."""

    __slots__ = ("id", "node", "demand", "window_start", "window_end", "created", "vehicle", "service_start",
                 "delivered_at", "row")

    def __init__(self, order_id: int, node: int, demand: float, window_start: float, window_end: float,
                 created: float, xy: tuple[float, float]):
        self.id, self.node, self.demand = order_id, node, demand
        self.window_start, self.window_end, self.created = window_start, window_end, created
        self.vehicle = -1
        self.service_start = self.delivered_at = math.nan
        # observation row with absolute times; `FleetSim.observation` makes them relative to now
        self.row = (1.0, float(node), xy[0], xy[1], demand, window_start, window_end, created)

    def __repr__(self) -> str:
        return (f"Order(id={self.id}, node={self.node}, demand={self.demand}, "
                f"window=[{self.window_start:.1f}, {self.window_end:.1f}], vehicle={self.vehicle})")


class Vehicle:
    """One vehicle's state. ``onboard`` is the current trip in visiting order; ``queue`` the next trip."""

    __slots__ = ("index", "depot", "capacity", "speed_kmh", "dist", "time", "node", "activity", "t_start", "t_end",
                 "leg_from", "leg_to", "leg_km", "acc_t", "onboard", "queue", "load_onboard", "load_queued",
                 "km", "busy_min", "busy_shift_min", "trips", "assigned_now", "tail")

    def __init__(self, index: int, depot: int, capacity: float, speed_kmh: float, dist: list, time: list):
        self.index, self.depot, self.capacity, self.speed_kmh = index, depot, capacity, speed_kmh
        self.dist, self.time = dist, time  # all-pairs km and minutes as nested lists
        self.node = depot
        self.activity = IDLE
        self.t_start, self.t_end = 0.0, math.inf
        self.leg_from = self.leg_to = depot
        self.leg_km = 0.0
        self.acc_t = 0.0  # time up to which km and busy time are accounted
        self.onboard: deque[Order] = deque()
        self.queue: list[Order] = []
        self.load_onboard = self.load_queued = 0.0
        self.km = self.busy_min = self.busy_shift_min = 0.0
        self.trips = 0
        self.assigned_now = False
        self.tail: tuple[float, float, int] | None = None  # cached plan after the current activity

    def set_activity(self, activity: int, t_start: float, t_end: float) -> None:
        self.activity, self.t_start, self.t_end = activity, t_start, t_end
        self.tail = None

    @property
    def remaining_capacity(self) -> float:
        return self.capacity - self.load_onboard - self.load_queued


class FleetSim:
    """Delivery-fleet simulator (no gym). Time is in minutes since reset; one `step` is ``dt_s`` seconds.

    Parameters
    ----------
    config : FleetConfig
    rng : np.random.Generator
        The only source of randomness (order arrivals, customers, demands, windows).
    dt_s : float
        Length of one control tick, seconds.
    generate_orders : bool
        If True, orders arrive by the config's Poisson process; the whole Plant passes False and feeds
        finished goods in through `add_order` / `add_random_order`.

    Attributes
    ----------
    network : RoadNetwork
        Road graph and all-pairs shortest distances (``network.dist_km``, ``network.time_min(speed)``).
    depot_nodes : list[int]
    vehicle_depots : list[int]
        Depot node of every vehicle.
    customer_nodes : list[int]
    pending : list[Order]
        Unassigned orders, oldest first; slot ``k`` of the observation is ``pending[k]``.
    orders : dict[int, Order]
        Every order since reset (for logs and plots).
    """

    def __init__(self, config: FleetConfig, rng: np.random.Generator, dt_s: float = 60.0,
                 generate_orders: bool = True):
        assert dt_s > 0, "dt_s must be positive"
        self.config, self.rng, self.dt_s, self.dt_min = config, rng, dt_s, dt_s / 60.0
        self.generate_orders = generate_orders
        self.network: RoadNetwork = build_road_network(config.road)
        if config.n_depots * 2 > self.network.n_nodes:
            raise ShopfloorInputError(f"fleet.n_depots={config.n_depots} is too many for a road graph of "
                                      f"{self.network.n_nodes} nodes; allowed at most {self.network.n_nodes // 2}")
        self.depot_nodes = self.network.spread_nodes(config.n_depots)
        depots = set(self.depot_nodes)
        self.customer_nodes = [n for n in range(self.network.n_nodes) if n not in depots]
        self.fleet = config.fleet
        self.n_vehicles = len(self.fleet)
        self.vehicle_depots = [self.depot_nodes[i % config.n_depots] for i in range(self.n_vehicles)]
        self.max_pending = config.max_pending_orders
        self.max_capacity = max(v.capacity_units for v in self.fleet)
        self._xy = self.network.xy.tolist()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        cfg, net = self.config, self.network
        self._draws = Draws(self.rng, 1024)
        self.now = 0.0
        self.vehicles = [Vehicle(i, self.vehicle_depots[i], v.capacity_units, v.speed_kmh, net.dist_rows(),
                                 net.time_rows(v.speed_kmh)) for i, v in enumerate(self.fleet)]
        self.orders: dict[int, Order] = {}
        self.pending: list[Order] = []
        self.legs: list[list[tuple[int, int]]] = [[] for _ in self.vehicles]  # (from, to) nodes driven
        # Lateness accrues for orders not yet served: `_due` is a heap of (window end, id) of orders not yet
        # past their window, `_overdue` the unserved orders already past it.
        self._due: list[tuple[float, int]] = []
        self._overdue: dict[int, Order] = {}
        self._next_id = 0
        rate = cfg.order_rate_per_h if self.generate_orders else 0.0
        self._mean_gap_min = 60.0 / rate if rate > 0 else math.inf
        self._next_arrival = self._draws.e() * self._mean_gap_min
        self._tick_t0 = 0.0
        # books and KPI accumulators
        self.n_created = self.n_delivered = self.n_on_time = self.n_invalid = 0
        self._lateness_sum_min = self._delivery_time_sum_min = self._overdue_sum_min = 0.0
        # last tick
        self.delivered_tick = self.invalid_tick = 0
        self.km_tick = self.overdue_tick_min = 0.0
        self.delivered_this_tick: list[Order] = []

    # ----------------------------------------------------------------- orders
    def add_order(self, node: int, demand_units: float, window_start_min: float, window_end_min: float) -> int:
        """Create an order now (the whole Plant calls this for finished goods); returns its id.

        Parameters
        ----------
        node : int
            Customer node (0..n_nodes-1, not a depot).
        demand_units : float
            Units to deliver; must fit the largest vehicle (split bigger batches).
        window_start_min, window_end_min : float
            Delivery window, minutes since reset (absolute, like `now`).
        """
        assert 0 <= node < self.network.n_nodes and node not in self.depot_nodes, f"node {node} is not a customer"
        assert 0 < demand_units <= self.max_capacity, \
            f"demand {demand_units} must be > 0 and fit the largest vehicle ({self.max_capacity} units)"
        assert window_end_min >= window_start_min, f"window [{window_start_min}, {window_end_min}] is reversed"
        return self._create(int(node), float(demand_units), float(window_start_min), float(window_end_min), self.now)

    def add_random_order(self, demand_units: float | None = None) -> int:
        """Create an order now at a random customer with a window drawn as in standalone mode; returns its id.

        ``demand_units`` None draws it from the configured demand distribution.
        """
        if demand_units is None:
            demand_units = self._draw_demand()
        node, ws, we = self._draw_place_and_window(self.now)
        return self.add_order(node, demand_units, ws, we)

    def random_customer_node(self, rng: np.random.Generator | None = None) -> int:
        """A uniformly random customer node, drawn from ``rng`` (default: the simulator's own stream)."""
        n = len(self.customer_nodes)
        u = float(rng.random()) if rng is not None else self._draws.u()
        return self.customer_nodes[min(int(u * n), n - 1)]

    def _draw_demand(self) -> float:
        lo, hi = self.config.demand_min_units, self.config.demand_max_units
        return float(lo + min(int(self._draws.u() * (hi - lo + 1)), hi - lo))

    def _draw_place_and_window(self, t: float) -> tuple[int, float, float]:
        cfg = self.config
        node = self.random_customer_node()
        ws = t + self._draws.u() * cfg.window_offset_max_min
        return node, ws, ws + cfg.time_window_min

    def _create(self, node: int, demand: float, ws: float, we: float, t: float) -> int:
        order = Order(self._next_id, node, demand, ws, we, t, self._xy[node])
        self._next_id += 1
        self.orders[order.id] = order
        self.pending.append(order)
        heapq.heappush(self._due, (we, order.id))
        self.n_created += 1
        return order.id

    def _arrivals(self, until: float) -> None:
        while self._next_arrival <= until:
            t = self._next_arrival
            demand = self._draw_demand()
            node, ws, we = self._draw_place_and_window(t)
            self._create(node, demand, ws, we, t)
            self._next_arrival = t + self._draws.e() * self._mean_gap_min

    # ---------------------------------------------------------------- actions
    def apply_action(self, action) -> None:
        """Append pending orders to vehicle queues (see `DispatchEnv` for the action semantics).

        Invalid entries (empty slot, out of range, too heavy, an order already taken this tick, after the
        shift) are ignored and counted in ``invalid_tick``.
        """
        acts = action.tolist() if isinstance(action, np.ndarray) else list(action)
        assert len(acts) == self.n_vehicles, f"{len(acts)} action entries for {self.n_vehicles} vehicles"
        visible = self.pending[:self.max_pending]
        shift_over = self.now >= self.config.shift_minutes
        taken: set[int] = set()
        for v, a in zip(self.vehicles, acts):
            v.assigned_now = False
            try:
                a = int(a)
            except (TypeError, ValueError, OverflowError):
                self.invalid_tick += 1
                continue
            if a == 0:
                continue
            if a < 0 or a > len(visible) or shift_over:
                self.invalid_tick += 1
                continue
            order = visible[a - 1]
            if order.id in taken or order.demand > v.remaining_capacity + 1e-9:
                self.invalid_tick += 1
                continue
            taken.add(order.id)
            order.vehicle = v.index
            v.queue.append(order)
            v.load_queued += order.demand
            v.assigned_now = True
            v.tail = None
        if taken:
            self.pending = [o for o in self.pending if o.id not in taken]
        self.n_invalid += self.invalid_tick

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask, shape ``(n_vehicles * (max_pending_orders + 1),)``, vehicle-major.

        Entry ``v * (K + 1) + k`` is True if vehicle ``v`` may take action ``k`` (0 = no new order, always
        allowed). It cannot express "one order to one vehicle per tick": of two vehicles given the same
        order in one tick, the lower-numbered one gets it and the other entry is ignored.
        """
        visible = self.pending[:self.max_pending]
        if not visible or self.now >= self.config.shift_minutes:
            demands = []
        else:
            demands = [o.demand for o in visible]
        pad = [False] * (self.max_pending - len(demands))
        flat: list[bool] = []
        for v in self.vehicles:
            rem = v.remaining_capacity + 1e-9
            flat.append(True)
            flat += [d <= rem for d in demands]
            flat += pad
        return np.array(flat, dtype=bool)

    # ------------------------------------------------------------------ clock
    def step(self, action) -> None:
        """One control tick: apply the assignments, start trips, then simulate ``dt`` minutes."""
        t0 = self.now
        t1 = t0 + self.dt_min
        self._tick_t0 = t0
        self.delivered_tick = self.invalid_tick = 0
        self.km_tick = self.overdue_tick_min = 0.0
        self.delivered_this_tick = []
        self.apply_action(action)
        if t0 < self.config.shift_minutes:
            for v in self.vehicles:
                if v.activity == IDLE and v.queue and not v.assigned_now:
                    self._depart(v, t0)
        for v in self.vehicles:
            self._advance(v, t1)
        self._arrivals(t1)
        # order-minutes past the window's end during this tick, for orders still not served at its end
        self.overdue_tick_min += len(self._overdue) * (t1 - t0)
        due, orders = self._due, self.orders
        while due and due[0][0] < t1:
            we, oid = heapq.heappop(due)
            order = orders[oid]
            if order.service_start != order.service_start:  # NaN: not served yet
                self.overdue_tick_min += t1 - max(we, t0)
                self._overdue[oid] = order
        self._overdue_sum_min += self.overdue_tick_min
        self.now = t1

    @property
    def now_min(self) -> float:
        """Minutes since reset (the same as ``now``)."""
        return self.now

    @property
    def last_reward(self) -> float:
        """`tick_reward` of the last tick."""
        return self.tick_reward()

    def tick_reward(self) -> float:
        """Reward of the last tick (formula in `DispatchEnv`)."""
        cfg = self.config
        return (cfg.delivery_reward * self.delivered_tick - cfg.distance_cost_per_km * self.km_tick
                - cfg.lateness_cost_per_min * self.overdue_tick_min - cfg.invalid_action_cost * self.invalid_tick)

    # --------------------------------------------------------------- vehicles
    def _depart(self, v: Vehicle, t: float) -> None:
        v.onboard.extend(v.queue)
        v.load_onboard += v.load_queued
        v.queue, v.load_queued = [], 0.0
        v.trips += 1
        v.acc_t = t  # parked time is not busy; nothing to account
        v.set_activity(LOAD, t, t + self.config.load_time_min)

    def _drive_next(self, v: Vehicle, t: float) -> None:
        target = v.onboard[0].node if v.onboard else v.depot
        v.leg_from, v.leg_to = v.node, target
        v.leg_km = v.dist[v.node][target]
        if v.node != target:
            self.legs[v.index].append((v.node, target))
        v.set_activity(DRIVE, t, t + v.time[v.node][target])

    def _start_service(self, v: Vehicle, order: Order, t: float) -> None:
        order.service_start = t
        if self._overdue.pop(order.id, None) is not None or t > order.window_end:
            self.overdue_tick_min += t - max(order.window_end, self._tick_t0)
        v.set_activity(SERVICE, t, t + self.config.service_time_min)

    def _deliver(self, v: Vehicle, t: float) -> None:
        order = v.onboard.popleft()
        v.load_onboard -= order.demand
        order.delivered_at = t
        late = order.service_start - order.window_end
        self.n_delivered += 1
        self.n_on_time += late <= 1e-9
        self._lateness_sum_min += late if late > 0 else 0.0
        self._delivery_time_sum_min += t - order.created
        self.delivered_tick += 1
        self.delivered_this_tick.append(order)

    def _accrue(self, v: Vehicle, t: float) -> None:
        """Account km and busy time of vehicle ``v`` from its last accounting time up to ``t``."""
        dt = t - v.acc_t
        if dt <= 0 or v.activity == IDLE:
            v.acc_t = max(v.acc_t, t)
            return
        v.busy_min += dt
        shift = self.config.shift_minutes
        if v.acc_t < shift:
            v.busy_shift_min += min(t, shift) - v.acc_t
        if v.activity == DRIVE and v.t_end > v.t_start:
            km = v.leg_km * dt / (v.t_end - v.t_start)
            v.km += km
            self.km_tick += km
        v.acc_t = t

    def _advance(self, v: Vehicle, until: float) -> None:
        while v.activity != IDLE and v.t_end <= until:
            t = v.t_end
            self._accrue(v, t)
            act = v.activity
            if act == LOAD:
                self._drive_next(v, t)
            elif act == DRIVE:
                v.node = v.leg_to
                if v.onboard:
                    order = v.onboard[0]
                    if t < order.window_start:
                        v.set_activity(WAIT, t, order.window_start)
                    else:
                        self._start_service(v, order, t)
                else:  # back at the depot
                    v.set_activity(IDLE, t, math.inf)
            elif act == WAIT:
                self._start_service(v, v.onboard[0], t)
            else:  # SERVICE
                self._deliver(v, t)
                self._drive_next(v, t)
        self._accrue(v, until)

    # ------------------------------------------------------------ read-outs
    def vehicle_position(self, v: Vehicle) -> tuple[float, float]:
        """Position in km; on the road it is interpolated on the straight line between the leg's ends."""
        if v.activity == DRIVE and v.t_end > v.t_start:
            f = min(max((self.now - v.t_start) / (v.t_end - v.t_start), 0.0), 1.0)
            (x0, y0), (x1, y1) = self._xy[v.leg_from], self._xy[v.leg_to]
            return x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        x, y = self._xy[v.node]
        return x, y

    def _tail(self, v: Vehicle) -> tuple[float, float, int]:
        """(km, minutes, anchor node) of the plan after the current activity ends (window waits ignored).

        Cached on the vehicle until its activity, trip or queue changes.
        """
        if v.tail is not None:
            return v.tail
        cfg, dist, time = self.config, v.dist, v.time
        km = minutes = 0.0
        stops: list[Order] = list(v.onboard)
        here = v.node
        if v.activity == DRIVE:
            here = v.leg_to
            if stops:  # it is driving to the first stop, which still needs serving
                minutes += cfg.service_time_min
                stops = stops[1:]
        elif v.activity in (WAIT, SERVICE):
            minutes += cfg.service_time_min if v.activity == WAIT else 0.0
            stops = stops[1:]
        for o in stops:
            km += dist[here][o.node]
            minutes += time[here][o.node] + cfg.service_time_min
            here = o.node
        if v.activity != IDLE:
            km += dist[here][v.depot]
            minutes += time[here][v.depot]
            here = v.depot
        if v.queue:
            minutes += cfg.load_time_min
            for o in v.queue:
                km += dist[here][o.node]
                minutes += time[here][o.node] + cfg.service_time_min
                here = o.node
            km += dist[here][v.depot]
            minutes += time[here][v.depot]
        last = v.queue[-1] if v.queue else (v.onboard[-1] if v.onboard else None)
        v.tail = (km, minutes, last.node if last is not None else v.depot)
        return v.tail

    def observation(self) -> dict[str, np.ndarray]:
        """The Dispatch observation (layout in `DispatchEnv`), shared with the Plant's dispatch agent."""
        # Plain Python, one numpy conversion per table: small numpy ops cost microseconds each.
        now, cfg, h = self.now, self.config, HORIZON_MIN
        visible = self.pending[:self.max_pending]
        flat: list[float] = []
        for o in visible:
            valid, node, x, y, demand, ws, we, created = o.row
            ws, we, age = ws - now, we - now, now - created
            if not -h <= ws <= h or not -h <= we <= h or age > h:
                ws, we, age = min(max(ws, -h), h), min(max(we, -h), h), min(age, h)
            flat += (valid, node, x, y, demand, ws, we, age)
        flat += [0.0] * (len(ORDER_FEATURES) * (self.max_pending - len(visible)))
        vrows = []
        for v in self.vehicles:
            x, y = self.vehicle_position(v)
            km, minutes, anchor = self._tail(v)
            if v.activity != IDLE:  # what is left of the current activity
                left = v.t_end - now
                minutes += left
                if v.activity == DRIVE and v.t_end > v.t_start:
                    km += v.leg_km * left / (v.t_end - v.t_start)
            vrows.append((x, y, v.remaining_capacity, min(km, BIG), 1.0 if v.activity == IDLE else 0.0,
                          len(v.onboard) + len(v.queue), anchor, min(minutes, BIG)))
        clock = (math.fmod(cfg.start_hour + now / 60.0, 24.0), min(now, BIG),
                 max(cfg.shift_minutes - now, 0.0), min(len(self.pending), BIG))
        return {"orders": np.array(flat, dtype=np.float32).reshape(self.max_pending, len(ORDER_FEATURES)),
                "vehicles": np.array(vrows, dtype=np.float32),
                "clock": np.asarray(clock, dtype=np.float32)}

    def observation_space(self) -> spaces.Dict:
        """The (fixed) space of `observation`."""
        cfg, net = self.config, self.network
        (x0, y0), (x1, y1) = net.xy.min(axis=0) - 1e-3, net.xy.max(axis=0) + 1e-3
        n, cap, h = net.n_nodes - 1, self.max_capacity, HORIZON_MIN
        o_lo = np.array([0, 0, x0, y0, 0, -h, -h, 0], dtype=np.float32)
        o_hi = np.array([1, n, x1, y1, cap, h, h, h], dtype=np.float32)
        v_lo = np.array([x0, y0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
        v_hi = np.array([x1, y1, cap, BIG, 1, BIG, n, BIG], dtype=np.float32)
        k, nv = self.max_pending, self.n_vehicles
        return spaces.Dict({
            "orders": spaces.Box(np.tile(o_lo, (k, 1)), np.tile(o_hi, (k, 1)), dtype=np.float32),
            "vehicles": spaces.Box(np.tile(v_lo, (nv, 1)), np.tile(v_hi, (nv, 1)), dtype=np.float32),
            "clock": spaces.Box(np.array([0, 0, 0, 0], dtype=np.float32),
                                np.array([24, BIG, cfg.shift_minutes, BIG], dtype=np.float32), dtype=np.float32),
        })

    def action_space(self) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([self.max_pending + 1] * self.n_vehicles)

    def books(self) -> dict[str, int]:
        """Order counts: created == delivered + pending + assigned (queued or on board)."""
        queued = sum(len(v.queue) for v in self.vehicles)
        onboard = sum(len(v.onboard) for v in self.vehicles)
        return {"created": self.n_created, "delivered": self.n_delivered, "pending": len(self.pending),
                "queued": queued, "onboard": onboard}

    def route_history(self) -> dict:
        """The road map and what each vehicle drove on it, for the route plot (plain JSON values, km)."""
        graph, xy = self.network.graph, self._xy
        edges_xy = [[xy[a], xy[b]] for a, b in graph.edges]
        out = []
        for v, legs in zip(self.vehicles, self.legs):
            path: list[int] = []
            for a, b in legs:
                nodes = shortest_path(graph, a, b)
                path += nodes if not path or path[-1] != nodes[0] else nodes[1:]
            stops = [xy[o.node] for o in self.orders.values() if o.vehicle == v.index and o.delivered_at == o.delivered_at]
            out.append({"vehicle": v.index, "distance_km": v.km, "path_xy": [xy[n] for n in path], "stops_xy": stops})
        return {"edges_xy": edges_xy, "depots_xy": [xy[d] for d in self.depot_nodes], "vehicles": out}

    def kpis(self) -> dict[str, float]:
        """The fleet's KPIs since reset (definitions in design notes §3)."""
        delivered, n_v = self.n_delivered, self.n_vehicles
        distance = sum(v.km for v in self.vehicles)
        available = n_v * min(self.now, self.config.shift_minutes)
        books = self.books()
        return {
            "distance_km": distance,
            "on_time_rate": self.n_on_time / delivered if delivered else 0.0,
            "vehicle_utilization": sum(v.busy_shift_min for v in self.vehicles) / available if available else 0.0,
            "orders_created": float(self.n_created),
            "orders_delivered": float(delivered),
            "orders_on_time": float(self.n_on_time),
            "orders_late": float(delivered - self.n_on_time),
            "orders_pending": float(books["pending"]),
            "orders_assigned": float(books["queued"] + books["onboard"]),
            "lateness_mean_min": self._lateness_sum_min / delivered if delivered else 0.0,
            "delivery_time_mean_min": self._delivery_time_sum_min / delivered if delivered else 0.0,
            "overdue_order_min": self._overdue_sum_min,
            "km_per_order": distance / delivered if delivered else 0.0,
            "trips": float(sum(v.trips for v in self.vehicles)),
            "overtime_min": sum(v.busy_min - v.busy_shift_min for v in self.vehicles),
            "invalid_actions": float(self.n_invalid),
        }


class DispatchEnv(gym.Env):
    """Dispatch a delivery fleet: each tick, give each vehicle at most one pending order.

    ``K = max_pending_orders``, ``V`` = number of vehicles. Positions are km, times minutes, loads units
    (raw units, not normalised; wrap with ``gymnasium.wrappers.NormalizeObservation`` for learning).

    ## Observation
    ``Dict`` of float32 boxes. A dict keeps the tables as tables, so a set or graph encoder (the GNN
    dispatcher) reads rows as entities; ``gymnasium.spaces.flatten`` gives one vector for an MLP, and
    stable-baselines3's ``MultiInputPolicy`` takes it as is.

    | key        | shape    | columns                                                                      |
    |------------|----------|------------------------------------------------------------------------------|
    | "orders"   | (K, 8)   | valid (1/0), node, x_km, y_km, demand_units, window_start_min,               |
    |            |          | window_end_min (both relative to now, clipped to +-1e5), age_min            |
    | "vehicles" | (V, 8)   | x_km, y_km, remaining_capacity_units (capacity - on board - queued),         |
    |            |          | route_remaining_km (to finish all assigned orders and return), at_depot      |
    |            |          | (1 = parked at its depot: orders given now leave with it), n_stops,          |
    |            |          | anchor_node (node of the last assigned order, else its depot),               |
    |            |          | minutes_until_free                                                           |
    | "clock"    | (4,)     | time_of_day_h, elapsed_min, shift_left_min, n_pending (all pending orders)   |

    Row ``k`` of "orders" is the k-th oldest pending order; rows past the pending count are zero
    (valid = 0). Orders beyond K wait unseen until slots free up.

    ## Action
    ``MultiDiscrete([K + 1] * V)``: for vehicle ``v``, 0 = no new order (it keeps doing what it does;
    a vehicle parked with queued orders departs), ``k`` = append the order in slot ``k - 1`` to its queue.
    `action_masks` (and ``info["action_mask"]``) give the flat vehicle-major boolean mask in the format of
    sb3-contrib's MaskablePPO: it forbids empty slots, orders heavier than the vehicle's remaining capacity
    and any assignment after the shift. Invalid entries, including the same order to two vehicles in one
    tick (the lower-numbered vehicle gets it), are ignored and counted; they never raise.

    ## Reward
    Per tick: ``delivery_reward * delivered - distance_cost_per_km * km_driven
    - lateness_cost_per_min * overdue_order_minutes - invalid_action_cost * invalid_entries``, where
    overdue order-minutes add, for every order not yet served, the minutes of this tick past its window
    end (so lateness is charged as it accrues, for delivered and undelivered orders alike).

    ## Start and end
    Vehicles start parked at their depots, empty, with no orders; orders then arrive by a Poisson process
    (``order_rate_per_h``) at uniformly random customers. The episode never terminates; it is truncated
    after ``episode_minutes``.

    ## KPIs
    `FleetSim.kpis`: distance_km, on_time_rate, vehicle_utilization, orders_delivered, orders_late,
    orders_pending, lateness_mean_min, delivery_time_mean_min, km_per_order, ... ``info`` carries the tick's
    deliveries, km and invalid entries.

    ## Version history
    * v0: first release.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: FleetConfig | None = None, dt_s: float = 60.0, episode_minutes: float = 480.0):
        self.config = config or FleetConfig()
        self.dt_s, self.episode_minutes = dt_s, episode_minutes
        # Built once here so dispatchers can read the static layout before reset; reset rebuilds it on
        # the seeded np_random (the road network is cached, so that is cheap).
        self.sim = FleetSim(self.config, np.random.default_rng(0), dt_s)
        self.observation_space = self.sim.observation_space()
        self.action_space = self.sim.action_space()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim = FleetSim(self.config, self.np_random, self.dt_s)
        return self.sim.observation(), {"action_mask": self.sim.action_masks()}

    def step(self, action):
        sim = self.sim
        sim.step(action)
        truncated = sim.now >= self.episode_minutes - 1e-9
        info = {"delivered": sim.delivered_tick, "km": sim.km_tick, "overdue_order_min": sim.overdue_tick_min,
                "invalid_actions": sim.invalid_tick, "action_mask": sim.action_masks()}
        return sim.observation(), float(sim.tick_reward()), False, truncated, info

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask for sb3-contrib MaskablePPO (see `FleetSim.action_masks`)."""
        return self.sim.action_masks()
