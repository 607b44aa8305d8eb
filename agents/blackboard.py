"""The blackboard: the shared, versioned store through which the agents coordinate (design notes §5).

Agents post `Post`s in batches; the board stamps each with its author, tick, a per-(topic, key) ``version``
and a board-wide ``seq``, and keeps the resulting `Entry`s. Readers ask for topic patterns, optionally only
for what is newer than a ``seq`` they have already seen.

Topics are ``/``-separated paths whose first segment is one of `TOPICS` (``state/line``, ``bid/order-7/agv-2``).
A segment is non-empty and has no ``*`` and no whitespace. Patterns are:

========================  =============================================================
pattern                   matches
========================  =============================================================
``"*"``                   every topic
``"state/line"``          exactly that topic
``"bid/*"``               every topic that starts with ``bid/`` (not ``bid`` itself)
``"bid/order-7/*"``       every topic that starts with ``bid/order-7/``
========================  =============================================================

Values must survive a JSON round trip unchanged, because the event log stores them as JSON and a replayed
run must see exactly what the live run saw: ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``
and ``dict`` with ``str`` keys, nested at most `MAX_VALUE_DEPTH` deep. Tuples, numpy scalars, NaN and
infinities are refused (call ``.tolist()`` / ``float()`` first). Containers are copied on post, so changing a
dict after posting it does not change the board; readers share the stored values and must not mutate them.

Expiry: an entry with ``expires_tick < tick`` is hidden from `Blackboard.read`, `Blackboard.latest` and
`Blackboard.wait`, where ``tick`` defaults to the board's clock, the highest tick posted so far.

The class is plain (no Ray): one lock guards the state, a `threading.Condition` on the same lock wakes
`Blackboard.wait`. Every argument and return value is picklable, and `Blackboard.snapshot` is a plain dict,
so a thin Ray actor (in ``cluster/``) can host a board. `agents.conformance.check_blackboard` is the
behaviour any implementation must show.
"""

from __future__ import annotations

import json
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from environments.errors import ShopfloorInputError

TOPICS = frozenset({
    "state", "perception", "proposal", "cfp", "bid", "award", "done",
    "command", "veto", "alarm", "query", "answer", "event", "meta", "action",
})
"""The allowed first segments of a topic."""
MAX_VALUE_DEPTH = 32  # nesting levels of lists/dicts in a value; also stops self-containing values
SNAPSHOT_FORMAT = "shopfloor-blackboard/1"
ROW_FIELDS = ("seq", "tick", "topic", "key", "version", "author", "value_json", "confidence", "expires_tick")
"""The order of `Entry.to_row`, which is also the column order of the event log's ``events`` table."""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
try:  # The C encoder made once: half the cost of JSONEncoder.encode, which builds it again for every call.
    from json.encoder import c_make_encoder, encode_basestring

    def _not_json(o: Any) -> Any:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    _c_encode = c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, False)
    if "".join(_c_encode({"a": [1.5, "é", None, True]}, 0)) == _dumps({"a": [1.5, "é", None, True]}):
        def _dumps(value: Any, _encode=_c_encode, _join="".join) -> str:  # noqa: F811
            return _join(_encode(value, 0))
except Exception:  # noqa: BLE001 - no C accelerator or another signature: keep JSONEncoder.encode
    pass
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NUMBERS = frozenset({int, float})
_seq_of = attrgetter("seq")


