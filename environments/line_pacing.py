"""A serial production line: N stations, finite buffers, stochastic processing, breakdowns, defects and rework.

The line model
--------------
Parts are released into the input buffer of station 0, flow through stations 0..N-1 and are inspected on
leaving the last one. Each station has a finite *input* buffer (``buffer_capacity``); the part in service is
not in the buffer. A station that finishes a part while the next buffer is full holds it and is *blocked*
(blocking after service); a station with an empty input buffer is *starved*.

* Processing time at station ``i``: gamma distributed with mean ``mean_process_min / speed_i`` and
  coefficient of variation ``process_cv``. Speed factors are the controller's lever.
* Breakdowns are operation-dependent (Buzacott & Shanthikumar, 1993): a station fails after an exponential
  amount of *working* time with mean ``mtbf_h`` and is repaired in an exponential time with mean ``mttr_h``.
  Starved or blocked stations do not wear. Scripted breakdowns (`LineSim.force_breakdown`) come on top.
* Releases: the release rate (parts per hour) spaces release attempts evenly; an attempt that finds the
  first buffer full is lost (raw material stays in the warehouse, it is not counted as released).
* Defects: each part carries a hazard, raised at release by poor feed purity and at every station by speed
  above nominal; on leaving the line it is defective with probability ``1 - exp(-(base + hazard))``, its type
  drawn from ``defect_type_weights`` (indices into `environments.parts.DEFECT_TYPES`, 0 = good).
* Inspection: a rejected part is reworked (sent back to the head of the line, ahead of new releases) with
  probability ``rework_fraction``, otherwise scrapped. A passed part ships. Standalone, a built-in inspector
  with ``detection_rate`` and ``false_alarm_rate`` decides; in the whole Plant the inspection agent does
  (``external_inspection=True``, see `LineSim.resolve_inspection`).

Books: ``released == shipped + scrapped + wip`` at every instant, where wip counts buffers, stations,
the rework queue and parts awaiting inspection.

The core (`LineSim`) is a plain event-driven simulator with no gym dependency; `LinePacingEnv` is the
Gymnasium wrapper. The event loop is compiled with numba (``cache=True``: compiled once per machine, then
loaded from ``__pycache__``) and works on a few numpy tables laid out below. Random numbers come from the
seeded generator in pre-drawn batches, so the simulator is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections import namedtuple
from itertools import accumulate

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, model_validator


STARVED, BUSY, BLOCKED = 0, 1, 2


class StationConfig(BaseModel):
    """One workstation and its input buffer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("station", description="Name shown in reports and plots.")
    mean_process_min: float = Field(1.0, gt=0, description="Mean processing time at speed 1.0, minutes.")
    process_cv: float = Field(0.3, ge=0.01, le=2.0, description="Coefficient of variation of processing time.")
    mtbf_h: float = Field(8.0, gt=0, description="Mean working time between failures, hours.")
    mttr_h: float = Field(0.25, ge=0, description="Mean time to repair, hours (0 disables breakdowns).")
    buffer_capacity: int = Field(5, ge=1, le=10_000, description="Input buffer capacity, parts.")
    busy_power_kw: float = Field(5.0, ge=0, description="Electrical power while processing at speed 1.0, kW.")
    idle_power_kw: float = Field(1.0, ge=0, description="Electrical power while idle, blocked or down, kW.")


