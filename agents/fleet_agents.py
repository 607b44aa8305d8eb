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
"""

from __future__ import annotations

import numpy as np

from agents.agent import decode_observation, latest
from agents.blackboard import Entry, Post
from agents.negotiation import Bid, choose_winner
from environments.dispatch import FleetSim

# Dispatch observation columns (see environments.dispatch)
O_VALID, O_NODE, O_DEMAND, O_WE, O_AGE = 0, 1, 4, 6, 7
V_REMAINING, V_ANCHOR, V_FREE_IN = 2, 6, 7
C_ELAPSED = 1
LATE_PENALTY_KM_PER_MIN = 0.5  # a minute late costs as much as half a km of detour


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
