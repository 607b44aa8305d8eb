"""The in-process blackboard: the shared conformance checks, plus what only the in-process class promises
(the sink, ingest, the row and pickle forms)."""

from __future__ import annotations

import dataclasses
import pickle
import threading

import pytest

from agents.blackboard import ROW_FIELDS, TOPICS, Blackboard, Entry, Post, check_post
from agents.conformance import CHECKS, check_blackboard
from environments.errors import ShopfloorInputError


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    check(Blackboard, None)


class _ReversedReads(Blackboard):
    def read(self, patterns, since_seq=0, include_expired=False, tick=None):
        return super().read(patterns, since_seq, include_expired, tick)[::-1]


class _CasIgnoresVersions(Blackboard):
    def compare_and_set(self, author, tick, topic, key, expected_version, value, confidence=1.0,
                        expires_tick=None):
        current = self.latest([topic], include_expired=True).get((topic, key))
        return super().compare_and_set(author, tick, topic, key, current.version if current else 0, value,
                                       confidence, expires_tick)


class _WaitNeverWaits(Blackboard):
    def wait(self, patterns, since_seq=0, timeout_s=1.0):
        return self.read(patterns, since_seq)


class _NoExpiry(Blackboard):
    def read(self, patterns, since_seq=0, include_expired=False, tick=None):
        return super().read(patterns, since_seq, True, tick)


@pytest.mark.parametrize("broken, failing", [
    (_ReversedReads, "check_versions"), (_CasIgnoresVersions, "check_compare_and_set"),
    (_WaitNeverWaits, "check_wait"), (_NoExpiry, "check_expiry")])
def test_check_blackboard_catches_broken_boards(broken, failing):
    with pytest.raises(AssertionError, match=f"^{failing}: "):
        check_blackboard(broken)


def test_entry_is_a_frozen_slots_dataclass():
    assert dataclasses.is_dataclass(Entry) and dataclasses.is_dataclass(Post)
    assert Entry.__dataclass_params__.frozen and Post.__dataclass_params__.frozen
    assert not hasattr(Entry("state/x", "k", 1, "a", 0, 1, 1), "__dict__")
    assert [f.name for f in dataclasses.fields(Entry)] == \
        ["topic", "key", "value", "author", "tick", "version", "seq", "confidence", "expires_tick"]


def test_posted_entries_equal_constructed_ones():
    b = Blackboard()
    b.post("a", 2, [Post("state/x", "k", {"v": 1.5}, 0.5, 7)])
    e = b.read(["*"])[0]
    assert type(e) is Entry
    assert e == Entry("state/x", "k", {"v": 1.5}, "a", 2, 1, 1, 0.5, 7)
    assert hash(Entry("state/x", "k", 1, "a", 2, 1, 1)) == hash(Entry("state/x", "k", 1, "a", 2, 1, 1))


def test_row_round_trip():
    e = Entry("bid/t-1/agv-2", "bid", {"cost": 3.25, "route": [1, 2], "note": "é"}, "agv-2", 4, 2, 17, 0.75, 9)
    row = e.to_row()
    assert type(row) is tuple and len(row) == len(ROW_FIELDS)
    assert dict(zip(ROW_FIELDS, row))["value_json"] == '{"cost":3.25,"route":[1,2],"note":"é"}'
    assert Entry.from_row(row) == e
    assert Entry.from_row(list(row)) == e