class LineConfig(BaseModel):
    """A serial line: its stations, how its parts go wrong, and how they are inspected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stations: list[StationConfig] = Field(
        default_factory=lambda: [
            StationConfig(name="cutting", mean_process_min=0.9),
            StationConfig(name="forming", mean_process_min=1.0),
            StationConfig(name="welding", mean_process_min=0.95, mtbf_h=6.0, mttr_h=0.3),
            StationConfig(name="finishing", mean_process_min=0.85),
        ],
        min_length=1,
        max_length=64,
        description="Stations in flow order.",
    )
    max_release_per_h: float = Field(90.0, gt=0, description="Largest release rate the controller may ask for, parts/h.")
    speed_min: float = Field(0.6, gt=0, description="Slowest station speed factor.")
    speed_max: float = Field(1.4, gt=0, description="Fastest station speed factor.")
    base_defect_hazard: float = Field(0.02, ge=0, description="Defect hazard of a part made at nominal speed and purity.")
    speed_defect_gain: float = Field(0.12, ge=0, description="Hazard added per station per unit of speed above 1.0.")
    purity_reference: float = Field(0.95, gt=0, le=1, description="Feed purity below which defects rise.")
    purity_defect_gain: float = Field(2.0, ge=0, description="Hazard added per unit of purity shortfall.")
    defect_type_weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        min_length=6,
        max_length=6,
        description="Relative frequency of scratch, crack, dent, stain, missing_hole, burr.",
    )
    detection_rate: float = Field(0.95, ge=0, le=1, description="Built-in inspector: share of defective parts rejected.")
    false_alarm_rate: float = Field(0.01, ge=0, le=1, description="Built-in inspector: share of good parts rejected.")
    rework_fraction: float = Field(0.5, ge=0, le=1, description="Share of rejected parts sent back for rework.")
    wip_cost_per_h: float = Field(0.05, ge=0, description="Holding cost per part in the line per hour (reward).")
    part_margin: float = Field(1.0, ge=0, description="Value of one good part shipped (reward).")
    scrap_cost: float = Field(0.5, ge=0, description="Cost of one scrapped part (reward).")
    energy_price_per_kwh: float = Field(0.02, ge=0, description="Cost of one kWh (reward).")

    @model_validator(mode="after")
    def _check(self) -> LineConfig:
        if self.speed_min > self.speed_max:
            raise ValueError(f"speed_min {self.speed_min} must not exceed speed_max {self.speed_max}")
        if sum(self.defect_type_weights) <= 0 or min(self.defect_type_weights) < 0:
            raise ValueError(f"defect_type_weights {self.defect_type_weights} must be >= 0 with a positive sum")
        return self

    @property
    def n_stations(self) -> int:
        return len(self.stations)

    @property
    def bottleneck_rate_per_h(self) -> float:
        """Nominal capacity of the slowest station at speed 1.0, ignoring breakdowns, parts/h."""
        return min(60.0 / s.mean_process_min for s in self.stations)


# ------------------------------------------------------------------------------------------- state layout
# The simulator's state lives in a few numpy tables so that the event loop can run as compiled code
# (numba). Every table has one row per record and one named column per field; the column names below are
# module constants, which numba compiles in. Configuration fields are filled in when a LineSim is built.
# The tables are views into two flat buffers, one float64 and one int64 (see `_tables`): a call from
# Python then hands numba two arrays (passing each array costs about as much as a few events).
#
# line_f (float64[N_LINE_F]): the line as a whole.
(BASE_HAZARD, SPEED_GAIN, PURITY_GAIN, PURITY_REF,  # defect model (configuration)
 DETECTION, FALSE_ALARM, REWORK_FRACTION,  # built-in inspector and rework (configuration)
 IDLE_KW_TOTAL) = range(8)  # sum of the stations' idle power, kW (configuration)
DEFECT_CDF = 8  # 6 fields: cumulative weights of defect types 1..6 (configuration)
(NOW,  # minutes since reset
 RELEASE_GAP,  # minutes between release attempts, 60 / rate
 NEXT_RELEASE,  # time of the next release attempt, inf if the rate is 0
 LAST_ATTEMPT,  # time of the last release attempt, -inf before the first
 WIP_AREA,  # integral of WIP over time, part-minutes
 T_AREA,  # time up to which WIP_AREA is integrated
 LEAD_SUM,  # release-to-exit minutes summed over good parts shipped
 BUSY_KWH,  # energy drawn while processing
 IDLE_KW_BUSY_MIN,  # idle kW x minutes during which stations were busy (idle power is not drawn then)
 ENERGY_MARK,  # line energy at the end of the latest advance, kWh
 LAST_ENERGY,  # energy of the latest step, kWh
 N_LINE_F) = range(DEFECT_CDF + 6, DEFECT_CDF + 18)

# line_i (int64[N_LINE_I]): counters, the free list and draw cursors.
(RELEASED, SHIPPED, SHIPPED_GOOD, SCRAPPED, REWORKED, LOST_RELEASES, WIP,
 INSPECTED_DEFECTIVE, INSPECTED_GOOD, ESCAPES, FALSE_ALARMS,
 NEXT_PART_ID,  # id of the next part released
 SEQ,  # scheduling counter: events due at the same time run in the order they were scheduled
 RELEASE_SEQ,  # SEQ of the next release attempt
 FREE,  # first slot of the free list of part slots (-1: all slots in use)
 U_NEXT, E_NEXT,  # cursors into the uniform and exponential pools
 EXTERNAL,  # 1 if the external inspector decides (configuration)
 STATIONS,  # number of stations (configuration)
 N_LINE_I) = range(20)

# st_f (float64[n_stations, N_ST_F]): one row per station.
(MEAN_MIN, MTBF_MIN, MTTR_MIN, BUSY_KW, IDLE_KW,  # configuration; MTBF/MTTR in minutes
 SPEED,  # speed factor in force
 EV_TIME,  # time of the station's next event (a failure or the end of the part), inf if none
 WORK_MIN, WORK_KW,  # processing minutes and busy kW of the part in service
 WORK_LEFT,  # processing minutes left when the station last (re)started working on it
 TTF,  # working minutes left to the next failure (inf if breakdowns are disabled)
 DOWN_FROM, DOWN_UNTIL,  # the latest outage; outages only ever extend it or follow it
 DOWN_CLOSED,  # minutes of the outages before the latest one
 BUSY_MIN,  # processing minutes so far
 N_ST_F) = range(16)

# st_i (int64[n_stations, N_ST_I]): one row per station.
(CAP,  # input buffer capacity (configuration)
 STATUS,  # STARVED, BUSY or BLOCKED
 HOLDING,  # slot of the part in service or finished and blocked, -1 if none
 EV_KIND,  # FAILURE or COMPLETION: what EV_TIME is
 EV_SEQ,  # SEQ of the station's next event
 G_NEXT,  # cursor into the station's row of the gamma pool
 N_ST_I) = range(7)
FAILURE, COMPLETION = 0, 1

# queues (int64[n_stations + 2, 3]): one FIFO of part slots per row: each station's input buffer, then
# reworked parts waiting for room in buffer 0 (row n_stations), then parts awaiting the external
# inspector (row n_stations + 1).
HEAD, TAIL, LEN = 0, 1, 2  # first slot, last slot (-1 if empty), length

# part_f (float64[n_slots, 2]) and part_i (int64[n_slots, 3]): one row per part slot. A part keeps its
# slot from release until it ships or is scrapped; then the slot returns to the free list. The queues and
# the free list are linked lists threaded through NEXT.
RELEASE_MIN, HAZARD = 0, 1
PART_ID, DEFECT, NEXT = 0, 1, 2

# Pre-drawn random numbers: pools of uniforms, standard exponentials and, per station, unit-mean gammas.
# Before each event the compiled loop checks that no pool can run dry during it (an event draws at most
# U_PER_EVENT uniforms, E_PER_EVENT exponentials and one gamma per station) and otherwise hands control
# back to Python, which replaces the used numbers from the generator. The check sits at the same point
# of the simulation however time is chunked into calls, so ticks and one long `advance` draw alike.
N_UNIFORM, N_EXPONENTIAL, N_GAMMA = 2048, 256, 512
U_PER_EVENT, E_PER_EVENT = 4, 2

# What the compiled loop returns.
OK, OUT_OF_DRAWS, OUT_OF_SLOTS = 0, 1, 2

LineState = namedtuple("LineState", "line_f line_i st_f st_i queues part_f part_i uniform exponential gamma")


def _buffer_sizes(n_stations: int, n_slots: int) -> tuple[int, int]:
    """Lengths of the float and int buffers holding every table (in the order `_tables` reads them)."""
    n_f = N_LINE_F + n_stations * (N_ST_F + N_GAMMA) + N_UNIFORM + N_EXPONENTIAL + n_slots * 2
    n_i = N_LINE_I + n_stations * N_ST_I + (n_stations + 2) * 3 + n_slots * 3
    return n_f, n_i


def _tables(floats, ints):
    """The named tables: views into the buffers ``floats`` (float64) and ``ints`` (int64). The part tables
    come last, so adding slots appends to both buffers. Runs as Python (LineSim) and compiled (`_state`)."""
    n = ints[STATIONS]
    n_slots = (len(ints) - N_LINE_I - n * N_ST_I - (n + 2) * 3) // 3
    st_f, uniform = N_LINE_F, N_LINE_F + n * N_ST_F  # where each table starts in floats ...
    exponential = uniform + N_UNIFORM
    gamma = exponential + N_EXPONENTIAL
    part_f = gamma + n * N_GAMMA
    st_i, queues = N_LINE_I, N_LINE_I + n * N_ST_I  # ... and in ints
    part_i = queues + (n + 2) * 3
    return LineState(floats[:N_LINE_F], ints[:N_LINE_I],
                     floats[st_f:uniform].reshape((n, N_ST_F)), ints[st_i:queues].reshape((n, N_ST_I)),
                     ints[queues:part_i].reshape((n + 2, 3)),
                     floats[part_f:].reshape((n_slots, 2)), ints[part_i:].reshape((n_slots, 3)),
                     floats[uniform:exponential], floats[exponential:gamma],
                     floats[gamma:part_f].reshape((n, N_GAMMA)))


# The compiled functions below never allocate and only touch tables that LineSim keeps alive across each
# call, so they run without numba's reference counting (NRT): its atomic increments and decrements on every
# array handed from one function to another cost several times more than the events themselves (numba
# issue #2350 uses the same switch). Helpers are inlined into the entry points (half the cost per event);
# only the entry points called from Python get numba's CPython wrapper and none gets a C-callable one,
# which halves the one-off compile time.
_entry = numba.njit(cache=True, _nrt=False, no_cfunc_wrapper=True)
_helper = numba.njit(cache=True, _nrt=False, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True)
_state = _helper(_tables)


# ------------------------------------------------------------------------------------ compiled event loop
@_helper
def _fifo_push(queues, q, part_i, p):
    """Append slot p to FIFO q."""
    part_i[p, NEXT] = -1
    if queues[q, LEN] == 0:
        queues[q, HEAD] = p
    else:
        part_i[queues[q, TAIL], NEXT] = p
    queues[q, TAIL] = p
    queues[q, LEN] += 1


@_helper
def _fifo_pop(queues, q, part_i):
    """Remove and return the first slot of FIFO q (which must not be empty)."""
    p = queues[q, HEAD]
    queues[q, HEAD] = part_i[p, NEXT]
    queues[q, LEN] -= 1
    if queues[q, LEN] == 0:
        queues[q, TAIL] = -1
    return p


@_helper
def _uniform(s):
    k = s.line_i[U_NEXT]
    s.line_i[U_NEXT] = k + 1
    return s.uniform[k]


@_helper
def _exponential(s):
    k = s.line_i[E_NEXT]
    s.line_i[E_NEXT] = k + 1
    return s.exponential[k]


@_helper
def _draws_low(s):
    """True if the next event might need more pre-drawn numbers than are left."""
    if s.line_i[U_NEXT] > N_UNIFORM - U_PER_EVENT or s.line_i[E_NEXT] > N_EXPONENTIAL - E_PER_EVENT:
        return True
    for i in range(s.st_i.shape[0]):
        if s.st_i[i, G_NEXT] >= N_GAMMA:
            return True
    return False


@_helper
def _account(s):
    """Integrate WIP up to now (called before every change of WIP)."""
    now = s.line_f[NOW]
    s.line_f[WIP_AREA] += s.line_i[WIP] * (now - s.line_f[T_AREA])
    s.line_f[T_AREA] = now


@_helper
def _energy_kwh(line_f):
    return line_f[BUSY_KWH] + (line_f[IDLE_KW_TOTAL] * line_f[NOW] - line_f[IDLE_KW_BUSY_MIN]) / 60.0


@_helper
def _book_outage(st_f, i, begin, minutes):
    """Station i is down from ``begin`` (now, or the end of the outage it is in) for ``minutes``.

    Outages never overlap and come in time order, so the latest one is either extended (it ends where the
    new one begins) or closed into DOWN_CLOSED (it ended before): one interval per station suffices.
    """
    if begin <= st_f[i, DOWN_UNTIL]:
        st_f[i, DOWN_UNTIL] = max(st_f[i, DOWN_UNTIL], begin + minutes)
    else:
        st_f[i, DOWN_CLOSED] += st_f[i, DOWN_UNTIL] - st_f[i, DOWN_FROM]
        st_f[i, DOWN_FROM] = begin
        st_f[i, DOWN_UNTIL] = begin + minutes


@_helper
def _schedule_work(s, i, t):
    """Station i works on its part from time t: its next event is a failure if its time to failure runs
    out first (or together with the work), else the part's completion."""
    st_f, st_i = s.st_f, s.st_i
    if st_f[i, TTF] <= st_f[i, WORK_LEFT]:
        st_f[i, EV_TIME] = t + st_f[i, TTF]
        st_i[i, EV_KIND] = FAILURE
    else:
        st_f[i, EV_TIME] = t + st_f[i, WORK_LEFT]
        st_i[i, EV_KIND] = COMPLETION
    s.line_i[SEQ] += 1
    st_i[i, EV_SEQ] = s.line_i[SEQ]


