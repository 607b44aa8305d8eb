"""Contract-net on the blackboard: deterministic awards (ties included), exactly one award under races,
no award without bids, invalid costs refused."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from agents.blackboard import Blackboard, Post
from agents.negotiation import (Award, Bid, CallForProposals, announce, award, choose_winner, collect_bids,
                                complete, read_award, read_cfp, submit_bid)
from environments.errors import ShopfloorInputError

NAN, INF = float("nan"), float("inf")


def _tender(board: Blackboard, task: str = "o-7", deadline: int = 5) -> None:
    announce(board, "dispatch", 1, CallForProposals(task, "delivery", {"node": 12, "demand": 3}, deadline))


def test_protocol_topics_and_round_trip():
    b = Blackboard()
    _tender(b)
    assert read_cfp(b, "o-7") == CallForProposals("o-7", "delivery", {"node": 12, "demand": 3}, 5)
    submit_bid(b, 2, Bid("o-7", "agv-2", 4.5, {"eta": 9}))
    submit_bid(b, 2, Bid("o-7", "agv-1", 6))
    assert collect_bids(b, "o-7") == [Bid("o-7", "agv-1", 6, None), Bid("o-7", "agv-2", 4.5, {"eta": 9})]
    assert award(b, "dispatch", 5, "o-7") == Award("o-7", "agv-2", 4.5, 2)
    complete(b, "agv-2", 9, "o-7", {"delivered_tick": 9})
    assert [e.topic for e in b.read(["*"], include_expired=True)] == \
        ["cfp/o-7", "bid/o-7/agv-2", "bid/o-7/agv-1", "award/o-7", "done/o-7"]
    assert b.read(["cfp/*"], tick=6) == []  # the cfp expires after its deadline
    assert b.read(["done/o-7"])[0].value == {"agent": "agv-2", "result": {"delivered_tick": 9}}


@pytest.mark.parametrize("costs, winner", [
    ({"agv-2": 5.0, "agv-10": 5.0, "agv-1": 5.0}, "agv-1"),   # string order: agv-1 < agv-10 < agv-2
    ({"agv-2": 5.0, "agv-10": 5}, "agv-10"),                  # 5 == 5.0 is a tie
    ({"b": 1.0, "a": 1.0000001}, "b"),
    ({"b": -0.0, "a": 0.0}, "a"),                            # -0.0 == 0.0 is a tie
    ({"z": 3, "y": 2, "x": 1e9}, "y"),
])
def test_award_is_deterministic_in_any_submission_order(costs, winner):
    results = set()
    for order in itertools.permutations(costs):
        b = Blackboard()
        _tender(b)
        for agent in order:
            submit_bid(b, 2, Bid("o-7", agent, costs[agent]))
        results.add(award(b, "dispatch", 5, "o-7"))
    assert len(results) == 1
    assert results.pop().winner == winner


def test_choose_winner_ties_fall_back_to_canonical_payload():
    a = Bid("t", "agv-1", 2.0, {"route": [3, 1], "eta": 4})
    b = Bid("t", "agv-1", 2.0, {"eta": 4, "route": [1, 3]})  # canonical JSON: {"eta":4,"route":[1,3]} < a's
    assert choose_winner([a, b]) is b and choose_winner([b, a]) is b
    assert choose_winner([Bid("t", "x", 1.0, {1, 2}), Bid("t", "x", 1.0, (0,))]).payload == (0,)  # repr fallback


def test_invalid_costs_are_refused():
    b = Blackboard()
    _tender(b)
    for cost in (NAN, INF, -INF, "3", None, True):
        with pytest.raises(ShopfloorInputError, match="cost must be a finite int or float"):
            submit_bid(b, 2, Bid("o-7", "agv-1", cost))
    assert collect_bids(b, "o-7") == [] and award(b, "dispatch", 5, "o-7") is None
    assert choose_winner([Bid("t", "a", NAN), Bid("t", "b", INF), Bid("t", "c", -INF)]) is None
    assert choose_winner([Bid("t", "a", NAN), Bid("t", "b", 7.0), Bid("t", "c", -INF)]).agent == "b"
    # A malformed bid posted around submit_bid, or on someone else's behalf, does not count either.
    b.post("agv-3", 2, [Post("bid/o-7/agv-3", "bid", {"cost": "cheap"}), Post("bid/o-7/agv-4", "bid", {"cost": 1})])
    assert collect_bids(b, "o-7") == []


def test_no_award_without_bids():
    b = Blackboard()
    _tender(b)
    assert award(b, "dispatch", 6, "o-7") is None
    assert award(b, "dispatch", 6, "never-announced") is None
    assert b.read(["award/*"]) == [] and read_award(b, "o-7") is None


def test_latest_bid_before_the_deadline_counts():
    b = Blackboard()
    _tender(b, deadline=5)
    submit_bid(b, 2, Bid("o-7", "agv-1", 9.0))
    submit_bid(b, 3, Bid("o-7", "agv-2", 8.0))
    submit_bid(b, 4, Bid("o-7", "agv-1", 7.0))   # agv-1 improves its bid
    submit_bid(b, 6, Bid("o-7", "agv-2", 1.0))   # too late
    submit_bid(b, 6, Bid("o-7", "agv-3", 0.5))   # too late
    assert [(x.agent, x.cost) for x in collect_bids(b, "o-7")] == [("agv-1", 7.0), ("agv-2", 8.0)]
    assert award(b, "dispatch", 6, "o-7") == Award("o-7", "agv-1", 7.0, 2)
    assert len(collect_bids(b, "o-7", deadline_tick=10)) == 3


class _SlowReads(Blackboard):
    """Every answer arrives late (as over a network), so racing managers all act on the same stale view."""

    def read(self, *args, **kwargs):
        out = super().read(*args, **kwargs)
        time.sleep(0.01)
        return out

    def latest(self, *args, **kwargs):
        out = super().latest(*args, **kwargs)
        time.sleep(0.01)
        return out


def test_racing_managers_award_exactly_once():
    b = _SlowReads()
    _tender(b, deadline=100)
    for i in range(5):
        submit_bid(b, 2, Bid("o-7", f"agv-{i}", 10.0 - i))
    n_managers = 8
    barrier = threading.Barrier(n_managers + 1)
    results: list[Award | None] = [None] * n_managers

    def manager(i: int) -> None:
        barrier.wait()
        results[i] = award(b, f"manager-{i}", 3, "o-7")

    def late_bidder() -> None:  # bids keep arriving during the race, so managers may see different winners
        barrier.wait()
        for k in range(5):
            submit_bid(b, 3, Bid("o-7", f"late-{k}", 1.0 - k))

    threads = [threading.Thread(target=manager, args=(i,)) for i in range(n_managers)]
    threads.append(threading.Thread(target=late_bidder))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    awards = b.read(["award/*"])
    assert len(awards) == 1 and awards[0].version == 1
    the_award = read_award(b, "o-7")
    assert all(r == the_award for r in results), results
    assert award(b, "dispatch", 4, "o-7") == the_award and len(b.read(["award/*"])) == 1


def test_complete_only_by_the_winner_and_once():
    b = Blackboard()
    _tender(b)
    with pytest.raises(ShopfloorInputError, match="awarded to nobody yet"):
        complete(b, "agv-1", 3, "o-7", None)
    submit_bid(b, 2, Bid("o-7", "agv-1", 1.0))
    award(b, "dispatch", 5, "o-7")
    with pytest.raises(ShopfloorInputError, match="awarded to 'agv-1'"):
        complete(b, "agv-2", 6, "o-7", None)
    complete(b, "agv-1", 6, "o-7", {"ok": True})
    with pytest.raises(ShopfloorInputError, match="already done"):
        complete(b, "agv-1", 7, "o-7", {"ok": True})


def test_bad_ids_and_deadlines():
    b = Blackboard()
    for task in ("", "a/b", "a*", "a b", 7):
        with pytest.raises(ShopfloorInputError, match="cannot be a topic segment"):
            announce(b, "m", 0, CallForProposals(task, "delivery", None, 3))
    with pytest.raises(ShopfloorInputError, match="deadline_tick must be an int tick >= the current tick"):
        announce(b, "m", 4, CallForProposals("t", "delivery", None, 3))
    with pytest.raises(ShopfloorInputError, match="kind must be a non-empty str"):
        announce(b, "m", 0, CallForProposals("t", "", None, 3))
    with pytest.raises(ShopfloorInputError, match="agent 'a/b' cannot be a topic segment"):
        submit_bid(b, 0, Bid("t", "a/b", 1.0))
    with pytest.raises(ShopfloorInputError, match="floats must be finite"):
        submit_bid(b, 0, Bid("t", "a", 1.0, {"eta": NAN}))
    assert b.last_seq == 0