@dataclass(frozen=True, slots=True)
class Entry:
    """One accepted post, as stored on the board and in the event log.

    Attributes
    ----------
    topic : str
        ``/``-separated topic, e.g. ``"bid/order-7/agv-2"``.
    key : str
        The item within the topic; (topic, key) is what versions count.
    value : Any
        JSON-compatible value (see the module docstring). Read-only.
    author : str
        Id of the agent that posted it.
    tick : int
        The plant tick the author posted it for.
    version : int
        1 for the first entry of a (topic, key), then +1 per entry.
    seq : int
        Board-wide sequence number, 1, 2, 3, ... in acceptance order; ``read(since_seq=...)`` counts on it.
    confidence : float
        In [0, 1]; 1.0 unless the author says otherwise.
    expires_tick : int | None
        Last tick at which the entry is current; ``None`` never expires.
    """

    topic: str
    key: str
    value: Any
    author: str
    tick: int
    version: int
    seq: int
    confidence: float = 1.0
    expires_tick: int | None = None

    def to_row(self) -> tuple:
        """The entry as a plain tuple in `ROW_FIELDS` order, with the value as compact JSON text."""
        return (self.seq, self.tick, self.topic, self.key, self.version, self.author, _dumps(self.value),
                self.confidence, self.expires_tick)

    @classmethod
    def from_row(cls, row: Sequence) -> Entry:
        """Inverse of `to_row` (also accepts a row read back from SQLite)."""
        seq, tick, topic, key, version, author, value_json, confidence, expires_tick = row
        return _EntryBuilder(topic, key, json.loads(value_json), author, tick, version, seq, confidence,
                             expires_tick)

    def __reduce__(self):
        # Pickle as a plain tuple and rebuild through the fast path: the dataclass default (getstate/setstate
        # with object.__setattr__ per field) is ~10 µs per entry, which would dominate Ray transfers.
        return (_EntryBuilder, (self.topic, self.key, self.value, self.author, self.tick, self.version, self.seq,
                                self.confidence, self.expires_tick))


@dataclass(frozen=True, slots=True)
class Post:
    """What an agent submits; `Blackboard.post` adds the author and tick for the whole batch.

    Attributes
    ----------
    topic, key, value :
        As in `Entry`.
    confidence : float
        In [0, 1].
    expires_tick : int | None
        Last tick at which the entry is current; ``None`` never expires.
    """

    topic: str
    key: str
    value: Any
    confidence: float = 1.0
    expires_tick: int | None = None

    def __reduce__(self):
        return (_PostBuilder, (self.topic, self.key, self.value, self.confidence, self.expires_tick))


class _EntryBuilder:
    """Makes an `Entry` about 3x faster than its frozen ``__init__`` (1.3 µs instead of 4 µs here).

    A frozen dataclass sets each field through ``object.__setattr__``; this twin with the same slots sets
    them as plain attributes and then becomes an `Entry` (same slot layout, so ``__class__`` may change).
    The result is an ordinary frozen `Entry`. This is the board's hot path: 200,000 posts/s leaves 5 µs per post.
    """

    __slots__ = Entry.__slots__

    def __init__(self, topic, key, value, author, tick, version, seq, confidence=1.0, expires_tick=None):
        self.topic = topic
        self.key = key
        self.value = value
        self.author = author
        self.tick = tick
        self.version = version
        self.seq = seq
        self.confidence = confidence
        self.expires_tick = expires_tick
        self.__class__ = Entry


class _PostBuilder:
    """The same fast path for `Post`, used when unpickling batches."""

    __slots__ = Post.__slots__

    def __init__(self, topic, key, value, confidence=1.0, expires_tick=None):
        self.topic = topic
        self.key = key
        self.value = value
        self.confidence = confidence
        self.expires_tick = expires_tick
        self.__class__ = Post


# ---------------------------------------------------------------- validation (raises ShopfloorInputError)


class _BadValue(Exception):
    def __init__(self, where: str, why: str):
        super().__init__(where, why)
        self.where, self.why = where, why