@_helper
def _try_start(s, i):
    """Station i pulls its next part if it is free; the space that frees unblocks the station upstream."""
    line_f, st_f, st_i, queues, part_i = s.line_f, s.st_f, s.st_i, s.queues, s.part_i
    now, rework = line_f[NOW], st_i.shape[0]
    while st_i[i, STATUS] == STARVED and queues[i, LEN] > 0:
        p = _fifo_pop(queues, i, part_i)
        if i == 0 and queues[rework, LEN] > 0:  # reworked parts take the freed place before releases
            _fifo_push(queues, i, part_i, _fifo_pop(queues, rework, part_i))
        speed = st_f[i, SPEED]
        k = st_i[i, G_NEXT]
        st_i[i, G_NEXT] = k + 1
        process = st_f[i, MEAN_MIN] / speed * s.gamma[i, k]
        s.part_f[p, HAZARD] += line_f[SPEED_GAIN] * max(0.0, speed - 1.0)
        st_f[i, WORK_MIN] = process
        st_f[i, WORK_KW] = st_f[i, BUSY_KW] * speed * speed
        st_f[i, WORK_LEFT] = process
        # A station that is down (a scripted breakdown) starts when its repair ends.
        _schedule_work(s, i, now if now > st_f[i, DOWN_UNTIL] else st_f[i, DOWN_UNTIL])
        st_i[i, STATUS] = BUSY
        st_i[i, HOLDING] = p
        if i > 0 and st_i[i - 1, STATUS] == BLOCKED:  # hand over the upstream part and go on upstream
            _fifo_push(queues, i, part_i, st_i[i - 1, HOLDING])
            st_i[i - 1, STATUS] = STARVED
            st_i[i - 1, HOLDING] = -1
            i -= 1
        else:
            return


