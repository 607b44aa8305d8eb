"""Contract-net negotiation over the blackboard (design notes §5; R. G. Smith, "The Contract Net Protocol",
IEEE Trans. Computers C-29(12), 1980).

========================  ===========  ======================================  =====================================
topic                     key          value                                   written by
========================  ===========  ======================================  =====================================
``cfp/<task>``            ``"cfp"``    task_id, kind, payload, deadline_tick   the manager (`announce`); expires
                                                                               after ``deadline_tick``
``bid/<task>/<agent>``    ``"bid"``    cost, payload                           each contractor (`submit_bid`); a new
                                                                               bid replaces its earlier one
``award/<task>``          ``"award"``  task_id, winner, cost, n_bids           a manager (`award`), compare-and-set:
                                                                               once per task
``done/<task>``           ``"done"``   agent, result                           the winner (`complete`), once
========================  ===========  ======================================  =====================================

Award rule (`choose_winner`), deterministic and free of hashing, so every run and every manager picks the
same winner from the same bids:

1. only valid bids count: a finite ``int`` or ``float`` cost (NaN, infinities, bools and strings are invalid);
2. the lowest cost wins;
3. equal costs: the smaller agent id in plain string order (``"agv-1" < "agv-10" < "agv-2"``);
4. still equal (only possible when one agent's bids are compared directly): the smaller payload, compared as
   canonical JSON text (sorted keys, no spaces).

`collect_bids` takes each agent's latest bid posted at or before the task's deadline tick, and only bids
posted by the agent that the topic names. Every function takes any board with the `Blackboard` methods
(``post``, ``read``, ``compare_and_set``), so it works in process and against the Ray-hosted board.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from agents.blackboard import Blackboard, Post, check_segment
from environments.errors import ShopfloorInputError


@dataclass(frozen=True)
class CallForProposals:
    """A task put out to tender.

    Attributes
    ----------
    task_id : str
        Unique task id; one topic segment (no ``/``, ``*`` or whitespace).
    kind : str
        What sort of task, e.g. ``"delivery"``; contractors filter on it.
    payload : Any
        JSON-compatible task details (order location, demand, window, ...).
    deadline_tick : int
        Last tick at which bids count.
    """

    task_id: str
    kind: str
    payload: Any
    deadline_tick: int


@dataclass(frozen=True)
class Bid:
    """A contractor's offer for a task.

    Attributes
    ----------
    task_id, agent : str
        The task and the bidding agent (each one topic segment).
    cost : float
        What the agent would spend (lower is better; units are the task kind's, e.g. km). Finite.
    payload : Any
        JSON-compatible details of the offer (a route, an ETA, ...).
    """

    task_id: str
    agent: str
    cost: float
    payload: Any = None


@dataclass(frozen=True)
class Award:
    """The outcome of a tender.

    Attributes
    ----------
    task_id, winner : str
        The task and the winning agent.
    cost : float
        The winning bid's cost.
    n_bids : int
        Valid bids that were considered.
    """

    task_id: str
    winner: str
    cost: float
    n_bids: int


def _valid_cost(cost: Any) -> bool:
    return type(cost) in (int, float) and math.isfinite(cost)


def _canonical(payload: Any) -> str:
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):  # not JSON (a Bid built by hand): still deterministic, via repr
        return repr(payload)


def _rank(bid: Bid) -> tuple[float, str, str]:
    return (bid.cost, bid.agent, _canonical(bid.payload))


def choose_winner(bids: list[Bid]) -> Bid | None:
    """The winning bid by the module's award rule, or ``None`` if there is no valid bid."""
    valid = [b for b in bids if _valid_cost(b.cost)]
    return min(valid, key=_rank) if valid else None


def announce(board: Blackboard, author: str, tick: int, cfp: CallForProposals) -> int:
    """Post a call for proposals on ``cfp/<task>``; it expires after ``cfp.deadline_tick``. Returns its seq."""
    check_segment(cfp.task_id, "task_id")
    if type(cfp.kind) is not str or not cfp.kind:
        raise ShopfloorInputError(f"cfp {cfp.task_id!r}: kind must be a non-empty str, got {cfp.kind!r}")
    if type(cfp.deadline_tick) is not int or type(tick) is not int or cfp.deadline_tick < tick:
        raise ShopfloorInputError(f"cfp {cfp.task_id!r}: deadline_tick must be an int tick >= the current tick "
                                  f"{tick!r}, got {cfp.deadline_tick!r}")
    value = {"task_id": cfp.task_id, "kind": cfp.kind, "payload": cfp.payload, "deadline_tick": cfp.deadline_tick}
    return board.post(author, tick, [Post(f"cfp/{cfp.task_id}", "cfp", value, expires_tick=cfp.deadline_tick)])[0]


def read_cfp(board: Blackboard, task_id: str) -> CallForProposals | None:
    """The task's call for proposals (expired or not), or ``None`` if it was never announced."""
    check_segment(task_id, "task_id")
    entries = board.read([f"cfp/{task_id}"], include_expired=True)
    if not entries:
        return None
    v = entries[-1].value
    return CallForProposals(v["task_id"], v["kind"], v["payload"], v["deadline_tick"])


def submit_bid(board: Blackboard, tick: int, bid: Bid) -> int:
    """Post ``bid`` on ``bid/<task>/<agent>`` as its agent; a later bid replaces it. Returns its seq.

    Raises
    ------
    ShopfloorInputError
        If the cost is not a finite number (NaN and infinities are invalid bids), or an id is not a segment.
    """
    check_segment(bid.task_id, "task_id")
    check_segment(bid.agent, "agent")
    if not _valid_cost(bid.cost):
        raise ShopfloorInputError(f"bid of {bid.agent!r} for task {bid.task_id!r}: cost must be a finite int or "
                                  f"float, got {bid.cost!r}")
    value = {"cost": bid.cost, "payload": bid.payload}
    return board.post(bid.agent, tick, [Post(f"bid/{bid.task_id}/{bid.agent}", "bid", value)])[0]


def collect_bids(board: Blackboard, task_id: str, deadline_tick: int | None = None) -> list[Bid]:
    """The valid bids for a task, one per agent (its latest), sorted by agent id.

    Parameters
    ----------
    deadline_tick : int | None
        Ignore bids posted after this tick; ``None`` uses the task's call for proposals (all bids if none).
    """
    check_segment(task_id, "task_id")
    if deadline_tick is None:
        cfp = read_cfp(board, task_id)
        deadline_tick = cfp.deadline_tick if cfp is not None else None
    prefix = f"bid/{task_id}/"
    latest: dict[str, Bid] = {}
    for e in board.read([prefix + "*"], include_expired=True):  # seq order: later bids replace earlier ones
        agent = e.topic[len(prefix):]
        if e.key != "bid" or "/" in agent or e.author != agent:
            continue  # not a bid, or posted on behalf of someone else
        if deadline_tick is not None and e.tick > deadline_tick:
            continue
        v = e.value
        if not isinstance(v, dict) or not _valid_cost(v.get("cost")):
            continue
        latest[agent] = Bid(task_id, agent, v["cost"], v.get("payload"))
    return [latest[a] for a in sorted(latest)]


def read_award(board: Blackboard, task_id: str) -> Award | None:
    """The task's award, or ``None`` if it has not been awarded."""
    check_segment(task_id, "task_id")
    entries = board.read([f"award/{task_id}"], include_expired=True)
    if not entries:
        return None
    v = entries[0].value  # the compare-and-set makes the first award the only one
    return Award(v["task_id"], v["winner"], v["cost"], v["n_bids"])


def award(board: Blackboard, author: str, tick: int, task_id: str) -> Award | None:
    """Award the task to the winner of its valid bids, exactly once.

    The award is written with compare-and-set at version 0, so if several managers race, one write wins
    and every caller gets that award back.

    Returns
    -------
    Award | None
        The task's award (this call's, or the one that was there already); ``None`` if it has no valid bids.
    """
    bids = collect_bids(board, task_id)
    winner = choose_winner(bids)
    if winner is None:
        return read_award(board, task_id)
    value = {"task_id": task_id, "winner": winner.agent, "cost": winner.cost, "n_bids": len(bids)}
    _, entry = board.compare_and_set(author, tick, f"award/{task_id}", "award", 0, value)
    v = entry.value
    return Award(v["task_id"], v["winner"], v["cost"], v["n_bids"])


def complete(board: Blackboard, agent: str, tick: int, task_id: str, result: Any) -> int:
    """The winner reports the task done (``done/<task>``, once). Returns the seq.

    Raises
    ------
    ShopfloorInputError
        If the task was not awarded to ``agent``, or is already done.
    """
    aw = read_award(board, task_id)
    if aw is None or aw.winner != agent:
        holder = "nobody yet" if aw is None else repr(aw.winner)
        raise ShopfloorInputError(f"{agent!r} cannot complete task {task_id!r}: it is awarded to {holder}")
    ok, entry = board.compare_and_set(agent, tick, f"done/{task_id}", "done", 0, {"agent": agent, "result": result})
    if not ok:
        raise ShopfloorInputError(f"task {task_id!r} is already done (seq {entry.seq}, tick {entry.tick})")
    return entry.seq