def _clean_value(value: Any, depth: int = 0) -> Any:
    """Check that ``value`` survives a JSON round trip unchanged; return it, with containers copied.

    Raises `_BadValue` naming where in the value the problem is.
    """
    t = type(value)
    if t is dict:
        if depth >= MAX_VALUE_DEPTH:
            raise _BadValue("", f"nests deeper than {MAX_VALUE_DEPTH} levels (or contains itself)")
        out = value.copy()
        for k, v in out.items():
            tv = type(v)
            if type(k) is not str:
                raise _BadValue("", f"has a {type(k).__name__} dict key {k!r}; dict keys must be str")
            if tv is float:
                if v - v != 0.0:  # NaN or +-inf
                    raise _BadValue(f"[{k!r}]", f"is {v!r}; floats must be finite (JSON has no NaN or infinity)")
            elif tv not in _SCALARS:
                try:
                    out[k] = _clean_value(v, depth + 1)  # replacing a value while iterating is allowed
                except _BadValue as e:
                    raise _BadValue(f"[{k!r}]{e.where}", e.why) from None
        return out
    if t is list:
        if depth >= MAX_VALUE_DEPTH:
            raise _BadValue("", f"nests deeper than {MAX_VALUE_DEPTH} levels (or contains itself)")
        out = value.copy()
        i = 0
        for v in out:
            tv = type(v)
            if tv is float:
                if v - v != 0.0:
                    raise _BadValue(f"[{i}]", f"is {v!r}; floats must be finite (JSON has no NaN or infinity)")
            elif tv not in _SCALARS:
                try:
                    out[i] = _clean_value(v, depth + 1)
                except _BadValue as e:
                    raise _BadValue(f"[{i}]{e.where}", e.why) from None
            i += 1
        return out
    if t in _SCALARS:
        if t is float and value - value != 0.0:  # NaN or +-inf
            raise _BadValue("", f"is {value!r}; floats must be finite (JSON has no NaN or infinity)")
        return value
    name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    hint = ("use a list" if t is tuple else "convert with .tolist(), float() or int()"
            if t.__module__.split(".")[0] == "numpy" else "use None, bool, int, finite float, str, list or dict")
    raise _BadValue("", f"has a {name} ({hint})")


def check_topic(topic: Any) -> str:
    """Return ``topic`` if it is a valid topic, else raise `ShopfloorInputError` saying what is allowed."""
    if type(topic) is not str:
        raise ShopfloorInputError(f"topic must be a str like 'state/line', got {type(topic).__name__} {topic!r}")
    segments = topic.split("/")
    if segments[0] not in TOPICS:
        raise ShopfloorInputError(
            f"topic {topic!r} starts with {segments[0]!r}; allowed first segments: {', '.join(sorted(TOPICS))}")
    for s in segments:
        if not s or "*" in s or " " in s or not s.isprintable():
            raise ShopfloorInputError(
                f"topic {topic!r} has a bad segment {s!r}; segments are non-empty, separated by '/', "
                "without '*' or whitespace")
    return topic


def check_segment(segment: Any, what: str) -> str:
    """Return ``segment`` if it can be one topic segment (an id such as a task or agent id), else raise."""
    if type(segment) is not str or not segment or "/" in segment or "*" in segment or " " in segment \
            or not segment.isprintable():
        raise ShopfloorInputError(
            f"{what} {segment!r} cannot be a topic segment; use a non-empty str without '/', '*' or whitespace")
    return segment


def _check_author_tick(author: Any, tick: Any) -> None:
    if type(author) is not str or not author:
        raise ShopfloorInputError(f"author must be a non-empty str (the agent id), got {author!r}")
    if type(tick) is not int or tick < 0:
        raise ShopfloorInputError(f"tick must be an int >= 0, got {type(tick).__name__} {tick!r}")


def check_post(i: int, post: Any) -> Any:
    """Check one post fully; return its value to store (containers copied). Raises `ShopfloorInputError`.

    `Blackboard.post` runs a faster inline version of these checks and calls this for the message.
    """
    if type(post) is not Post:
        raise ShopfloorInputError(f"post {i} is a {type(post).__name__}; posts must be agents.blackboard.Post")
    try:
        check_topic(post.topic)
    except ShopfloorInputError as e:
        raise ShopfloorInputError(f"post {i}: {e}") from None
    where = f"post {i} (topic {post.topic!r}, key {post.key!r})"
    if type(post.key) is not str:
        raise ShopfloorInputError(f"{where}: key must be a str, got {type(post.key).__name__}")
    try:
        value = _clean_value(post.value)
    except _BadValue as e:
        raise ShopfloorInputError(f"{where}: value{e.where} {e.why}") from None
    c = post.confidence
    if type(c) not in _NUMBERS or not 0.0 <= c <= 1.0:
        raise ShopfloorInputError(f"{where}: confidence must be a number in [0, 1], got {c!r}")
    x = post.expires_tick
    if x is not None and type(x) is not int:
        raise ShopfloorInputError(f"{where}: expires_tick must be an int tick or None, got {x!r}")
    return value