@_helper
def _fail(s, i):
    """Station i breaks down now: it is repaired, draws its next time to failure and works on."""
    st_f, now = s.st_f, s.line_f[NOW]
    st_f[i, WORK_LEFT] -= st_f[i, TTF]
    repair = _exponential(s) * st_f[i, MTTR_MIN]
    _book_outage(st_f, i, now, repair)
    st_f[i, TTF] = _exponential(s) * st_f[i, MTBF_MIN]
    _schedule_work(s, i, now + repair)


@_helper
def _finish(s, i):
    """Station i completes its part: pass it on (or block), or send it out of the line."""
    line_f, st_f, st_i = s.line_f, s.st_f, s.st_i
    st_f[i, EV_TIME] = np.inf
    st_f[i, TTF] -= st_f[i, WORK_LEFT]  # wear carries over to the next part
    process = st_f[i, WORK_MIN]
    st_f[i, BUSY_MIN] += process
    line_f[BUSY_KWH] += st_f[i, WORK_KW] * process / 60.0
    line_f[IDLE_KW_BUSY_MIN] += st_f[i, IDLE_KW] * process  # idle power is not drawn while busy
    p = st_i[i, HOLDING]
    if i + 1 < st_i.shape[0]:
        if s.queues[i + 1, LEN] < st_i[i + 1, CAP]:
            _fifo_push(s.queues, i + 1, s.part_i, p)
            st_i[i, STATUS] = STARVED
            st_i[i, HOLDING] = -1
            _try_start(s, i + 1)
            _try_start(s, i)
        else:
            st_i[i, STATUS] = BLOCKED
        return
    st_i[i, STATUS] = STARVED
    st_i[i, HOLDING] = -1
    _leave_line(s, p)
    _try_start(s, i)


@_helper
def _leave_line(s, p):
    """Part p leaves the last station: draw whether it is defective, then inspect it."""
    line_f, part_i = s.line_f, s.part_i
    if _uniform(s) < 1.0 - math.exp(-(line_f[BASE_HAZARD] + s.part_f[p, HAZARD])):
        u = _uniform(s)
        defect = 6
        for k in range(6):
            if u <= line_f[DEFECT_CDF + k]:
                defect = k + 1
                break
        part_i[p, DEFECT] = defect
    else:
        part_i[p, DEFECT] = 0
    if s.line_i[EXTERNAL]:
        _fifo_push(s.queues, s.st_i.shape[0] + 1, part_i, p)  # the external inspector decides later
        return
    reject = _uniform(s) < (line_f[DETECTION] if part_i[p, DEFECT] else line_f[FALSE_ALARM])
    _dispose(s, p, reject)


@_helper
def _dispose(s, p, reject):
    """Act on the inspection verdict for part p: ship it, or rework or scrap it."""
    line_f, line_i, part_i = s.line_f, s.line_i, s.part_i
    if part_i[p, DEFECT]:
        line_i[INSPECTED_DEFECTIVE] += 1
        if not reject:
            line_i[ESCAPES] += 1
    else:
        line_i[INSPECTED_GOOD] += 1
        if reject:
            line_i[FALSE_ALARMS] += 1
    if not reject:
        _account(s)
        line_i[WIP] -= 1
        line_i[SHIPPED] += 1
        if part_i[p, DEFECT] == 0:
            line_i[SHIPPED_GOOD] += 1
            line_f[LEAD_SUM] += line_f[NOW] - s.part_f[p, RELEASE_MIN]
        _free_slot(line_i, part_i, p)
    elif _uniform(s) < line_f[REWORK_FRACTION]:
        line_i[REWORKED] += 1
        s.part_f[p, HAZARD] = 0.0  # rework removes what went wrong; the part is remade from station 0
        part_i[p, DEFECT] = 0
        first = np.intp(0)  # a plain int: a literal 0 would make numba compile _try_start once more
        if s.queues[first, LEN] < s.st_i[first, CAP]:
            _fifo_push(s.queues, first, part_i, p)
            _try_start(s, first)
        else:
            _fifo_push(s.queues, s.st_i.shape[0], part_i, p)  # the rework queue
    else:
        _account(s)
        line_i[WIP] -= 1
        line_i[SCRAPPED] += 1
        _free_slot(line_i, part_i, p)


@_helper
def _free_slot(line_i, part_i, p):
    part_i[p, NEXT] = line_i[FREE]
    line_i[FREE] = p


@_helper
def _release(s, hazard):
    """A release attempt: a new part enters buffer 0 if there is room, else the attempt is lost."""
    line_f, line_i, part_i = s.line_f, s.line_i, s.part_i
    if s.queues[0, LEN] < s.st_i[0, CAP]:
        _account(s)
        p = line_i[FREE]
        line_i[FREE] = part_i[p, NEXT]
        part_i[p, PART_ID] = line_i[NEXT_PART_ID]
        part_i[p, DEFECT] = 0
        s.part_f[p, RELEASE_MIN] = line_f[NOW]
        s.part_f[p, HAZARD] = hazard
        line_i[NEXT_PART_ID] += 1
        line_i[RELEASED] += 1
        line_i[WIP] += 1
        first = np.intp(0)  # a plain int (see _dispose)
        _fifo_push(s.queues, first, part_i, p)
        _try_start(s, first)
    else:
        line_i[LOST_RELEASES] += 1
    line_f[NEXT_RELEASE] = line_f[NOW] + line_f[RELEASE_GAP]
    line_i[SEQ] += 1
    line_i[RELEASE_SEQ] = line_i[SEQ]


@_entry
def _advance(floats, ints, until_min, purity, tick):
    """Run every event due by ``until_min``; return OK, or OUT_OF_DRAWS / OUT_OF_SLOTS before an event that
    needs Python to refill the random pools or add part slots (call again afterwards to go on)."""
    s = _state(floats, ints)
    line_f, line_i, st_f, st_i = s.line_f, s.line_i, s.st_f, s.st_i
    n = st_i.shape[0]
    hazard = line_f[PURITY_GAIN] * max(0.0, line_f[PURITY_REF] - purity)  # of the parts released now
    while True:
        # The next event: the earliest of the release attempt (who = n) and the stations' events; ties
        # go in the order they were scheduled.
        t, seq, who = line_f[NEXT_RELEASE], line_i[RELEASE_SEQ], n
        for k in range(n):
            if st_f[k, EV_TIME] < t or (st_f[k, EV_TIME] == t and st_i[k, EV_SEQ] < seq):
                t, seq, who = st_f[k, EV_TIME], st_i[k, EV_SEQ], k
        if not t <= until_min:
            break
        if _draws_low(s):
            return OUT_OF_DRAWS
        if who == n and line_i[FREE] < 0:
            return OUT_OF_SLOTS
        line_f[NOW] = t
        if who == n:
            line_f[LAST_ATTEMPT] = t
            _release(s, hazard)
        elif st_i[who, EV_KIND] == FAILURE:
            _fail(s, who)
        else:
            _finish(s, who)
    line_f[NOW] = until_min
    _account(s)
    energy = _energy_kwh(line_f)
    if tick:
        line_f[LAST_ENERGY] = energy - line_f[ENERGY_MARK]
    line_f[ENERGY_MARK] = energy
    return OK


