"""The SQLite event log: round trip, durability settings, crash consistency (SIGKILL), resume, bad files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.blackboard import Blackboard, Entry, Post
from agents.eventlog import EventLog, LogSink, replay_into
from environments.errors import ShopfloorInputError

ROOT = Path(__file__).resolve().parents[1]


def _run_ticks(board: Blackboard, ticks: range) -> None:
    for tick in ticks:
        board.post("process", tick, [Post("state/reactor", "T_K", 300.0 + tick), Post("state/line", "wip", tick)])
        board.post("dispatch", tick, [Post(f"bid/o-{tick}/agv-1", "bid", {"cost": 1.5 * tick, "route": [1, 2]}),
                                      Post("alarm/heat", "level", "high", confidence=0.5, expires_tick=tick)])
        board.compare_and_set("pacing", tick, f"award/o-{tick}", "award", 0, {"winner": "agv-1"})
        board.sink.commit(tick)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite"


def test_round_trip(log_path):
    with EventLog(log_path) as log:
        board = Blackboard(sink=LogSink(log))
        _run_ticks(board, range(5))
        everything = board.read(["*"], include_expired=True)
        assert list(log.entries()) == everything
        assert log.count() == len(everything) == 25 and log.last_seq() == 25 and log.last_committed_tick() == 4
        assert list(log.entries(since_seq=7)) == everything[7:]
        assert list(log.entries(until_tick=1)) == [e for e in everything if e.tick <= 1]
        assert list(log.entries(since_seq=3, until_tick=2)) == [e for e in everything if e.tick <= 2][3:]
        assert list(log.entries(until_tick=-1)) == []
        assert board.sink.n_pending == 0


def test_one_row_per_entry_in_the_documented_schema(log_path):
    with EventLog(log_path) as log:
        _run_ticks(Blackboard(sink=LogSink(log)), range(2))
    con = sqlite3.connect(log_path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(events)")]
    assert cols == ["seq", "tick", "topic", "key", "version", "author", "value_json", "confidence", "expires_tick"]
    assert [r[1] for r in con.execute("PRAGMA table_info(ticks)")][:3] == ["tick", "committed_at", "n_events"]
    assert con.execute("SELECT value_json FROM events WHERE topic = 'bid/o-1/agv-1'").fetchone()[0] == \
        '{"cost":1.5,"route":[1,2]}'
    assert con.execute("SELECT tick, n_events FROM ticks").fetchall() == [(0, 5), (1, 5)]


def test_wal_mode_and_full_sync(log_path):
    log = EventLog(log_path)
    assert log.synchronous == "FULL"
    log.append_tick(0, [])
    other = sqlite3.connect(log_path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM ticks").fetchone()[0] == 1  # visible before close
    log.close()
    assert EventLog(log_path, synchronous="NORMAL").synchronous == "NORMAL"
    with pytest.raises(ShopfloorInputError, match="synchronous must be one of FULL, NORMAL"):
        EventLog(log_path, synchronous="OFF")


def test_acknowledged_tick_is_visible_to_another_process(log_path):
    log = EventLog(log_path)
    board = Blackboard(sink=LogSink(log))
    _run_ticks(board, range(3))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3
        con = sqlite3.connect({str(log_path)!r})
        print(con.execute("SELECT count(*), max(tick) FROM events").fetchone())
    """)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(15, 2)"
    log.close()


def test_a_tick_is_one_transaction(log_path):
    with EventLog(log_path) as log:
        log.append_tick(0, [Entry("state/x", "k", 1, "a", 0, 1, 1)])
        broken = [Entry("state/x", "k", 2, "a", 1, 2, 2), Entry(None, "k", 3, "a", 1, 3, 3)]  # NOT NULL fails
        with pytest.raises(sqlite3.IntegrityError):
            log.append_tick(1, broken)
        assert log.count() == 1 and log.last_committed_tick() == 0 and log.last_seq() == 1
        log.append_tick(1, [Entry("state/x", "k", 2, "a", 1, 2, 2)])
        assert log.count() == 2


def test_append_refuses_going_back(log_path):
    with EventLog(log_path) as log:
        log.append_tick(3, [Entry("state/x", "k", 1, "a", 3, 1, 1)])
        with pytest.raises(ShopfloorInputError, match="tick 3 is already committed"):
            log.append_tick(3, [])
        with pytest.raises(ShopfloorInputError, match="seqs must increase past 1"):
            log.append_tick(4, [Entry("state/x", "k", 1, "a", 4, 1, 1)])
        with pytest.raises(ShopfloorInputError, match="for tick 6, after tick 4"):
            log.append_tick(4, [Entry("state/x", "k", 1, "a", 6, 2, 2)])
        assert log.count() == 1


def test_failed_commit_keeps_entries_pending(log_path):
    with EventLog(log_path) as log:
        board = Blackboard(sink=LogSink(log))
        board.post("a", 5, [Post("state/x", "k", 1)])
        assert board.sink.commit(5) == 1
        board.post("a", 6, [Post("state/x", "k", 2), Post("state/x", "k", 3)])
        with pytest.raises(ShopfloorInputError):
            board.sink.commit(5)
        assert board.sink.n_pending == 2
        assert board.sink.commit(6) == 2
        assert [e.value for e in log.entries()] == [1, 2, 3]


