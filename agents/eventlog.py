"""The run's durable event log (design notes §5): every blackboard entry is one SQLite row, written one
transaction per tick, so a run can be replayed, or resumed after a crash.

File ``RUN_DIR/events.sqlite``::

    events(seq INTEGER PRIMARY KEY, tick, topic, key, version, author, value_json, confidence, expires_tick)
    ticks(tick INTEGER PRIMARY KEY, committed_at, n_events, last_seq)   -- one row per committed tick
    meta(key TEXT PRIMARY KEY, value)                                   -- JSON text: scenario, seed, ...

Durability. The log runs in WAL mode with ``synchronous=FULL``: `EventLog.append_tick` returns only after
the tick's transaction is in the WAL file *and* that file is fsynced, so an acknowledged tick survives a
killed process and also a power cut or OS crash. ``NORMAL`` would skip that fsync (WAL commits survive a
killed process, but the last ones can roll back on power loss), which breaks "nothing acknowledged is lost".
FULL costs one fsync per tick, not per post, because a tick is one transaction (measured in
``benchmarks/blackboard_speed.py``). Pass ``synchronous="NORMAL"`` only for throwaway runs.

Acknowledgement. A tick is the unit of durability: the board's ``post`` acknowledges order (a ``seq``),
and `LogSink.commit` / `EventLog.append_tick` acknowledges that everything up to the end of the tick is on
disk. Because each tick is one transaction, a crash leaves whole ticks only; ``shopfloor run --resume``
rebuilds the board with `replay_into` up to `EventLog.last_committed_tick` and runs the next tick again (the
simulation is deterministic, so that tick's posts are made again, with the same seqs).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from agents.blackboard import Entry
from environments.errors import ShopfloorInputError

LOG_FORMAT = "shopfloor-events/1"
SYNCHRONOUS = ("FULL", "NORMAL")
_CHUNK = 5_000  # rows per SELECT when iterating

_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    tick INTEGER NOT NULL,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    author TEXT NOT NULL,
    value_json TEXT NOT NULL,
    confidence REAL NOT NULL,
    expires_tick INTEGER
);
CREATE TABLE ticks (
    tick INTEGER PRIMARY KEY,
    committed_at REAL NOT NULL,  -- unix time, seconds
    n_events INTEGER NOT NULL,
    last_seq INTEGER NOT NULL    -- seq of the last event written up to and including this tick
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL          -- JSON
);
"""