@_entry
def _resolve(floats, ints, reject, start):
    """Apply ``reject[start:]`` to the parts first in line for inspection; return how far it got (less than
    ``len(reject)`` if the random pools need a refill first)."""
    s = _state(floats, ints)
    waiting = s.st_i.shape[0] + 1
    for k in range(start, len(reject)):
        if _draws_low(s):
            return k
        _dispose(s, _fifo_pop(s.queues, waiting, s.part_i), reject[k])
    return len(reject)


@_entry
def _set_release_rate(floats, ints, rate):
    line_f, line_i = _state(floats, ints)[:2]
    if rate > 0:
        # Keep the attempts' phase: the next one comes 1/rate after the last, or now if that is past.
        # (Restarting from now at every change would starve a line whose controller adjusts every tick.)
        line_f[RELEASE_GAP] = 60.0 / rate
        line_f[NEXT_RELEASE] = max(line_f[NOW], line_f[LAST_ATTEMPT] + line_f[RELEASE_GAP])
        line_i[SEQ] += 1
        line_i[RELEASE_SEQ] = line_i[SEQ]
    else:
        line_f[NEXT_RELEASE] = np.inf


@_entry
def _force_breakdown(floats, ints, station, minutes):
    # Down from now, or from the end of the outage the station is in. A part in service waits it out, and
    # so does its next failure (wear only accrues while working).
    s = _state(floats, ints)
    st_f, st_i = s.st_f, s.st_i
    _book_outage(st_f, station, max(s.line_f[NOW], st_f[station, DOWN_UNTIL]), minutes)
    if st_i[station, STATUS] == BUSY:
        st_f[station, EV_TIME] += minutes
        s.line_i[SEQ] += 1
        st_i[station, EV_SEQ] = s.line_i[SEQ]


def _line_count(field: int, doc: str) -> property:
    return property(lambda self: int(self._line_i[field]), doc=doc)