def test_pickle_keeps_type_and_value():
    e = Entry("state/x", "k", [1, {"a": None}], "a", 1, 2, 3, 0.5, None)
    p = Post("state/x", "k", 1.5, 0.25, 4)
    e2, p2 = pickle.loads(pickle.dumps((e, p)))
    assert (type(e2), type(p2)) == (Entry, Post) and (e2, p2) == (e, p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e2.seq = 1


def test_topics_constant():
    assert TOPICS == {"state", "perception", "proposal", "cfp", "bid", "award", "done", "command", "veto",
                      "alarm", "query", "answer", "event", "meta", "action"}


def test_error_messages_say_what_is_allowed():
    b = Blackboard()
    with pytest.raises(ShopfloorInputError, match=r"starts with .nope.; allowed first segments: .*alarm, .*state"):
        b.post("a", 0, [Post("nope/x", "k", 1)])
    with pytest.raises(ShopfloorInputError, match=r"post 0 .*value\['a'\]\[1\] is nan; floats must be finite"):
        b.post("a", 0, [Post("state/x", "k", {"a": [1.0, float("nan")]})])
    with pytest.raises(ShopfloorInputError, match=r"has a tuple \(use a list\)"):
        check_post(0, Post("state/x", "k", (1, 2)))
    np = pytest.importorskip("numpy")
    with pytest.raises(ShopfloorInputError, match=r"numpy.*\.tolist\(\)"):
        b.post("a", 0, [Post("state/x", "k", [np.int64(3)])])


def test_sink_sees_every_batch_in_seq_order_across_threads():
    seen: list[int] = []
    b = Blackboard(sink=lambda entries: seen.extend(e.seq for e in entries))

    def work(i):
        for k in range(50):
            b.post(f"a{i}", k, [Post("state/x", "k", j) for j in range(7)])
            b.compare_and_set(f"a{i}", k, "award/x", f"{i}-{k}", 0, 1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(1, b.last_seq + 1)) and b.last_seq == 4 * 50 * 8
    assert b.n_posts == b.last_seq


def test_failing_sink_takes_the_batch_back():
    calls = []

    def sink(entries):
        calls.append(len(entries))
        if len(calls) == 2:
            raise OSError("disk full")

    b = Blackboard(sink=sink)
    b.post("a", 1, [Post("state/x", "k", 1), Post("state/y", "k", 1)])
    before = (b.read(["*"]), b.latest(["*"]), b.last_seq, b.tick, b.n_posts)
    with pytest.raises(OSError, match="disk full"):
        b.post("a", 2, [Post("state/x", "k", 2), Post("state/z", "k", 2), Post("state/x", "k", 3)])
    assert (b.read(["*"]), b.latest(["*"]), b.last_seq, b.tick, b.n_posts) == before
    assert b.post("a", 3, [Post("state/x", "k", 4)]) == [3]
    assert b.latest(["state/x"])[("state/x", "k")].version == 2


def test_ingest_keeps_stamps_and_refuses_going_back():
    src = Blackboard()
    src.post("a", 1, [Post("state/x", "k", 1)])
    src.post("b", 2, [Post("state/x", "k", 2), Post("bid/t/a", "bid", 3)])
    dst = Blackboard(sink=lambda entries: pytest.fail("ingest must not call the sink"))
    dst.ingest(src.read(["*"]))
    assert dst.read(["*"]) == src.read(["*"]) and dst.last_seq == 3 and dst.tick == 2 and dst.n_posts == 0
    with pytest.raises(ShopfloorInputError, match="seq must increase past 3"):
        dst.ingest(src.read(["*"], since_seq=2))
    with pytest.raises(ShopfloorInputError, match="Entry objects"):
        dst.ingest([("state/x",)])
    assert dst.last_seq == 3


def test_read_strategies_agree_on_a_big_board():
    """Few-new-entries (scan) and many-new-entries (per-topic index) paths give the same answers."""
    b = Blackboard()
    for tick in range(20):
        b.post("a", tick, [Post(f"state/u{j % 50}/s{j % 7}", "k", j) for j in range(200)])
    everything = b.read(["*"])
    for since in (0, 1000, 3900, 3999, 4000):
        for patterns in (["state/u3/*"], ["state/u3/s3", "state/u4/*"], ["state/*"]):
            want = [e for e in everything if e.seq > since and any(
                e.topic == p or (p.endswith("/*") and e.topic.startswith(p[:-1])) for p in patterns)]
            assert b.read(patterns, since_seq=since) == want