# ---------------------------------------------------------------- patterns

_ALL = 0
_EXACT = 1
_PREFIX = 2


def _compile_pattern(pattern: Any) -> tuple[int, str]:
    if type(pattern) is not str:
        raise ShopfloorInputError(f"a topic pattern must be a str, got {type(pattern).__name__} {pattern!r}")
    if pattern == "*":
        return (_ALL, "")
    prefix = pattern.endswith("/*")
    try:
        check_topic(pattern[:-2] if prefix else pattern)
    except ShopfloorInputError:
        raise ShopfloorInputError(
            f"bad topic pattern {pattern!r}; allowed: '*', a topic like 'state/line', or a topic followed by '/*' "
            f"like 'bid/*', with the first segment one of {', '.join(sorted(TOPICS))}") from None
    return (_PREFIX, pattern[:-1]) if prefix else (_EXACT, pattern)


class Blackboard:
    """Thread-safe, versioned, in-process blackboard.

    Parameters
    ----------
    sink : Callable[[list[Entry]], None] | None
        Called with the new entries of every accepted batch (and of each successful `compare_and_set`), in
        ``seq`` order, while the board's lock is held, so whatever it writes (e.g. `agents.eventlog.LogSink`)
        is in ``seq`` order too. If it raises, the batch is taken back and the error propagates.

    Notes
    -----
    State: every entry in ``seq`` order (``_log``), per topic its entries and its latest entry per key
    (``_topics``), and per topic prefix (``"bid/"``, ``"bid/order-7/"``) the topics under it (``_prefixes``).
    A post costs a few dict look-ups and two list appends; memory grows by one `Entry` (~150 bytes plus the
    value) per post.
    """

    def __init__(self, sink: Callable[[list[Entry]], None] | None = None):
        self.sink = sink
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._log: list[Entry] = []
        self._topics: dict[str, tuple[list[Entry], dict[str, Entry]]] = {}
        self._prefixes: dict[str, list[str]] = {}
        self._last_seq = 0
        self._tick = 0
        self._n_posts = 0
        self._n_waiting = 0  # threads inside wait(); posts skip the (slow, pure Python) notify when there are none
        self._patterns: dict[str, tuple[int, str]] = {}  # compiled pattern cache

    # ------------------------------------------------------------ read-outs

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest entry (0 for an empty board)."""
        return self._last_seq

    @property
    def n_posts(self) -> int:
        """Entries this board object accepted (posts and successful compare-and-sets; not restored or ingested)."""
        return self._n_posts

    @property
    def tick(self) -> int:
        """The board's clock: the highest tick posted so far; the default ``tick`` for expiry."""
        return self._tick

    # ------------------------------------------------------------ writing

    def post(self, author: str, tick: int, posts: list[Post]) -> list[int]:
        """Accept a batch of posts, all or none.

        Parameters
        ----------
        author : str
            Agent id, stamped on every entry.
        tick : int
            Plant tick (>= 0), stamped on every entry.
        posts : list[Post]
            The batch, in the order in which it gets its ``seq`` numbers. Two posts to one (topic, key) in one
            batch make two versions.

        Returns
        -------
        list[int]
            The ``seq`` of each entry, in batch order: the acknowledgement.

        Raises
        ------
        ShopfloorInputError
            If anything in the batch is invalid; then nothing of it is posted.
        """
        _check_author_tick(author, tick)
        if type(posts) is not list:
            raise ShopfloorInputError(f"posts must be a list of Post, got {type(posts).__name__}")
        if not posts:
            return []
        with self._lock:
            first = self._last_seq + 1
            self._append_locked(author, tick, posts)
        return list(range(first, first + len(posts)))

    def compare_and_set(self, author: str, tick: int, topic: str, key: str, expected_version: int, value: Any,
                        confidence: float = 1.0, expires_tick: int | None = None) -> tuple[bool, Entry | None]:
        """Write (topic, key) only if its current version is ``expected_version``: a commitment.

        Parameters
        ----------
        expected_version : int
            The version the caller saw; 0 means "(topic, key) must not exist yet". Expired entries count.

        Returns
        -------
        tuple[bool, Entry | None]
            ``(True, new_entry)`` if written, else ``(False, current_entry)`` (``None`` if there is none).
        """
        _check_author_tick(author, tick)
        if type(expected_version) is not int or expected_version < 0:
            raise ShopfloorInputError(f"expected_version must be an int >= 0 (0: must not exist yet), "
                                      f"got {expected_version!r}")
        post = Post(topic, key, value, confidence, expires_tick)
        check_post(0, post)
        with self._lock:
            rec = self._topics.get(topic)
            current = rec[1].get(key) if rec is not None else None
            if (current.version if current is not None else 0) != expected_version:
                return False, current
            return True, self._append_locked(author, tick, [post])[0]

    def _append_locked(self, author: str, tick: int, posts: list[Post]) -> list[Entry]:
        """Check, stamp and store a batch, call the sink, wake waiters; all or nothing. Caller holds the lock.

        This is the hot path, so the checks of `check_post` are inlined in their cheapest form, and on any
        failure the batch is taken back and `check_post` produces the message.
        """
        topics = self._topics
        seq = self._last_seq
        new: list[Entry] = []
        add = new.append
        scalars = _SCALARS
        alloc, builder, entry_cls = object.__new__, _EntryBuilder, Entry
        try:
            for p in posts:
                if type(p) is not Post:
                    raise _BadValue("", "not a Post")
                topic = p.topic
                rec = topics.get(topic)
                if rec is None:
                    rec = self._add_topic_locked(check_topic(topic))
                key = p.key
                value = p.value
                tv = type(value)
                if tv not in scalars:
                    value = _clean_value(value)
                elif tv is float and value - value != 0.0:
                    raise _BadValue("", "not finite")
                c = p.confidence
                if (type(c) is not float and type(c) is not int) or not 0.0 <= c <= 1.0:
                    raise _BadValue("", "bad confidence")
                x = p.expires_tick
                if type(key) is not str or (x is not None and type(x) is not int):
                    raise _BadValue("", "bad key or expires_tick")
                history, latest = rec
                prev = latest.get(key)
                seq += 1
                # Inline `_EntryBuilder(...)`: a call costs more than the nine slot stores.
                e = alloc(builder)
                e.topic = topic
                e.key = key
                e.value = value
                e.author = author
                e.tick = tick
                e.version = 1 if prev is None else prev.version + 1
                e.seq = seq
                e.confidence = c
                e.expires_tick = x
                e.__class__ = entry_cls
                latest[key] = e
                history.append(e)
                add(e)
        except Exception:
            self._take_back_locked(new)
            for i, p in enumerate(posts):
                check_post(i, p)  # raises ShopfloorInputError naming the first bad post
            raise
        last_seq, old_tick = self._last_seq, self._tick
        self._log += new
        self._last_seq = seq
        if tick > old_tick:
            self._tick = tick
        if self.sink is not None:
            try:
                self.sink(new)
            except BaseException:
                del self._log[len(self._log) - len(new):]
                self._take_back_locked(new)
                self._last_seq, self._tick = last_seq, old_tick
                raise
        self._n_posts += len(new)
        if self._n_waiting:
            self._cond.notify_all()
        return new

    def _take_back_locked(self, new: list[Entry]) -> None:
        """Remove ``new`` (the newest entries of their topics) from the topic index (rare path)."""
        for e in reversed(new):
            history, latest = self._topics[e.topic]
            history.pop()
            if e.version == 1:
                del latest[e.key]
            else:
                latest[e.key] = next(x for x in reversed(history) if x.key == e.key)

    def _add_topic_locked(self, topic: str) -> tuple[list[Entry], dict[str, Entry]]:
        rec: tuple[list[Entry], dict[str, Entry]] = ([], {})
        self._topics[topic] = rec
        i = topic.find("/")
        while i != -1:
            self._prefixes.setdefault(topic[:i + 1], []).append(topic)
            i = topic.find("/", i + 1)
        return rec

    def ingest(self, entries: list[Entry]) -> None:
        """Load already-stamped entries verbatim (replay from an event log); the sink is not called.

        Their ``seq`` must increase and exceed `last_seq`; versions and ticks are kept as they are.
        """
        if not entries:
            return
        with self._lock:
            seq = self._last_seq
            for e in entries:
                if type(e) is not Entry:
                    raise ShopfloorInputError(f"ingest takes Entry objects, got {type(e).__name__}")
                if e.seq <= seq:
                    raise ShopfloorInputError(f"cannot ingest entry seq {e.seq}: seq must increase past {seq}")
                seq = e.seq
                if e.topic not in self._topics:
                    check_topic(e.topic)
            topics = self._topics
            for e in entries:
                rec = topics.get(e.topic)
                if rec is None:
                    rec = self._add_topic_locked(e.topic)
                rec[0].append(e)
                rec[1][e.key] = e
            self._log += entries
            self._last_seq = seq
            self._tick = max(self._tick, max(e.tick for e in entries))
            if self._n_waiting:
                self._cond.notify_all()

    # ------------------------------------------------------------ reading

    def _compile(self, patterns: list[str]) -> list[tuple[int, str]]:
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
            raise ShopfloorInputError(f"patterns must be a list of topic patterns such as ['bid/*'], got {patterns!r}")
        cache = self._patterns
        out = []
        for p in patterns:
            c = cache.get(p) if type(p) is str else None
            if c is None:
                c = _compile_pattern(p)
                if len(cache) < 10_000:
                    cache[p] = c
            out.append(c)
        return out

    def _matching_topics_locked(self, compiled: list[tuple[int, str]]) -> list[str] | None:
        """The topics any pattern matches, without duplicates; ``None`` means all."""
        seen: set[str] = set()
        out: list[str] = []
        for kind, arg in compiled:
            if kind == _ALL:
                return None
            for t in ((arg,) if kind == _EXACT else self._prefixes.get(arg, ())):
                if t not in seen and t in self._topics:
                    seen.add(t)
                    out.append(t)
        return out

    def _read_locked(self, compiled: list[tuple[int, str]], since_seq: int, include_expired: bool,
                     tick: int | None) -> list[Entry]:
        log = self._log
        start = bisect_right(log, since_seq, key=_seq_of) if since_seq > 0 else 0
        topics = self._matching_topics_locked(compiled)
        if topics is None:
            out = log[start:]
        elif not topics or start == len(log):
            return []
        elif len(log) - start <= 16 * len(topics):
            # Few new entries: one pass over them beats a binary search per topic.
            exact = {arg for kind, arg in compiled if kind == _EXACT}
            prefixes = tuple(arg for kind, arg in compiled if kind == _PREFIX)
            out = [e for e in log[start:] if e.topic in exact or e.topic.startswith(prefixes)]
        else:
            out = []
            for t in topics:
                history = self._topics[t][0]
                out += history[bisect_right(history, since_seq, key=_seq_of):] if since_seq > 0 else history
            if len(topics) > 1:
                out.sort(key=_seq_of)
        if not include_expired:
            now = self._tick if tick is None else tick
            out = [e for e in out if e.expires_tick is None or e.expires_tick >= now]
        return out

    def read(self, patterns: list[str], since_seq: int = 0, include_expired: bool = False,
             tick: int | None = None) -> list[Entry]:
        """Entries on topics matching any of ``patterns`` with ``seq > since_seq``, in ``seq`` order.

        Parameters
        ----------
        patterns : list[str]
            Topic patterns (module docstring).
        since_seq : int
            Return only entries newer than this ``seq`` (e.g. the last one the reader has seen).
        include_expired : bool
            Keep entries with ``expires_tick < tick``.
        tick : int | None
            The reader's tick for expiry; ``None`` uses the board's clock (`tick`).
        """
        compiled = self._compile(patterns)
        _check_since(since_seq)
        _check_read_tick(tick)
        with self._lock:
            return self._read_locked(compiled, since_seq, include_expired, tick)

    def latest(self, patterns: list[str], tick: int | None = None,
               include_expired: bool = False) -> dict[tuple[str, str], Entry]:
        """The current entry of every (topic, key) on topics matching ``patterns``, in ``seq`` order.

        A (topic, key) whose current entry has expired is left out (its older versions do not come back).
        """
        compiled = self._compile(patterns)
        _check_read_tick(tick)
        with self._lock:
            topics = self._matching_topics_locked(compiled)
            recs = self._topics.values() if topics is None else [self._topics[t] for t in topics]
            current = [e for rec in recs for e in rec[1].values()]
            now = self._tick if tick is None else tick
        if not include_expired:
            current = [e for e in current if e.expires_tick is None or e.expires_tick >= now]
        current.sort(key=_seq_of)
        return {(e.topic, e.key): e for e in current}

    def wait(self, patterns: list[str], since_seq: int = 0, timeout_s: float = 1.0) -> list[Entry]:
        """Like `read`, but block until at least one matching entry newer than ``since_seq`` exists.

        Returns ``[]`` if none arrives within ``timeout_s`` seconds. Expiry uses the board's clock.
        """
        compiled = self._compile(patterns)
        _check_since(since_seq)
        if type(timeout_s) not in _NUMBERS or not timeout_s >= 0.0:
            raise ShopfloorInputError(f"timeout_s must be a number of seconds >= 0, got {timeout_s!r}")
        deadline = time.monotonic() + timeout_s
        scanned = since_seq
        with self._lock:
            while True:
                if self._last_seq > scanned:
                    out = self._read_locked(compiled, scanned, False, None)
                    if out:
                        return out
                    # Nothing matched up to here, and the clock only moves forward, so later matches are all
                    # newer than this: scan only those next time.
                    scanned = self._last_seq
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    return []
                self._n_waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._n_waiting -= 1

    # ------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> dict:
        """The current state as a plain dict (picklable and JSON-compatible).

        It holds the latest entry of every (topic, key), expired ones included, as `Entry.to_row` rows in
        ``seq`` order, plus ``last_seq`` and ``tick``. History is not kept: after `restore`, ``read`` returns
        only these entries. Replay an event log for the full history.
        """
        with self._lock:
            current = [e for rec in self._topics.values() for e in rec[1].values()]
            last_seq, tick = self._last_seq, self._tick
        current.sort(key=_seq_of)
        return {"format": SNAPSHOT_FORMAT, "last_seq": last_seq, "tick": tick,
                "rows": [e.to_row() for e in current]}

    @classmethod
    def restore(cls, snapshot: dict, sink: Callable[[list[Entry]], None] | None = None) -> Blackboard:
        """A new board in the state of ``snapshot`` (from `snapshot`); new posts continue its seq and versions."""
        if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
            got = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
            raise ShopfloorInputError(f"not a blackboard snapshot (format {got!r}; expected {SNAPSHOT_FORMAT!r})")
        try:
            entries = [Entry.from_row(r) for r in snapshot["rows"]]
            last_seq, tick = int(snapshot["last_seq"]), int(snapshot["tick"])
        except (KeyError, TypeError, ValueError) as e:
            raise ShopfloorInputError(f"blackboard snapshot is damaged: {type(e).__name__}: {e}") from None
        board = cls(sink=sink)
        board.ingest(entries)
        if last_seq < board._last_seq:
            raise ShopfloorInputError(f"blackboard snapshot is damaged: last_seq {last_seq} is below its entries' "
                                      f"{board._last_seq}")
        board._last_seq = last_seq
        board._tick = max(board._tick, tick)
        return board


def _check_since(since_seq: Any) -> None:
    if type(since_seq) is not int or since_seq < 0:
        raise ShopfloorInputError(f"since_seq must be an int >= 0 (a seq already seen, or 0), got {since_seq!r}")


def _check_read_tick(tick: Any) -> None:
    if tick is not None and type(tick) is not int:
        raise ShopfloorInputError(f"tick must be an int or None (the board's clock), got {tick!r}")