class LineSim:
    """Event-driven serial-line simulator (no gym). Time is in minutes since reset.

    Parameters
    ----------
    config : LineConfig
    rng : np.random.Generator
        The only source of randomness.
    dt_s : float
        Length of one control tick, seconds.
    external_inspection : bool
        If True, finished parts wait in `awaiting_inspection` until `resolve_inspection` is called
        (the Plant's inspection agent decides); otherwise the built-in inspector decides at once.

    Notes
    -----
    The event loop is compiled (numba) and works on the numpy tables described at the top of this module:
    the line (``line_f``, ``line_i``), one row per station (``st_f``, ``st_i``), the FIFOs (``queues``),
    one row per part slot (``part_f``, ``part_i``), and the pre-drawn random numbers. Each station has at
    most one pending event (its next failure or the end of its part) and the releases one more, so the
    next event is found by a scan instead of a heap. Failures are drawn as they happen: a station working
    on a part fails when its carried-over time to failure runs out before the part is done. Counters and
    read-outs below are Python views of those tables.

    A part, as listed in `awaiting_inspection`, is ``[part_id, release_time_min, defect_hazard, defect_type]``.
    """

    released = _line_count(RELEASED, "Parts released into the line.")
    shipped = _line_count(SHIPPED, "Parts that passed inspection and left.")
    shipped_good = _line_count(SHIPPED_GOOD, "Good parts shipped.")
    scrapped = _line_count(SCRAPPED, "Parts rejected and scrapped.")
    reworked = _line_count(REWORKED, "Rejections sent back to station 0 (a part may count more than once).")
    lost_releases = _line_count(LOST_RELEASES, "Release attempts that found buffer 0 full.")
    wip = _line_count(WIP, "Parts in the line: buffers, stations, rework queue and awaiting inspection.")
    inspected_defective = _line_count(INSPECTED_DEFECTIVE, "Defective parts inspected.")
    inspected_good = _line_count(INSPECTED_GOOD, "Good parts inspected.")
    escapes = _line_count(ESCAPES, "Defective parts passed by the inspector.")
    false_alarms = _line_count(FALSE_ALARMS, "Good parts rejected by the inspector.")

    def __init__(self, config: LineConfig, rng: np.random.Generator, dt_s: float = 60.0,
                 external_inspection: bool = False):
        assert dt_s > 0, "dt_s must be positive"
        self.config, self.rng, self.dt_min = config, rng, dt_s / 60.0
        self.external_inspection = external_inspection
        cfg, n = config, config.n_stations
        self._cap = [s.buffer_capacity for s in cfg.stations]
        self._gamma_shape = [1.0 / (s.process_cv * s.process_cv) for s in cfg.stations]
        self._failing = [i for i, s in enumerate(cfg.stations) if s.mttr_h > 0]  # mttr 0 disables breakdowns
        # The buffers as reset() starts them, but for the random pools: configuration filled in, the state
        # at its start values, enough part slots for full buffers and stations (more are added when needed).
        n_slots = max(32, sum(self._cap) + n)
        self._floats0, self._ints0 = (np.zeros(size, dtype) for size, dtype in
                                      zip(_buffer_sizes(n, n_slots), (np.float64, np.int64)))
        self._ints0[STATIONS] = n  # (the layout depends on it)
        line_f, line_i, st_f, st_i, queues, _, part_i = _tables(self._floats0, self._ints0)[:7]
        # (rows are filled in as lists: setting numpy elements one by one is slower)
        row = [0.0] * N_LINE_F
        row[BASE_HAZARD], row[SPEED_GAIN] = cfg.base_defect_hazard, cfg.speed_defect_gain
        row[PURITY_GAIN], row[PURITY_REF] = cfg.purity_defect_gain, cfg.purity_reference
        row[DETECTION], row[FALSE_ALARM] = cfg.detection_rate, cfg.false_alarm_rate
        row[REWORK_FRACTION] = cfg.rework_fraction
        row[IDLE_KW_TOTAL] = sum(s.idle_power_kw for s in cfg.stations)
        total = sum(cfg.defect_type_weights)
        row[DEFECT_CDF:DEFECT_CDF + 6] = [c / total for c in accumulate(cfg.defect_type_weights)]
        row[RELEASE_GAP], row[NEXT_RELEASE], row[LAST_ATTEMPT] = math.inf, math.inf, -math.inf
        line_f[:] = row
        line_i[EXTERNAL] = int(external_inspection)
        rows_f, rows_i = [], []
        for s in cfg.stations:
            row, row_i = [0.0] * N_ST_F, [0] * N_ST_I
            row[MEAN_MIN], row[MTBF_MIN], row[MTTR_MIN] = s.mean_process_min, s.mtbf_h * 60.0, s.mttr_h * 60.0
            row[BUSY_KW], row[IDLE_KW] = s.busy_power_kw, s.idle_power_kw
            row[SPEED], row[EV_TIME], row[TTF] = 1.0, math.inf, math.inf
            row_i[CAP], row_i[STATUS], row_i[HOLDING] = s.buffer_capacity, STARVED, -1
            rows_f.append(row)
            rows_i.append(row_i)
        st_f[:], st_i[:] = rows_f, rows_i
        queues[:, HEAD], queues[:, TAIL] = -1, -1
        part_i[:] = -1
        line_i[FREE] = -1
        self._link_free_slots(part_i, line_i, 0)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        rng = self.rng
        self._floats, self._ints = self._floats0.copy(), self._ints0.copy()
        self._bind()
        # Random pools, drawn in this order: uniforms, exponentials, then each station's gammas.
        rng.random(out=self._uniform)
        rng.standard_exponential(out=self._exponential)
        for i, shape in enumerate(self._gamma_shape):
            rng.standard_gamma(shape, out=self._gamma[i])
            self._gamma[i] /= shape
        failing = self._failing  # their working times to the first failure
        self._st_f[failing, TTF] = self._exponential[:len(failing)] * self._st_f[failing, MTBF_MIN]
        self._line_i[E_NEXT] = len(failing)

        self.now = 0.0  # minutes since reset (read-only: the simulator advances it)
        self.speed = [1.0] * self.config.n_stations
        self.release_rate_per_h = 0.0
        self.purity = 1.0  # feed purity from the process unit; the Plant sets it every tick
        self._asked = (None, None)  # the controls last passed to set_controls, to skip repeats in step
        self._awaiting: list[list] | None = None  # awaiting_inspection, built when read

    def _bind(self) -> None:
        """Point the table attributes at the current buffers."""
        (self._line_f, self._line_i, self._st_f, self._st_i, self._queues, self._part_f, self._part_i,
         self._uniform, self._exponential, self._gamma) = _tables(self._floats, self._ints)

    def __getstate__(self) -> dict:
        # The tables are views into the buffers; a pickled copy would not share memory with them.
        return {k: v for k, v in self.__dict__.items() if k[1:] not in LineState._fields}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()

    @staticmethod
    def _link_free_slots(part_i: np.ndarray, line_i: np.ndarray, first: int) -> None:
        """Put the (unused) slots from ``first`` on at the head of the free list."""
        nxt = part_i[first:, NEXT]
        nxt[:] = np.arange(first + 1, first + len(nxt) + 1)
        nxt[-1] = line_i[FREE]
        line_i[FREE] = first

    def _add_slots(self) -> None:
        """Double the part tables (they end both buffers, so the buffers grow at the end)."""
        n_old = len(self._part_f)
        self._floats = np.concatenate([self._floats, np.zeros(2 * n_old)])
        self._ints = np.concatenate([self._ints, np.full(3 * n_old, -1, dtype=np.int64)])
        self._bind()
        self._link_free_slots(self._part_i, self._line_i, n_old)

    def _refill(self) -> None:
        """Replace the used numbers of every pool that could run dry in the next event (keeping the unused
        ones first), from the generator in a fixed order."""
        rng, line_i = self.rng, self._line_i
        for pool, cursor, margin, draw in ((self._uniform, U_NEXT, U_PER_EVENT, rng.random),
                                           (self._exponential, E_NEXT, E_PER_EVENT, rng.standard_exponential)):
            used = int(line_i[cursor])
            if used > len(pool) - margin:
                pool[:len(pool) - used] = pool[used:]
                pool[len(pool) - used:] = draw(used)
                line_i[cursor] = 0
        for i, shape in enumerate(self._gamma_shape):
            if self._st_i[i, G_NEXT] >= N_GAMMA:
                rng.standard_gamma(shape, out=self._gamma[i])
                self._gamma[i] /= shape
                self._st_i[i, G_NEXT] = 0

    def _make_room(self, code: int) -> None:
        """Refill the random pools or add part slots, as the compiled loop asked."""
        if code == OUT_OF_DRAWS:
            self._refill()
        else:
            self._add_slots()

    # ---------------------------------------------------------------- control
    def set_controls(self, release_rate_per_h: float, speeds) -> None:
        """Apply the release rate (parts/h) and per-station speed factors, clipped to the line's limits."""
        cfg = self.config
        assert len(speeds) == cfg.n_stations, f"{len(speeds)} speeds for {cfg.n_stations} stations"
        self._asked = (release_rate_per_h, list(speeds) if type(speeds) is list else None)
        lo, hi = cfg.speed_min, cfg.speed_max
        speed = [min(max(float(s), lo), hi) for s in speeds]
        if speed != self.speed:
            self.speed = speed
            self._st_f[:, SPEED] = speed
        rate = min(max(float(release_rate_per_h), 0.0), cfg.max_release_per_h)
        if rate != self.release_rate_per_h:
            self.release_rate_per_h = rate
            _set_release_rate(self._floats, self._ints, rate)

    def force_breakdown(self, station: int, duration_min: float) -> None:
        """A scripted breakdown: the station is down for ``duration_min`` from now (after the repair it is in,
        if any), on top of random failures. A part in service waits it out."""
        assert 0 <= station < self.config.n_stations, f"no station {station}"
        _force_breakdown(self._floats, self._ints, int(station), float(duration_min))

    def advance(self, until_min: float) -> None:
        """Simulate every event up to ``until_min`` (minutes since reset)."""
        until_min = float(until_min)
        while (code := _advance(self._floats, self._ints, until_min, float(self.purity), False)) != OK:
            self._make_room(code)
        self.now = until_min
        self._awaiting = None

    def step(self, release_rate_per_h: float, speeds) -> None:
        """One control tick: apply the controls, then simulate ``dt`` minutes (and measure its energy)."""
        rate, asked = self._asked
        if release_rate_per_h != rate or type(speeds) is not list or speeds != asked:
            self.set_controls(release_rate_per_h, speeds)
        until_min = self.now + self.dt_min  # (advance inlined: this runs once per tick)
        while (code := _advance(self._floats, self._ints, until_min, float(self.purity), True)) != OK:
            self._make_room(code)
        self.now = until_min
        self._awaiting = None

    def resolve_inspection(self, reject) -> None:
        """Apply verdicts (True = reject) to the first ``len(reject)`` parts awaiting inspection, in order.

        Parts beyond them keep waiting at the inspection station for a later tick.
        """
        n_waiting = int(self._queues[-1, LEN])
        assert len(reject) <= n_waiting, f"{len(reject)} verdicts for {n_waiting} parts awaiting inspection"
        if len(reject) == 0:
            return
        flags = np.asarray([bool(r) for r in reject], dtype=np.bool_)
        done = 0
        while (done := _resolve(self._floats, self._ints, flags, done)) < len(flags):
            self._refill()
        self._awaiting = None

    # ------------------------------------------------------------ read-outs
    @property
    def awaiting_inspection(self) -> list[list]:
        """Parts waiting for the external inspector, oldest first, as ``[part_id, release_time_min,
        defect_hazard, defect_type]`` (a snapshot: decide on them with `resolve_inspection`)."""
        if self._awaiting is None:
            nxt = self._part_i[:, NEXT].tolist()
            p, slots = int(self._queues[-1, HEAD]), []
            for _ in range(int(self._queues[-1, LEN])):
                slots.append(p)
                p = nxt[p]
            rows_f, rows_i = self._part_f[slots].tolist(), self._part_i[slots].tolist()
            self._awaiting = [[ri[PART_ID], rf[RELEASE_MIN], rf[HAZARD], ri[DEFECT]] for rf, ri in zip(rows_f, rows_i)]
        return self._awaiting

    @property
    def status(self) -> list[int]:
        """STARVED, BUSY (including waiting out a repair with a part) or BLOCKED, per station."""
        return self._st_i[:, STATUS].tolist()

    @property
    def last_energy_kwh(self) -> float:
        """Energy the line used in the latest `step`, kWh."""
        return float(self._line_f[LAST_ENERGY])

    @property
    def wip_area(self) -> float:
        """WIP integrated over time since reset, part-minutes (``kpis()["wip_mean"]`` times ``now``)."""
        return float(self._line_f[WIP_AREA])

    @property
    def lead_time_sum_min(self) -> float:
        """Release-to-exit minutes summed over the good parts shipped."""
        return float(self._line_f[LEAD_SUM])

    def energy_kwh(self) -> float:
        """Line energy so far: busy power scales with speed squared; idle power runs the rest of the time."""
        f = self._line_f
        return float(f[BUSY_KWH] + (f[IDLE_KW_TOTAL] * self.now - f[IDLE_KW_BUSY_MIN]) / 60.0)

    def buffer_levels(self) -> list[int]:
        return self._queues[:-2, LEN].tolist()

    def stations_holding(self) -> list[bool]:
        """Whether each station holds a part (in service, waiting out a repair, or finished and blocked)."""
        return [h >= 0 for h in self._st_i[:, HOLDING].tolist()]

    def rework_queue_length(self) -> int:
        """Reworked parts waiting for room in buffer 0."""
        return int(self._queues[-2, LEN])

    def stations_down(self) -> list[bool]:
        now = self.now
        return [f <= now < u for f, u in zip(self._st_f[:, DOWN_FROM].tolist(), self._st_f[:, DOWN_UNTIL].tolist())]

    def down_minutes(self) -> list[float]:
        """Minutes each station has been down so far (random failures and scripted breakdowns)."""
        now, st_f = self.now, self._st_f
        return [closed + max(0.0, min(u, now) - f) for closed, f, u in
                zip(st_f[:, DOWN_CLOSED].tolist(), st_f[:, DOWN_FROM].tolist(), st_f[:, DOWN_UNTIL].tolist())]

    def wip_now(self) -> int:
        return self.wip

    def kpis(self) -> dict[str, float]:
        """The line's KPIs since reset (definitions in design notes §3)."""
        hours = max(self.now / 60.0, 1e-9)
        n = self.config.n_stations
        produced = self.inspected_good + self.inspected_defective
        availability = 1.0 - sum(self.down_minutes()) / max(n * self.now, 1e-9)
        ideal_cycle_min = max(s.mean_process_min for s in self.config.stations)
        operating_min = max(self.now * availability, 1e-9)
        performance = min(1.0, produced * ideal_cycle_min / operating_min)
        shipped_good = self.shipped_good
        quality = shipped_good / produced if produced else 0.0
        released, scrapped = self.released, self.scrapped
        inspected_defective, inspected_good = self.inspected_defective, self.inspected_good
        return {
            "throughput_per_hour": shipped_good / hours,
            "oee": availability * performance * quality,
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "wip_mean": self.wip_area / max(self.now, 1e-9),
            "lead_time_mean_min": self.lead_time_sum_min / shipped_good if shipped_good else 0.0,
            "scrap_rate": scrapped / released if released else 0.0,
            "defect_escape_rate": self.escapes / inspected_defective if inspected_defective else 0.0,
            "false_alarm_rate": self.false_alarms / inspected_good if inspected_good else 0.0,
            "line_energy_kwh": self.energy_kwh(),
            "released": float(released),
            "shipped": float(self.shipped),
            "shipped_good": float(shipped_good),
            "scrapped": float(scrapped),
            "reworked": float(self.reworked),
            "lost_releases": float(self.lost_releases),
        }