def test_reopen_continues_and_replay_rebuilds_the_board(log_path):
    with EventLog(log_path) as log:
        live = Blackboard(sink=LogSink(log))
        _run_ticks(live, range(4))
        log.set_meta("seed", 7)
    with EventLog(log_path) as log:
        assert log.get_meta("seed") == 7 and log.last_committed_tick() == 3
        resumed = Blackboard(sink=LogSink(log))
        assert replay_into(resumed, log) == 20
        assert resumed.read(["*"], include_expired=True) == live.read(["*"], include_expired=True)
        assert resumed.latest(["*"]) == live.latest(["*"]) and resumed.tick == live.tick
        _run_ticks(resumed, range(4, 6))
        live.sink = LogSink(EventLog(log_path.with_name("other.sqlite")))  # the first log is someone else's now
        _run_ticks(live, range(4, 6))
    with EventLog(log_path) as log:
        assert list(log.entries()) == live.read(["*"], include_expired=True)
        partial = Blackboard()
        replay_into(partial, log, until_tick=1)
        assert partial.last_seq == 10 and partial.tick == 1
        # Snapshot at tick 1 plus the rest of the log gives the full current state.
        restored = Blackboard.restore(partial.snapshot())
        assert replay_into(restored, log) == 20
        assert restored.latest(["*"], include_expired=True) == live.latest(["*"], include_expired=True)


def test_meta(log_path):
    with EventLog(log_path) as log:
        log.set_meta("scenario_yaml", "seed: 3\nticks: 10\n")
        log.set_meta("seeds", [1, 2])
        log.set_meta("seeds", [3])
        assert log.get_meta("scenario_yaml") == "seed: 3\nticks: 10\n"
        assert log.get_meta("seeds") == [3] and log.get_meta("missing", "x") == "x"
        with pytest.raises(ShopfloorInputError, match="JSON-compatible"):
            log.set_meta("bad", {1, 2})
        with pytest.raises(ShopfloorInputError, match="other than 'format'"):
            log.set_meta("format", "x")


def test_bad_files(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(ShopfloorInputError, match=r"garbage.sqlite is not a shopfloor event log: file is not a"):
        EventLog(garbage)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE people(name); INSERT INTO people VALUES ('x');")
    with pytest.raises(ShopfloorInputError, match=r"other.sqlite is not a shopfloor event log: it has no events"):
        EventLog(other)
    assert sqlite3.connect(other).execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left untouched
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).executescript(
        "CREATE TABLE events(x); CREATE TABLE ticks(x); CREATE TABLE meta(key, value);"
        "INSERT INTO meta VALUES ('format', 'not json');")
    with pytest.raises(ShopfloorInputError, match="is not a shopfloor event log"):
        EventLog(foreign)
    with pytest.raises(ShopfloorInputError, match="is not a shopfloor event log: it is a directory"):
        EventLog(tmp_path)
    with pytest.raises(ShopfloorInputError, match="does not exist"):
        EventLog(tmp_path / "no-such-run" / "events.sqlite")
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # a crash right after creating the file: a new log
    with EventLog(empty) as log:
        assert log.count() == 0 and log.last_committed_tick() is None
    for err in ("garbage", "other", "foreign"):
        try:
            EventLog(tmp_path / f"{err}.sqlite")
        except ShopfloorInputError as e:
            assert "\n" not in str(e)


_WRITER = """
import sys
from agents.blackboard import Blackboard, Post
from agents.eventlog import EventLog, LogSink, replay_into
log = EventLog(sys.argv[1])
board = Blackboard(sink=LogSink(log))
replay_into(board, log)
last = log.last_committed_tick()
for tick in range(0 if last is None else last + 1, 10**6):
    board.post("writer", tick, [Post(f"state/u{j % 7}", "k", {"tick": tick, "j": j}) for j in range(N_PER_TICK)])
    board.sink.commit(tick)
    print(tick, flush=True)
"""
N_PER_TICK = 600


def _write_then_kill(path: Path, n_acks: int, phase: float) -> int:
    """Start a writer and SIGKILL it ``phase`` tick-durations after its ``n_acks``-th acknowledged tick
    (phases spread the kills over posting, inserting and committing); return that tick."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.replace("N_PER_TICK", str(N_PER_TICK)), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    acked = None
    try:
        for k in range(n_acks):
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read()}"
            acked = int(line)
            if k == 1:
                t_first = time.perf_counter()
        time.sleep(phase * (time.perf_counter() - t_first) / (n_acks - 2))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def _check_consistent(path: Path, acked: int) -> int:
    with EventLog(path) as log:
        last = log.last_committed_tick()
        assert last is not None and last >= acked, f"acknowledged tick {acked} lost (log ends at {last})"
        n = log.count()
        assert n == log.last_seq() == (last + 1) * N_PER_TICK
    con = sqlite3.connect(path)
    ticks = con.execute("SELECT tick, n_events, last_seq FROM ticks ORDER BY tick").fetchall()
    assert [t for t, _, _ in ticks] == list(range(last + 1))
    per_tick = dict(con.execute("SELECT tick, count(*) FROM events GROUP BY tick"))
    for tick, n_events, last_seq in ticks:
        assert n_events == per_tick[tick] == N_PER_TICK, f"tick {tick} is incomplete"
        assert last_seq == (tick + 1) * N_PER_TICK
    seqs = [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, n + 1))
    for topic, versions in con.execute("SELECT topic, group_concat(version) FROM "
                                       "(SELECT topic, version FROM events ORDER BY seq) GROUP BY topic"):
        versions = [int(v) for v in versions.split(",")]
        assert versions == list(range(1, len(versions) + 1)), f"{topic}: versions not continued on resume"
    con.close()
    return last


def test_sigkill_leaves_whole_ticks_and_resume_continues(log_path):
    last = None
    for phase in (0.0, 0.35, 0.7):  # crash, resume from the log, crash again ...
        acked = _write_then_kill(log_path, n_acks=6, phase=phase)
        assert last is None or acked == last + 6
        last = _check_consistent(log_path, acked)
