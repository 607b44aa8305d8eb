"""Contract-net dispatch: each vehicle is an agent that bids its marginal route cost for announced orders.

Policy ``contract_net`` for ``agents.dispatch``. Over the blackboard (topics as in `agents.negotiation`):

* tick t: the `FleetManagerAgent` (name ``dispatch``) announces every new pending order as ``cfp/<order>``;
* tick t+1: each `VehicleAgent` (``vehicle-<k>``) that can carry it bids ``bid/<order>/vehicle-<k>``
  with its marginal cost: the detour to the customer from the end of its current plan, in km, plus a
  lateness penalty if it could not arrive inside the window;
* tick t+2 on: the manager awards each order with bids to the lowest bid (`negotiation.choose_winner`:
  deterministic, ties to the smaller agent id), posts ``award/<order>`` and proposes the assignment.
  A vehicle takes one new order per tick (the Dispatch action); later awards wait a tick. When an awarded
  order leaves the pending table it is ``done/<order>``.

Policy ``contract_net:gnn`` (or ``contract_net:gnn:<path>``, ``contract_net:savings``): the tenders are
routes, not orders. The `RouteTenderAgent` (name ``dispatch``) batches pending orders as the savings
dispatcher does (``planning.baselines.dispatchers.SavingsDispatcher``: per depot, when the batch is
worth a trip) and has the planner, the GNN of ``planning.route_model`` by default, cut it into routes.
Each route is a proposal: ``cfp/route-<tick>-<k>`` with its depot and stops. Every vehicle parked empty
at that depot with room for the route bids its cost to drive it: the route's km plus the lateness
penalty at its own speed. The lowest bid wins (``award/route-...``) and the route is handed over, one
order per tick; a route nobody bid on within ``TENDER_TICKS`` goes back into the next batch.
"""

from __future__ import annotations

import numpy as np

from agents.agent import decode_observation, latest
from agents.blackboard import Entry, Post
from agents.negotiation import Bid, choose_winner
from environments.dispatch import FleetSim
from planning.baselines.dispatchers import C_SHIFT_LEFT, V_AT_DEPOT, V_N_STOPS, SavingsDispatcher, minutes_late

# Dispatch observation columns (see environments.dispatch)
O_VALID, O_NODE, O_DEMAND, O_WE, O_AGE = 0, 1, 4, 6, 7
V_REMAINING, V_ANCHOR, V_FREE_IN = 2, 6, 7
C_ELAPSED = 1
LATE_PENALTY_KM_PER_MIN = 0.5  # a minute late costs as much as half a km of detour
TENDER_TICKS = 3  # a route without a bid this many ticks after its call is planned again


def order_ids(observation: dict) -> list[str | None]:
    """A stable id per pending-order slot: customer node and creation minute (None for empty slots)."""
    orders, now = observation["orders"], float(observation["clock"][C_ELAPSED])
    return [f"o{int(row[O_NODE])}-{int(round(now - row[O_AGE]))}" if row[O_VALID] > 0.5 else None for row in orders]