class LinePacingEnv(gym.Env):
    """Pace a serial line: set the release rate and each station's speed.

    ## Observation
    ``Box(float32, shape=(4 * N + 6,))`` for a line of N stations, every entry in [0, 1] unless noted:

    | index          | meaning                                                          |
    |----------------|------------------------------------------------------------------|
    | 0 .. N-1       | input buffer level / capacity, per station                       |
    | N .. 2N-1      | 1 if the station is processing                                   |
    | 2N .. 3N-1     | 1 if the station is blocked or down (not able to produce)        |
    | 3N .. 4N-1     | current speed factor, scaled from [speed_min, speed_max] to [0, 1] |
    | 4N             | WIP / total buffer capacity (can exceed 1 with rework, max 2)    |
    | 4N+1           | current release rate / max_release_per_h                         |
    | 4N+2           | feed purity from the process unit                                |
    | 4N+3           | good parts shipped this tick / (bottleneck rate per tick), max 4 |
    | 4N+4           | parts rejected at inspection this tick / (rate per tick), max 4  |
    | 4N+5           | fraction of the episode elapsed                                  |

    ## Action
    ``Box(-1, 1, shape=(N + 1,), float32)``: ``a[0]`` maps linearly to a release rate in
    [0, max_release_per_h] parts/h, ``a[1:]`` to speed factors in [speed_min, speed_max].

    ## Reward
    Per tick: ``part_margin * good_shipped - scrap_cost * scrapped - wip_cost_per_h * wip * dt_h
    - energy_price_per_kwh * energy_kwh``. Faster stations ship more but make more defects and burn more
    energy (power grows with speed squared); releasing more raises throughput until WIP only adds cost.

    ## Start and end
    The line starts empty with all stations up. Standalone, feed purity follows a seeded mean-reverting
    random walk around ``purity_mean`` (in the Plant the process unit sets it). The episode is truncated
    after ``episode_minutes``; it never terminates.

    ## KPIs
    ``info`` carries the tick's shipments; `LineSim.kpis` gives throughput_per_hour, oee, wip_mean,
    lead_time_mean_min, scrap_rate, defect_escape_rate and false_alarm_rate.

    ## Version history
    * v0: first release.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: LineConfig | None = None, dt_s: float = 60.0, episode_minutes: float = 480.0,
                 purity_mean: float = 0.96, purity_std: float = 0.02):
        self.config = config or LineConfig()
        self.dt_s, self.episode_minutes = dt_s, episode_minutes
        self.purity_mean, self.purity_std = purity_mean, purity_std
        n = self.config.n_stations
        self.observation_space = spaces.Box(0.0, 4.0, shape=(4 * n + 6,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n + 1,), dtype=np.float32)
        self.sim: LineSim | None = None

    def action_to_controls(self, action) -> tuple[float, list[float]]:
        """Map a normalised action to (release rate parts/h, speed factors)."""
        return pacing_action_to_controls(action, self.config)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim = LineSim(self.config, self.np_random, self.dt_s)
        self._purity = self.purity_mean
        self.sim.purity = self._purity
        self._ticks = 0
        return line_observation(self.sim, 0, 0, 0.0), {}

    def step(self, action):
        sim, cfg = self.sim, self.config
        assert sim is not None, "call reset() before step()"
        # Feed purity: mean-reverting noise, so the controller sees low-purity spells it must slow down for.
        self._purity += 0.1 * (self.purity_mean - self._purity) + self.purity_std * 0.45 * float(
            self.np_random.standard_normal())
        sim.purity = min(1.0, max(0.0, self._purity))
        good0, scrap0, rej0 = sim.shipped_good, sim.scrapped, sim.reworked + sim.scrapped
        sim.step(*self.action_to_controls(action))
        good, scrapped = sim.shipped_good - good0, sim.scrapped - scrap0
        rejected = sim.reworked + sim.scrapped - rej0
        reward = line_reward(cfg, good, scrapped, sim.wip, self.dt_s, sim.last_energy_kwh)
        self._ticks += 1
        elapsed = self._ticks * self.dt_s / 60.0 / self.episode_minutes
        obs = line_observation(sim, good, rejected, elapsed)
        info = {"good_shipped": good, "scrapped": scrapped, "wip": sim.wip, "energy_kwh": sim.last_energy_kwh}
        return obs, float(reward), False, elapsed >= 1.0 - 1e-9, info


def pacing_action_to_controls(action, config: LineConfig) -> tuple[float, list[float]]:
    """A normalised LinePacing action -> (release rate parts/h, speed factors), linearly over the limits."""
    a = [min(1.0, max(-1.0, x)) for x in np.asarray(action, dtype=np.float64).tolist()]
    span = 0.5 * (config.speed_max - config.speed_min)
    return (a[0] + 1.0) * 0.5 * config.max_release_per_h, [config.speed_min + (x + 1.0) * span for x in a[1:]]


def controls_to_pacing_action(rate_per_h: float, speeds: list[float], config: LineConfig) -> np.ndarray:
    """(release rate parts/h, speed factors) -> the normalised LinePacing action (inverse of the above), float32."""
    span = config.speed_max - config.speed_min or 1.0
    a = [2.0 * rate_per_h / config.max_release_per_h - 1.0] + [2.0 * (s - config.speed_min) / span - 1.0 for s in speeds]
    return np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0)


def line_reward(config: LineConfig, good: int, scrapped: int, wip: int, dt_s: float, energy_kwh: float) -> float:
    """The LinePacing reward of one tick (see `LinePacingEnv`)."""
    return float(config.part_margin * good - config.scrap_cost * scrapped
                 - config.wip_cost_per_h * wip * dt_s / 3600.0 - config.energy_price_per_kwh * energy_kwh)


def line_observation(sim: LineSim, good_this_tick: int, rejected_this_tick: int, elapsed: float) -> np.ndarray:
    """The LinePacing observation (layout in `LinePacingEnv`), shared with the Plant's pacing agent."""
    cfg = sim.config
    per_tick = max(cfg.bottleneck_rate_per_h * sim.dt_min / 60.0, 1e-9)
    span = cfg.speed_max - cfg.speed_min or 1.0
    caps = sim._cap
    obs = [level / c for level, c in zip(sim.buffer_levels(), caps)]
    down, status = sim.stations_down(), sim.status
    obs += [1.0 if s == BUSY and not d else 0.0 for s, d in zip(status, down)]
    obs += [1.0 if s == BLOCKED or d else 0.0 for s, d in zip(status, down)]
    obs += [(s - cfg.speed_min) / span for s in sim.speed]
    obs += [min(2.0, sim.wip / sum(caps)), sim.release_rate_per_h / cfg.max_release_per_h, sim.purity,
            min(4.0, good_this_tick / per_tick), min(4.0, rejected_this_tick / per_tick), min(1.0, elapsed)]
    return np.asarray(obs, dtype=np.float32)
