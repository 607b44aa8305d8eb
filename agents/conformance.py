"""Conformance checks that every blackboard implementation must pass (the in-process `Blackboard`, and the
Ray-hosted one in ``cluster/``).

Usage::

    from agents.conformance import CHECKS, check_blackboard

    check_blackboard(make_board)              # all checks; raises AssertionError naming the failing one

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_board(check):                    # or one test per check
        check(make_board, restore)

``make_board()`` returns a new, empty board. ``restore(snapshot)`` returns a board in the state of
``snapshot``; by default it is ``type(board).restore``. A board offers ``post``, ``read``, ``latest``, ``wait``,
``compare_and_set``, ``snapshot``, ``last_seq`` and ``tick`` as `agents.blackboard.Blackboard` does, and
raises `environments.errors.ShopfloorInputError` (or an error that is an instance of it) for bad input.
The checks use only that public behaviour; they take well under a second in process.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from agents.blackboard import Entry, Post
from environments.errors import ShopfloorInputError

MakeBoard = Callable[[], Any]
Restore = Callable[[dict], Any] | None


def _raises(fn: Callable, *args, **kwargs) -> str:
    """Assert that ``fn(*args, **kwargs)`` raises ShopfloorInputError with a one-line message; return it."""
    try:
        fn(*args, **kwargs)
    except ShopfloorInputError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"error message must be one non-empty line, got {msg!r}"
        return msg
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} did not raise ShopfloorInputError")


def _restore(board: Any, restore: Restore) -> Callable[[dict], Any]:
    return restore if restore is not None else type(board).restore


def check_versions(make_board: MakeBoard, restore: Restore = None) -> None:
    """Versions count per (topic, key) from 1, also within a batch; author and tick are stamped."""
    b = make_board()
    b.post("a", 3, [Post("state/x", "k", 1), Post("state/x", "k", 2), Post("state/x", "j", 3),
                    Post("state/y", "k", 4)])
    got = [(e.topic, e.key, e.version, e.value) for e in b.read(["*"])]
    assert got == [("state/x", "k", 1, 1), ("state/x", "k", 2, 2), ("state/x", "j", 1, 3),
                   ("state/y", "k", 1, 4)], got
    b.post("b", 4, [Post("state/x", "k", 5, confidence=0.5, expires_tick=9)])
    e = b.latest(["state/x"])[("state/x", "k")]
    assert (e.version, e.value, e.author, e.tick, e.confidence, e.expires_tick) == (3, 5, "b", 4, 0.5, 9), e
    first = b.read(["state/y"])[0]
    assert (first.author, first.tick, first.confidence, first.expires_tick) == ("a", 3, 1.0, None), first


def check_seq_order(make_board: MakeBoard, restore: Restore = None) -> None:
    """Acknowledged seqs are 1, 2, 3, ... across batches; reads come back in seq order."""
    b = make_board()
    assert b.last_seq == 0
    acks = []
    for i in range(5):
        acks += b.post(f"agent-{i % 2}", i, [Post(f"state/u{j % 3}", f"k{i}", j) for j in range(i + 1)])
    assert acks == list(range(1, 16)), acks
    assert b.post("a", 5, []) == [] and b.last_seq == 15
    assert [e.seq for e in b.read(["*"])] == acks
    assert [e.seq for e in b.read(["state/u1", "state/u0"])] == sorted(
        e.seq for e in b.read(["*"]) if e.topic in ("state/u0", "state/u1"))
    assert b.tick == 4, b.tick


_PATTERN_TOPICS = ["state/line", "bid/o-7/a1", "state/line/b1", "bid/o-70/a1", "cfp/o-7", "bid/o-7/a2",
                   "bid/o-8/a1", "award/o-7", "state/line", "bid/o-7/a1"]


def check_patterns(make_board: MakeBoard, restore: Restore = None) -> None:
    """Exact topics, 'x/*' prefixes (at a '/' boundary, not the topic itself), '*', several patterns at once."""
    b = make_board()
    for i, t in enumerate(_PATTERN_TOPICS):
        b.post("a", 0, [Post(t, "k", i)])

    def topics(patterns):
        entries = b.read(patterns)
        seqs = [e.seq for e in entries]
        assert seqs == sorted(set(seqs)), f"{patterns}: not in seq order or duplicated: {seqs}"
        return [e.topic for e in entries]

    assert topics(["state/line"]) == ["state/line", "state/line"]
    assert topics(["state/*"]) == ["state/line", "state/line/b1", "state/line"]
    assert topics(["state/line/*"]) == ["state/line/b1"]
    assert topics(["bid/o-7/*"]) == ["bid/o-7/a1", "bid/o-7/a2", "bid/o-7/a1"]
    assert topics(["bid/o-7/*", "bid/*", "bid/o-7/a1"]) == [t for t in _PATTERN_TOPICS if t.startswith("bid/")]
    assert topics(["award/o-7", "cfp/*"]) == ["cfp/o-7", "award/o-7"]
    assert topics(["*"]) == _PATTERN_TOPICS
    assert topics(["alarm/*"]) == [] and topics(["alarm/none"]) == [] and topics([]) == []
    latest = b.latest(["bid/*"])
    assert list(latest) == [("bid/o-70/a1", "k"), ("bid/o-7/a2", "k"), ("bid/o-8/a1", "k"), ("bid/o-7/a1", "k")], \
        list(latest)
    assert latest[("bid/o-7/a1", "k")].value == 9 and latest[("bid/o-7/a1", "k")].version == 2


def _matches(topic: str, pattern: str) -> bool:
    return pattern == "*" or topic == pattern or (pattern.endswith("/*") and topic.startswith(pattern[:-1]))


def check_since(make_board: MakeBoard, restore: Restore = None) -> None:
    """``since_seq`` returns exactly the newer matching entries, for few and for many new entries."""
    b = make_board()
    rng = random.Random(0)
    topics = [f"state/u{i}" for i in range(40)] + [f"bid/t{i % 5}/a{i}" for i in range(40)]
    for tick in range(12):
        b.post("a", tick, [Post(rng.choice(topics), f"k{rng.randrange(3)}", rng.random()) for _ in range(30)])
    everything = b.read(["*"])
    assert len(everything) == 360
    for patterns in (["*"], ["state/u3"], ["state/*"], ["bid/t2/*", "state/u7"], ["bid/*", "state/*"]):
        for since in (0, 1, 100, 300, 350, 359, 360, 400):
            want = [e for e in everything if e.seq > since and any(_matches(e.topic, p) for p in patterns)]
            got = b.read(patterns, since_seq=since)
            assert got == want, f"read({patterns}, since_seq={since}): {len(got)} entries, expected {len(want)}"


def check_expiry(make_board: MakeBoard, restore: Restore = None) -> None:
    """An entry with expires_tick < tick is hidden (tick defaults to the board's clock) unless include_expired."""
    b = make_board()
    b.post("a", 5, [Post("alarm/a", "k", 1, expires_tick=4), Post("alarm/b", "k", 2, expires_tick=5),
                    Post("alarm/c", "k", 3, expires_tick=10), Post("alarm/d", "k", 4)])

    def names(**kw):
        return [e.topic[-1] for e in b.read(["alarm/*"], **kw)]

    assert b.tick == 5
    assert names() == ["b", "c", "d"], names()
    assert names(tick=5) == ["b", "c", "d"]
    assert names(tick=11) == ["d"]
    assert names(tick=0) == ["a", "b", "c", "d"]
    assert names(include_expired=True, tick=11) == ["a", "b", "c", "d"]
    assert sorted(t[-1] for t, _ in b.latest(["alarm/*"])) == ["b", "c", "d"]
    assert sorted(t[-1] for t, _ in b.latest(["alarm/*"], tick=11)) == ["d"]
    b.post("a", 6, [Post("state/clock", "k", 0)])  # the board's clock moves on: b has expired now
    assert names() == ["c", "d"], names()
    # A newer version that has expired hides the key, even though an older version would still be current.
    b.post("a", 6, [Post("alarm/d", "k", 5, expires_tick=6)])
    assert b.latest(["alarm/d"], tick=7) == {}
    assert [e.value for e in b.read(["alarm/d"], tick=7)] == [4]


def check_compare_and_set(make_board: MakeBoard, restore: Restore = None) -> None:
    """CAS writes only at the expected version (0: must not exist); a loser gets the current entry."""
    b = make_board()
    ok, e = b.compare_and_set("m1", 1, "award/t1", "award", 0, {"winner": "a"})
    assert ok and e.version == 1 and e.seq == 1 and e.author == "m1" and e.value == {"winner": "a"}, (ok, e)
    ok, cur = b.compare_and_set("m2", 1, "award/t1", "award", 0, {"winner": "b"})
    assert not ok and cur == e, (ok, cur)
    ok, e2 = b.compare_and_set("m2", 2, "award/t1", "award", 1, {"winner": "b"})
    assert ok and e2.version == 2 and e2.seq == 2, (ok, e2)
    ok, cur = b.compare_and_set("m1", 2, "award/t1", "award", 1, {"winner": "c"})
    assert not ok and cur == e2
    assert b.compare_and_set("m1", 2, "award/t2", "award", 3, 1) == (False, None)
    assert b.last_seq == 2 and [x.value for x in b.read(["award/*"])] == [{"winner": "a"}, {"winner": "b"}]
    b.post("a", 3, [Post("award/t1", "award", {"winner": "d"})])
    ok, cur = b.compare_and_set("m1", 3, "award/t1", "award", 2, 0)
    assert not ok and cur.version == 3
    _raises(b.compare_and_set, "m1", 3, "nope/t1", "award", 5, 0)  # bad input raises even when it would lose
    _raises(b.compare_and_set, "m1", 3, "award/t1", "award", -1, 0)
    _raises(b.compare_and_set, "m1", 3, "award/t1", "award", 3, float("nan"))
    assert b.last_seq == 3


def check_snapshot_restore(make_board: MakeBoard, restore: Restore = None) -> None:
    """snapshot() is plain data (pickle and JSON); restoring it gives the same current state, and new posts
    continue its seq and versions."""
    b = make_board()
    b.post("a", 1, [Post("state/x", "k", {"a": [1, 2.5, None, True, "s"], "b": {}}), Post("state/x", "k", 2)])
    b.post("b", 4, [Post("alarm/y", "k", "old", confidence=0.25, expires_tick=2), Post("bid/t/a", "", [])])
    b.compare_and_set("c", 4, "award/t", "award", 0, {"w": "a"})
    snap = b.snapshot()

    def plain(x, path="snapshot"):
        if isinstance(x, dict):
            for k, v in x.items():
                assert type(k) is str, f"{path} has a non-str key {k!r}"
                plain(v, f"{path}[{k!r}]")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                plain(v, f"{path}[{i}]")
        else:
            assert x is None or type(x) in (str, int, float, bool), f"{path} is a {type(x).__name__}"

    plain(snap)
    for copy in (pickle.loads(pickle.dumps(snap)), json.loads(json.dumps(snap))):
        r = _restore(b, restore)(copy)
        assert r.last_seq == b.last_seq == 5 and r.tick == b.tick == 4
        want = b.latest(["*"], include_expired=True)
        assert r.latest(["*"], include_expired=True) == want
        assert r.read(["*"], include_expired=True) == list(want.values())
        assert r.read(["*"]) == b.read(["*"], since_seq=1)  # history is not in a snapshot; the expired one hides
        assert r.post("d", 5, [Post("state/x", "k", 3)]) == [6]
        assert r.latest(["state/x"])[("state/x", "k")].version == 3
    assert b.last_seq == 5  # restoring did not touch the original
    _raises(_restore(b, restore), {"format": "something else"})


def check_wait(make_board: MakeBoard, restore: Restore = None) -> None:
    """wait returns at once if something matching is there, wakes when it is posted from another thread,
    ignores non-matching posts, and returns [] at the timeout."""
    b = make_board()
    b.post("a", 0, [Post("alarm/x", "k", 0)])
    t0 = time.monotonic()
    assert [e.value for e in b.wait(["alarm/*"], 0, 5.0)] == [0]
    assert time.monotonic() - t0 < 1.0

    def later():
        time.sleep(0.05)
        b.post("a", 1, [Post("state/other", "k", 1)])
        time.sleep(0.05)
        b.post("a", 1, [Post("alarm/x", "k", 2)])

    thread = threading.Thread(target=later)
    since = b.last_seq
    t0 = time.monotonic()
    thread.start()
    got = b.wait(["alarm/*"], since, 5.0)
    elapsed = time.monotonic() - t0
    thread.join()
    assert [e.value for e in got] == [2], got
    assert 0.08 <= elapsed < 3.0, f"woke after {elapsed:.3f} s"
    t0 = time.monotonic()
    assert b.wait(["alarm/*"], b.last_seq, 0.1) == []
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < 2.0, f"timeout of 0.1 s took {elapsed:.3f} s"
    _raises(b.wait, ["alarm/*"], 0, -1.0)


def check_bad_input(make_board: MakeBoard, restore: Restore = None) -> None:
    """Bad input raises ShopfloorInputError with one line, and a batch with one bad post stores nothing."""
    b = make_board()
    good = Post("state/x", "k", 1)
    b.post("a", 0, [good])
    bad_posts = [
        Post("", "k", 1), Post("nope/x", "k", 1), Post("state//x", "k", 1), Post("state/x/", "k", 1),
        Post("state/*", "k", 1), Post("state/a b", "k", 1), Post("state/x\n", "k", 1), Post(7, "k", 1),
        Post("state/x", 7, 1), Post("state/x", "k", {1, 2}), Post("state/x", "k", (1, 2)),
        Post("state/x", "k", b"bytes"), Post("state/x", "k", object()), Post("state/x", "k", float("nan")),
        Post("state/x", "k", {"a": [1.0, float("inf")]}), Post("state/x", "k", {1: "int key"}),
        Post("state/x", "k", 1, confidence=1.5), Post("state/x", "k", 1, confidence=-0.1),
        Post("state/x", "k", 1, confidence=float("nan")), Post("state/x", "k", 1, confidence="high"),
        Post("state/x", "k", 1, expires_tick=2.5),
    ]
    nested: list = []
    nested.append(nested)
    bad_posts.append(Post("state/x", "k", nested))
    for p in bad_posts:
        msg = _raises(b.post, "a", 1, [good, p])
        assert "post 1" in msg, f"message should name the bad post: {msg!r}"
    _raises(b.post, "a", 1, [good, ("state/x", "k", 1)])
    _raises(b.post, "", 1, [good])
    _raises(b.post, "a", -1, [good])
    _raises(b.post, "a", 1.0, [good])
    _raises(b.post, "a", True, [good])
    _raises(b.post, "a", 1, good)
    _raises(b.read, "state/*")
    for pattern in ("bid/*/x", "state/x*", "nope/*", "", "*/x", 3):
        _raises(b.read, [pattern])
    _raises(b.read, ["*"], since_seq=-1)
    _raises(b.latest, ["nope"])
    assert b.last_seq == 1 and len(b.read(["*"])) == 1 and b.tick == 0, "a rejected batch changed the board"
    assert b.post("a", 1, [good]) == [2]


def check_entries_are_values(make_board: MakeBoard, restore: Restore = None) -> None:
    """Entries are frozen, and changing a posted dict afterwards does not change the board."""
    b = make_board()
    value = {"a": [1, 2], "b": {"c": 3.5}}
    b.post("a", 0, [Post("state/x", "k", value)])
    value["a"].append(3)
    value["b"]["c"] = 0.0
    e = b.read(["state/x"])[0]
    assert isinstance(e, Entry) and e.value == {"a": [1, 2], "b": {"c": 3.5}}, e
    try:
        e.value = 1  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("Entry is not frozen")


def check_concurrent_posts(make_board: MakeBoard, restore: Restore = None) -> None:
    """Posts from several threads get unique contiguous seqs and, per (topic, key), versions 1..n."""
    b = make_board()
    n_threads, n_batches, batch = 4, 25, 20
    acks: list[list[int]] = [[] for _ in range(n_threads)]

    def work(i: int) -> None:
        for k in range(n_batches):
            acks[i] += b.post(f"agent-{i}", k, [Post(f"state/u{j % 4}", "k", j) for j in range(batch)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = n_threads * n_batches * batch
    assert sorted(s for a in acks for s in a) == list(range(1, n + 1))
    for a in acks:
        assert a == sorted(a)
    entries = b.read(["*"])
    assert [e.seq for e in entries] == list(range(1, n + 1))
    for topic in (f"state/u{j}" for j in range(4)):
        assert [e.version for e in entries if e.topic == topic] == list(range(1, n // 4 + 1)), topic


CHECKS: list[Callable[[MakeBoard, Restore], None]] = [
    check_versions, check_seq_order, check_patterns, check_since, check_expiry, check_compare_and_set,
    check_snapshot_restore, check_wait, check_bad_input, check_entries_are_values, check_concurrent_posts,
]


def check_blackboard(make_board: MakeBoard, restore: Restore = None) -> None:
    """Run every check in `CHECKS`; raise AssertionError naming the first one that fails."""
    for check in CHECKS:
        try:
            check(make_board, restore)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from e