class EventLog:
    """Append-only SQLite log of blackboard entries, one transaction per tick.

    Parameters
    ----------
    path : str | Path
        The log file, usually ``RUN_DIR/events.sqlite``. Created if missing (its directory must exist);
        an existing log is continued.
    synchronous : str
        ``"FULL"`` (default: acknowledged ticks survive power loss) or ``"NORMAL"`` (module docstring).

    Raises
    ------
    ShopfloorInputError
        If ``path`` exists but is not a shopfloor event log, or cannot be opened.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        self.path = Path(path)
        if synchronous not in SYNCHRONOUS:
            raise ShopfloorInputError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        if not self.path.parent.is_dir():
            raise ShopfloorInputError(f"cannot create event log {self.path}: directory {self.path.parent} "
                                      "does not exist")
        if self.path.is_dir():
            raise ShopfloorInputError(f"{self.path} is not a shopfloor event log: it is a directory")
        self._lock = threading.RLock()
        try:
            # isolation_level=None: no implicit transactions; append_tick says BEGIN/COMMIT itself.
            self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise ShopfloorInputError(f"{self.path} is not a shopfloor event log: {e}") from None
        try:
            self._open(synchronous)
        except ShopfloorInputError:
            self._con.close()
            raise
        except (sqlite3.DatabaseError, ValueError) as e:  # not a database, or a foreign 'meta' table
            self._con.close()
            raise ShopfloorInputError(f"{self.path} is not a shopfloor event log: {e}") from None

    def _open(self, synchronous: str) -> None:
        con = self._con
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:  # an existing database: make sure it is ours before changing anything in it
            missing = {"events", "ticks", "meta"} - tables
            if missing:
                raise ShopfloorInputError(
                    f"{self.path} is not a shopfloor event log: it has no {', '.join(sorted(missing))} table "
                    f"(tables: {', '.join(sorted(tables))})")
            fmt = self.get_meta("format")
            if fmt != LOG_FORMAT:
                raise ShopfloorInputError(f"{self.path} is not a shopfloor event log: format {fmt!r}, "
                                          f"expected {LOG_FORMAT!r}")
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ShopfloorInputError(f"{self.path}: SQLite cannot use WAL mode here (journal_mode={mode}); "
                                      "put the run directory on a local file system")
        con.execute(f"PRAGMA synchronous={synchronous}")
        # Read back what SQLite actually uses (tests check it).
        self.synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            con.execute("PRAGMA synchronous").fetchone()[0]]
        if not tables:
            con.executescript("BEGIN IMMEDIATE;" + _SCHEMA +
                              f"INSERT INTO meta VALUES ('format', '{json.dumps(LOG_FORMAT)}'); COMMIT;")
        row = con.execute("SELECT tick, last_seq FROM ticks ORDER BY tick DESC LIMIT 1").fetchone()
        self._last_tick, self._last_seq = (row[0], row[1]) if row else (None, 0)
        max_seq = con.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        if max_seq != self._last_seq:
            raise ShopfloorInputError(f"{self.path} is not a consistent shopfloor event log: events go up to seq "
                                      f"{max_seq} but committed ticks only to seq {self._last_seq}")

    # ------------------------------------------------------------ writing

    def append_tick(self, tick: int, entries: list[Entry]) -> None:
        """Write ``entries`` and mark ``tick`` committed, in one transaction; return once it is on disk.

        Parameters
        ----------
        tick : int
            Greater than `last_committed_tick`. A tick with no entries is committed too.
        entries : list[Entry]
            In ``seq`` order, continuing `last_seq`, each with ``entry.tick <= tick`` (a late post of an
            earlier tick is logged in the tick during which it arrived).
        """
        if type(tick) is not int or tick < 0:
            raise ShopfloorInputError(f"tick must be an int >= 0, got {tick!r}")
        with self._lock:
            if self._last_tick is not None and tick <= self._last_tick:
                raise ShopfloorInputError(f"tick {tick} cannot be appended to {self.path}: ticks are appended in "
                                          f"increasing order and tick {self._last_tick} is already committed")
            seq = self._last_seq
            for e in entries:
                if e.seq <= seq:
                    raise ShopfloorInputError(f"entry seq {e.seq} cannot be appended to {self.path}: seqs must "
                                              f"increase past {seq}")
                if e.tick > tick:
                    raise ShopfloorInputError(f"entry seq {e.seq} is for tick {e.tick}, after tick {tick} "
                                              "which is being committed")
                seq = e.seq
            rows = [e.to_row() for e in entries]
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                con.execute("INSERT INTO ticks VALUES (?, ?, ?, ?)", (tick, time.time(), len(rows), seq))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            self._last_tick, self._last_seq = tick, seq

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-compatible ``value`` (scenario YAML text, seed, ...) under ``key``, durably."""
        if type(key) is not str or not key or key == "format":
            raise ShopfloorInputError(f"meta key must be a non-empty str other than 'format', got {key!r}")
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ShopfloorInputError(f"meta {key!r} must be JSON-compatible: {e}") from None
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    # ------------------------------------------------------------ reading

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        with self._lock:
            row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def last_committed_tick(self) -> int | None:
        """The newest committed tick, or ``None`` for an empty log."""
        return self._last_tick

    def last_seq(self) -> int:
        """The seq of the newest logged entry (0 for an empty log)."""
        return self._last_seq

    def count(self) -> int:
        """Number of logged entries."""
        with self._lock:
            return self._con.execute("SELECT count(*) FROM events").fetchone()[0]

    def seq_bound(self, until_tick: int | None) -> int:
        """The seq of the last entry committed by tick ``until_tick`` (all ticks if ``None``)."""
        if until_tick is None:
            return self._last_seq
        with self._lock:
            row = self._con.execute("SELECT last_seq FROM ticks WHERE tick <= ? ORDER BY tick DESC LIMIT 1",
                                    (until_tick,)).fetchone()
        return row[0] if row else 0

    def entries(self, since_seq: int = 0, until_tick: int | None = None) -> Iterator[Entry]:
        """Logged entries with ``seq > since_seq`` committed by tick ``until_tick``, in ``seq`` order.

        Reads in chunks, so a long log does not have to fit in memory; entries appended meanwhile are
        not included.
        """
        bound = self.seq_bound(until_tick)
        last = since_seq
        from_row = Entry.from_row
        while last < bound:
            with self._lock:
                rows = self._con.execute("SELECT * FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                                         (last, bound, _CHUNK)).fetchall()
            if not rows:
                return
            for row in rows:
                yield from_row(row)
            last = rows[-1][0]

    def close(self) -> None:
        """Close the file (SQLite folds the WAL back into it)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LogSink:
    """A `Blackboard` sink that collects the board's entries and writes them one tick at a time.

    ``board = Blackboard(sink=LogSink(log))``; at the end of each tick the orchestrator calls
    ``board.sink.commit(tick)``. The board calls the sink inside its lock, so entries arrive in seq order.
    """

    def __init__(self, log: EventLog):
        self.log = log
        self._pending: list[Entry] = []
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def __call__(self, entries: list[Entry]) -> None:
        with self._lock:
            self._pending += entries

    @property
    def n_pending(self) -> int:
        """Entries posted since the last commit."""
        return len(self._pending)

    def commit(self, tick: int) -> int:
        """Write everything posted since the last commit as ``tick``; return the number of entries.

        If the write fails, the entries stay pending and the error propagates.
        """
        with self._commit_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            try:
                self.log.append_tick(tick, pending)
            except BaseException:
                with self._lock:
                    self._pending[:0] = pending
                raise
            return len(pending)


class _Ingests(Protocol):
    last_seq: int

    def ingest(self, entries: list[Entry]) -> None: ...


def replay_into(board: _Ingests, log: EventLog, until_tick: int | None = None) -> int:
    """Load the log's entries newer than ``board.last_seq`` and committed by ``until_tick`` into ``board``.

    Works on an empty board and on one restored from a snapshot that the log continues. Returns the number
    of entries loaded. The board's sink is not called.
    """
    n = 0
    batch: list[Entry] = []
    for e in log.entries(since_seq=board.last_seq, until_tick=until_tick):
        batch.append(e)
        if len(batch) == 10_000:
            board.ingest(batch)
            n += len(batch)
            batch = []
    board.ingest(batch)
    return n + len(batch)