class FleetManagerAgent:
    def __init__(self, n_vehicles: int, max_pending: int):
        self.name = "dispatch"
        self.subscribes = ("state/dispatch", "bid/*")
        self.n_vehicles, self.max_pending = n_vehicles, max_pending
        self.announced: dict[str, int] = {}  # order id -> tick announced
        self.bids: dict[str, dict[str, Bid]] = {}
        self.awarded: dict[str, str] = {}  # order id -> vehicle agent

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        for e in inbox:
            if e.topic.startswith("bid/"):
                _, order, agent = e.topic.split("/")
                if agent == e.author:
                    self.bids.setdefault(order, {})[agent] = Bid(order, agent, e.value["cost"], e.value.get("payload"))
        state = latest(inbox, "state/dispatch")
        if state is None:
            return []
        obs = decode_observation("dispatch", state.value)
        mask = np.asarray(state.value["action_mask"], dtype=bool).reshape(self.n_vehicles, self.max_pending + 1)
        ids = order_ids(obs)
        pending = {oid: slot for slot, oid in enumerate(ids) if oid is not None}
        posts = []
        for oid in list(self.awarded):
            if oid not in pending:  # the order left the table: it is on a vehicle's route
                posts.append(Post(f"done/{oid}", "done", {"agent": self.awarded.pop(oid), "result": "assigned"}))
                self.bids.pop(oid, None)
                self.announced.pop(oid, None)
        action = np.zeros(self.n_vehicles, dtype=np.int64)
        busy: set[int] = set()
        for oid, slot in pending.items():
            if oid not in self.announced:
                self.announced[oid] = tick
                row = obs["orders"][slot]
                posts.append(Post(f"cfp/{oid}", "cfp", {
                    "task_id": oid, "kind": "delivery", "deadline_tick": tick + 1,
                    "payload": {"node": int(row[O_NODE]), "demand": float(row[O_DEMAND]),
                                "window_end_in_min": float(row[O_WE])}}, expires_tick=tick + 1))
                continue
            winner = choose_winner(list(self.bids.get(oid, {}).values()))
            if winner is None:
                if tick - self.announced[oid] > 5:  # nobody could take it: announce it again
                    del self.announced[oid]
                continue
            v = int(winner.agent.split("-")[1])
            if v in busy or not mask[v, slot + 1]:
                continue  # this vehicle already takes an order this tick, or cannot now: next tick
            busy.add(v)
            action[v] = slot + 1
            if oid not in self.awarded:
                self.awarded[oid] = winner.agent
                posts.append(Post(f"award/{oid}", "award", {"task_id": oid, "winner": winner.agent,
                                                            "cost": winner.cost,
                                                            "n_bids": len(self.bids.get(oid, {}))}))
        posts.append(Post("proposal/dispatch", "action", action.tolist()))
        return posts


class VehicleAgent:
    """One vehicle bidding for orders: marginal km from the end of its plan, plus expected lateness."""

    def __init__(self, index: int, fleet: FleetSim):
        self.index, self.name = index, f"vehicle-{index}"
        self.subscribes = ("cfp/*", "state/dispatch")
        self.dist_km = fleet.network.dist_km
        self.depot = fleet.vehicle_depots[index]
        self.speed_kmh = fleet.fleet[index].speed_kmh
        self.time_min = fleet.network.time_min(self.speed_kmh)
        self.load_time_min, self.service_time_min = fleet.config.load_time_min, fleet.config.service_time_min
        self.n_bids = 0

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        cfps = [e for e in inbox if e.topic.startswith("cfp/")]
        state = latest(inbox, "state/dispatch")
        if not cfps or state is None:
            return []
        me = np.asarray(state.value["vehicles"][self.index], dtype=np.float64)
        end = int(me[V_ANCHOR])  # where its current plan ends (the depot when idle)
        posts = []
        for cfp in cfps:
            if cfp.value.get("kind") == "route":
                bid = self.route_bid(cfp.value["payload"], me, float(state.value["clock"][C_ELAPSED]))
                if bid is not None:
                    self.n_bids += 1
                    posts.append(Post(f"bid/{cfp.value['task_id']}/{self.name}", "bid", bid))
                continue
            order = cfp.value["payload"]
            if order["demand"] > me[V_REMAINING] + 1e-9:
                continue  # cannot carry it: no bid
            node = order["node"]
            detour_km = self.dist_km[end, node] + self.dist_km[node, self.depot] - self.dist_km[end, self.depot]
            arrive_in_min = me[V_FREE_IN] + 60.0 * self.dist_km[end, node] / self.speed_kmh
            late_min = max(0.0, arrive_in_min - order["window_end_in_min"])
            cost = float(detour_km + LATE_PENALTY_KM_PER_MIN * late_min)
            self.n_bids += 1
            posts.append(Post(f"bid/{cfp.value['task_id']}/{self.name}", "bid",
                              {"cost": round(cost, 6), "payload": {"detour_km": round(float(detour_km), 6)}}))
        return posts

    def route_bid(self, route: dict, me: np.ndarray, now_min: float) -> dict | None:
        """The cost to drive a proposed route from its depot now: km plus the lateness penalty at this
        vehicle's speed; None when it is not parked empty at that depot or the route does not fit."""
        if (route["depot"] != self.depot or me[V_AT_DEPOT] < 0.5 or me[V_N_STOPS] > 0
                or route["demand"] > me[V_REMAINING] + 1e-9):
            return None
        tour = [self.depot] + [stop[0] for stop in route["stops"]] + [self.depot]
        km = float(sum(self.dist_km[a, b] for a, b in zip(tour, tour[1:])))
        late = minutes_late(self.time_min, self.depot, route["stops"], now_min + self.load_time_min,
                            self.service_time_min)
        return {"cost": round(float(km + LATE_PENALTY_KM_PER_MIN * late), 6),
                "payload": {"km": round(float(km), 6), "late_min": round(float(late), 3)}}


class RouteTenderAgent:
    """The planner's routes as contract-net tenders the vehicles bid on (see the module doc).

    Parameters
    ----------
    fleet : the plant's fleet (layout, depots, speeds).
    route_planner : CVRPInstance -> routes (the GNN's ``agents.policies.gnn_route_planner``, or savings).
    batching : when to release a batch (``SavingsDispatcher``'s min_fill, max_hold_min, slack_min).
    """

    def __init__(self, fleet: FleetSim, route_planner, batching: dict[str, float] | None = None):
        self.name = "dispatch"
        self.subscribes = ("state/dispatch", "bid/*")
        self.planner = SavingsDispatcher(fleet, route_planner=route_planner, **(batching or {}))
        self.n_vehicles = fleet.n_vehicles
        self.tenders: dict[str, tuple[int, list[tuple], int]] = {}  # id -> (depot, order rows, tick called)
        self.bids: dict[str, dict[str, Bid]] = {}

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        for e in inbox:
            if e.topic.startswith("bid/route-"):
                _, task, agent = e.topic.split("/")
                if agent == e.author and task in self.tenders:
                    self.bids.setdefault(task, {})[agent] = Bid(task, agent, e.value["cost"], e.value.get("payload"))
        state = latest(inbox, "state/dispatch")
        if state is None:
            return []
        obs = decode_observation("dispatch", state.value)
        orders, vehicles, now = obs["orders"], obs["vehicles"], float(obs["clock"][C_ELAPSED])
        action = np.zeros(self.n_vehicles, dtype=np.int64)
        if obs["clock"][C_SHIFT_LEFT] <= 0:
            self.planner.reset()
            self.tenders.clear()
            return [Post("proposal/dispatch", "action", action.tolist())]
        rows = self.planner.order_rows(orders, now)
        reserved = self.planner.hand_over(rows, vehicles, action)
        posts: list[Post] = []
        free = set(self.planner.free_vehicles(vehicles, action))
        for task, (depot, route, called) in list(self.tenders.items()):
            matched = self.planner.match(route, rows, reserved)
            bids = [b for b in self.bids.get(task, {}).values() if int(b.agent.split("-")[1]) in free]
            winner = choose_winner(bids)  # bids come a tick after the call, so never in its own tick
            if matched and winner is not None:
                v = int(winner.agent.split("-")[1])
                self.planner.start_route(v, matched, action)
                free.discard(v)
                posts.append(Post(f"award/{task}", "award", {"task_id": task, "winner": winner.agent,
                                                            "cost": winner.cost, "n_bids": len(bids),
                                                            "orders": len(matched)}))
            if matched and winner is None and tick - called < TENDER_TICKS:
                reserved.update(r[0] for r in matched)  # still out to tender
                continue
            del self.tenders[task]
            self.bids.pop(task, None)
            reserved.update(r[0] for r in matched)
        # orders under tender or being handed over are reserved; the rest may form new routes
        busy = set(range(self.n_vehicles)) - free
        for depot, free_here, routes in self.planner.new_routes(rows, reserved, vehicles, action, now, orders,
                                                                exclude=busy):
            for k, route in enumerate(routes[:len(free_here)]):
                task = f"route-{tick}-{depot}-{k}"
                self.tenders[task] = (depot, route, tick)
                reserved.update(r[0] for r in route)
                posts.append(Post(f"cfp/{task}", "cfp", {
                    "task_id": task, "kind": "route", "deadline_tick": tick + 1,
                    "payload": {"depot": int(depot), "demand": float(sum(r[2] for r in route)),
                                "stops": [[int(r[1]), float(r[3]), float(r[4])] for r in route]}},
                                  expires_tick=tick + TENDER_TICKS))
        posts.append(Post("proposal/dispatch", "action", action.tolist()))
        return posts
