"""Scenario files: one YAML file describes a whole plant run (design notes §4).

A scenario names the plant (process unit, line, fleet, inspection), the policy of each agent, the safety
limits, scripted events, the duration and tick, the seeds and the Ray placement. Every section has
defaults, so a small file works::

    name: my_plant
    duration_h: 2
    agents:
      pacing: {policy: conwip, wip_cap: 10}

`load_scenario` validates with pydantic and turns every problem into one `ShopfloorInputError` line that
names the file, the field path (``line.stations[3].mtbf_h``), the bad value and what is allowed.

Where things go: a new plant parameter goes into the config model of its simulator (ReactorConfig,
LineConfig, FleetConfig); a new policy name goes into ``POLICIES``; a new event type is a new model in
``Event``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from environments.dispatch import FleetConfig
from environments.errors import ShopfloorInputError
from environments.line_pacing import LineConfig
from environments.parts import PART_TYPES
from environments.process_control import ReactorConfig

# Policy names each agent accepts. ``rl:PATH`` and ``gnn:PATH`` name learned policies by file.
POLICIES: dict[str, tuple[str, ...]] = {
    "process": ("fixed", "pid", "rl", "rl:<path>"),
    "pacing": ("push", "conwip", "rl", "rl:<path>"),
    "dispatch": ("nearest", "savings", "contract_net", "contract_net:savings", "contract_net:gnn",
                 "contract_net:gnn:<path>", "pyvrp", "gnn", "gnn:<path>"),
    "inspection": ("threshold", "cnn", "cnn:<path>", "clip", "clip:<path>"),
    "voice": ("whisper", "whisper:<name-or-path>", "off"),
}


def _check_policy(agent: str, policy: str) -> str:
    for allowed in POLICIES[agent]:
        prefix = allowed.split("<")[0]
        if policy == allowed or (allowed.endswith(">") and policy.startswith(prefix) and len(policy) > len(prefix)):
            return policy
    raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES[agent])}")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentConfig(_Strict):
    """How one agent decides, and where it runs. Subclasses name the agent kind and its default policy."""

    kind: ClassVar[str] = ""
    policy: str = Field(description="Policy name, see POLICIES.")
    deadline_ms: float | None = Field(None, gt=0, description="Per-tick deadline; None = the scenario's.")
    resources: dict[str, float] = Field(default_factory=dict,
                                        description="Ray custom resources that pin this agent to a node.")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, policy: str) -> str:
        return _check_policy(cls.kind, policy)


class ProcessAgentConfig(AgentConfig):
    kind: ClassVar[str] = "process"
    policy: str = Field("pid", description="fixed | pid | rl[:<path>] (rl: the shipped SAC policy)")


class PacingAgentConfig(AgentConfig):
    kind: ClassVar[str] = "pacing"
    policy: str = Field("conwip", description="push | conwip | rl[:<path>] (rl: the shipped SAC policy)")
    wip_cap: int = Field(12, ge=1, description="CONWIP: parts allowed in the line at once.")
    push_release_fraction: float = Field(0.95, gt=0, le=1.5,
                                         description="Push: release rate as a fraction of the bottleneck rate.")


class DispatchAgentConfig(AgentConfig):
    kind: ClassVar[str] = "dispatch"
    policy: str = Field("savings", description="nearest | savings | contract_net | pyvrp | gnn[:<path>] (the "
                        "GNN plans the savings dispatcher's routes) | contract_net:savings | contract_net:gnn[:<path>] "
                        "(the planner's routes are tenders the vehicles bid on)")
    # When the batching dispatchers (savings, gnn, contract_net:*) release a depot's pending orders as a trip.
    batch_min_fill: float = Field(0.6, ge=0, le=1, description="Release once the batch fills this share of a "
                                  "vehicle.")
    batch_max_hold_min: float = Field(15.0, ge=0, description="... or once its oldest order has waited this "
                                      "long, minutes.")
    batch_slack_min: float = Field(45.0, ge=0, description="... or once an order would arrive less than this "
                                   "before its window closes, minutes.")

    def batching(self) -> dict[str, float]:
        """Keyword arguments of ``planning.baselines.dispatchers.SavingsDispatcher``."""
        return {"min_fill": self.batch_min_fill, "max_hold_min": self.batch_max_hold_min,
                "slack_min": self.batch_slack_min}


class InspectionAgentConfig(AgentConfig):
    kind: ClassVar[str] = "inspection"
    policy: str = Field("threshold", description="threshold | cnn[:<path>] | clip[:<path>]")
    reject_threshold: float | None = Field(None, ge=0, le=1, description="Reject a part when p(defect) is at least "
                                           "this; None = the threshold the inspector was calibrated with.")
    clip: str = Field("shipped", min_length=1, description="CLIP that answers the operator's queries over the "
                      "inspection history: shipped | off | local-dir:<path> | <name>[:<tag>]")
    views: Literal[1, 2, 4, 8] | None = Field(None, description="Turned copies of each part the defect CNN averages "
                                              "(cnn policy): None = the checkpoint's default (4 for the shipped one; "
                                              "0.988 accuracy on the benchmark's shifted light against 0.984 at 1).")
    runtime: Literal["torch", "int8"] = Field("int8", description="Where the defect CNN (cnn policy) and CLIP's "
                                              "image tower run: int8 = onnxruntime on their INT8 graphs, built once "
                                              "and cached; at 96 px the CNN classifies 4 parts in ~6 ms against ~19 "
                                              "ms in torch, and CLIP embeds them in 4 ms against 15.")
    clip_views: Literal[1, 2, 4, 8] = Field(1, description="Turned copies of each part CLIP embeds into the history "
                                            "(averaged). 1 keeps a tick inside its deadline; 4 retrieves better "
                                            "(benchmark Recall@10 0.821 against 0.792) at ~4x the embedding time.")
    commission_false_alarm: float | None = Field(
        None, gt=0, lt=0.5, description="Commission the station: set the reject threshold on known-good parts "
        "rendered under this station's camera (inspection.image_shift, part_types) for this false-alarm rate, as a "
        "line engineer sets a vision sensor on golden samples. None: the threshold stored with the model, which "
        "was set under the training light (threshold policy: nominal light, 2%).")
    commission_parts: int = Field(500, ge=100, le=20_000, description="Known-good parts rendered to commission "
                                  "the station (commission_false_alarm); ~2 s per 500 at 96 px.")

    @model_validator(mode="after")
    def _one_threshold(self) -> InspectionAgentConfig:
        if self.reject_threshold is not None and self.commission_false_alarm is not None:
            raise ValueError("reject_threshold and commission_false_alarm both set the reject threshold; allowed: "
                             "one of them")
        if self.commission_false_alarm is not None and self.commission_parts * self.commission_false_alarm < 1:
            raise ValueError(f"commission_parts={self.commission_parts} cannot set a {self.commission_false_alarm} "
                             f"false-alarm rate; allowed: at least {1 / self.commission_false_alarm:.0f} parts")
        return self


class VoiceAgentConfig(AgentConfig):
    kind: ClassVar[str] = "voice"
    policy: str = Field("whisper", description="whisper[:<name-or-path>] | off. Whisper is loaded only when a voice "
                        "event has a recording.")
    deadline_ms: float | None = Field(2000.0, gt=0, description="Hearing a recording takes ~0.2 s on 2 cores, "
                                      "more than a tick's usual deadline; the tick waits for it.")
    confirm_window_s: float = Field(15.0, gt=0, description="Stopping a line or a large setpoint jump waits this "
                                    "long for the operator's 'confirm' (by the voice events' at_min), then lapses.")


class AgentsConfig(_Strict):
    """The policy of every agent."""

    process: ProcessAgentConfig = Field(default_factory=ProcessAgentConfig)
    pacing: PacingAgentConfig = Field(default_factory=PacingAgentConfig)
    dispatch: DispatchAgentConfig = Field(default_factory=DispatchAgentConfig)
    inspection: InspectionAgentConfig = Field(default_factory=InspectionAgentConfig)
    voice: VoiceAgentConfig = Field(default_factory=VoiceAgentConfig)


class InspectionConfig(_Strict):
    """The inspection station at the end of the line."""

    image_size: int = Field(96, ge=32, le=512, description="Side of the rendered part images, pixels (the "
                                                            "shipped defect CNN was trained at 96).")
    part_types: list[str] = Field(default_factory=lambda: ["gear", "plate", "bracket", "cap"], min_length=1,
                                  description="Part types the line makes (environments.parts.PART_TYPES).")

    @field_validator("part_types")
    @classmethod
    def _known_parts(cls, part_types: list[str]) -> list[str]:
        unknown = [p for p in part_types if p not in PART_TYPES]
        if unknown:
            raise ValueError(f"unknown part type(s) {unknown}; allowed: {', '.join(PART_TYPES)}")
        return part_types
    image_shift: float = Field(0.0, ge=0, le=1, description="Camera conditions: 0 = nominal; 1 = lighting, blur, "
                               "noise, pose and background all fully shifted.")


class CouplingConfig(_Strict):
    """How the units feed each other."""

    parts_per_order: int = Field(10, ge=1, description="Good parts that make one delivery order.")
    order_window_min: tuple[float, float] = Field(
        (30.0, 240.0), description="Delivery window of a new order: (opens after, closes after) minutes.")

    @model_validator(mode="after")
    def _window(self) -> CouplingConfig:
        lo, hi = self.order_window_min
        if not 0 <= lo < hi:
            raise ValueError(f"order_window_min {list(self.order_window_min)} must satisfy 0 <= opens < closes")
        return self


class SafetyConfig(_Strict):
    """Limits the safety layer enforces on every action (None = the actuator's own range)."""

    jacket_setpoint_max_c: float | None = Field(None, description="Highest jacket temperature setpoint, C.")
    pressure_setpoint_max_bar: float | None = Field(None, gt=0, description="Highest pressure setpoint, bar.")
    speed_max: float | None = Field(None, gt=0, description="Highest station speed factor.")
    release_max_per_h: float | None = Field(None, ge=0, description="Highest release rate, parts/h.")
    speed_change_max_per_tick: float | None = Field(None, gt=0, description="Largest change of a station speed "
                                                    "factor in one tick (a rate limit); None = any.")
    setpoint_jump_confirm_c: float = Field(15.0, gt=0,
                                           description="A setpoint change larger than this needs confirmation.")


class BreakdownEvent(_Strict):
    type: Literal["breakdown"]
    at_min: float = Field(ge=0, description="When, minutes from start.")
    station: str = Field(description="Station name, as in line.stations.")
    duration_min: float = Field(gt=0, description="How long the station is down, minutes.")


class RushOrderEvent(_Strict):
    type: Literal["rush_order"]
    at_min: float = Field(ge=0, description="When, minutes from start.")
    demand_units: int = Field(gt=0, description="Units to deliver.")
    window_min: float = Field(60.0, gt=0, description="Must be delivered within this many minutes.")


class CatalystUpsetEvent(_Strict):
    """The reactor's catalyst loses activity (poisoning by a feed impurity) until it is regenerated."""

    type: Literal["catalyst_upset"]
    at_min: float = Field(ge=0, description="When, minutes from start.")
    activity: float = Field(gt=0.1, le=1.5, description="Catalyst activity from then on (nominal 1.0).")
    duration_min: float = Field(gt=0, description="Minutes until the catalyst is back at 1.0.")


class OperatorCommand(_Strict):
    """What the operator asks for: engineering settings of one unit (checked by the voice and safety agents)."""

    unit: str = Field(description="process, pacing or dispatch.")
    settings: dict[str, Any] = Field(description="e.g. {release_per_h: 0} or {jacket_setpoint_c: 70}.")


class VoiceEvent(_Strict):
    type: Literal["voice"]
    at_min: float = Field(ge=0, description="When, minutes from start.")
    audio: str | None = Field(None, description="WAV or FLAC file of the spoken command, relative to the scenario.")
    command: OperatorCommand | None = Field(None, description="The command as spoken, for scripted runs.")
    query: str | None = Field(None, min_length=1, description="A search of the inspection history as spoken, e.g. "
                              "'gears with a crack near the rim', for scripted runs.")

    @model_validator(mode="after")
    def _something_said(self) -> VoiceEvent:
        if self.audio is None and self.command is None and self.query is None:
            raise ValueError("a voice event needs `audio` (a recording), `command` or `query` (what was said)")
        return self


Event = Annotated[BreakdownEvent | RushOrderEvent | CatalystUpsetEvent | VoiceEvent, Field(discriminator="type")]


class Scenario(_Strict):
    """A whole plant run."""

    name: str = Field(min_length=1, description="Scenario name, used for the run directory.")
    description: str = Field("", description="One or two sentences for the report.")
    seed: int = Field(0, ge=0, description="Seed of the first run; run k uses seed + k.")
    seeds: int = Field(1, ge=1, le=1000, description="How many seeded runs `shopfloor run` makes.")
    duration_h: float = Field(8.0, gt=0, le=24 * 30, description="Simulated time of one run, hours.")
    tick_s: float = Field(60.0, ge=1, le=3600, description="Length of one control tick, seconds.")
    deadline_ms: float = Field(200.0, gt=0, description="Per-tick deadline for each agent's answer.")
    process: ReactorConfig = Field(default_factory=ReactorConfig)
    line: LineConfig = Field(default_factory=LineConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    inspection: InspectionConfig = Field(default_factory=InspectionConfig)
    coupling: CouplingConfig = Field(default_factory=CouplingConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    events: list[Event] = Field(default_factory=list, description="Scripted events.")

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        stations = [s.name for s in self.line.stations]
        if len(set(stations)) != len(stations):
            raise ValueError(f"line.stations names {stations} must be unique")
        for k, event in enumerate(self.events):
            if isinstance(event, BreakdownEvent) and event.station not in stations:
                raise ValueError(f"events[{k}].station {event.station!r} is not a station; allowed: "
                                 f"{', '.join(stations)}")
            if event.at_min > self.duration_h * 60:
                raise ValueError(f"events[{k}].at_min {event.at_min} is after the end of the run "
                                 f"({self.duration_h * 60:g} min)")
        s, p = self.safety, self.process
        if s.jacket_setpoint_max_c is not None and s.jacket_setpoint_max_c < p.nominal_jacket_c:
            raise ValueError(f"safety.jacket_setpoint_max_c {s.jacket_setpoint_max_c} is below the reactor's "
                             f"nominal jacket setpoint {p.nominal_jacket_c}, where it starts; allowed: at least that")
        if s.pressure_setpoint_max_bar is not None and s.pressure_setpoint_max_bar < p.nominal_pressure_bar:
            raise ValueError(f"safety.pressure_setpoint_max_bar {s.pressure_setpoint_max_bar} is below the nominal "
                             f"pressure {p.nominal_pressure_bar}, where it starts; allowed: at least that")
        biggest = max(v.capacity_units for v in self.fleet.fleet)
        if self.coupling.parts_per_order > biggest:
            raise ValueError(f"coupling.parts_per_order {self.coupling.parts_per_order} does not fit the largest "
                             f"vehicle ({biggest:g} units); allowed: at most {biggest:g}")
        for k, event in enumerate(self.events):
            if isinstance(event, RushOrderEvent) and event.demand_units > biggest:
                raise ValueError(f"events[{k}].demand_units {event.demand_units} does not fit the largest vehicle "
                                 f"({biggest:g} units); allowed: at most {biggest:g}")
        if self.tick_s > self.duration_h * 3600:
            raise ValueError(f"tick_s {self.tick_s} is longer than the run ({self.duration_h} h)")
        return self

    @property
    def n_ticks(self) -> int:
        return int(round(self.duration_h * 3600 / self.tick_s))

    def resolved_yaml(self) -> str:
        """The scenario with every default filled in, as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("breakdown", "rush_order", "voice") and path.endswith("]"):
            continue  # pydantic names the union member; the user wrote a list item
        elif isinstance(part, str) and part.startswith("function-"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at the mapping that contains loc[-1]."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        for candidate in getattr(ann, "__args__", ()) + (ann,):
            inner = getattr(candidate, "__args__", (candidate,))
            found = [c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)]
            if found:
                model = found[0]
                break
        else:
            return []
    return list(model.model_fields)


def format_validation_error(source: str, err: ValidationError, data: Any, model: type[BaseModel]) -> str:
    """The first problem of a pydantic error, as one line: file, field path, bad value, what is allowed."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    path = _field_path(loc)
    msg = e["msg"].removeprefix("Value error, ")
    extra = f" (and {err.error_count() - 1} more problem{'s' if err.error_count() > 2 else ''})" \
        if err.error_count() > 1 else ""
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        return f"{source}: {path}: unknown key; allowed keys here: {', '.join(allowed)}{extra}"
    if e["type"] == "missing":
        return f"{source}: {path}: required field is missing{extra}"
    if e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
        return f"{source}: {path}: event type {_value_at(data, loc + ('type',))!r} is not known; " \
               f"allowed: breakdown, rush_order, voice{extra}"
    if e["type"] == "value_error":  # our own validators: the message names the values already
        return f"{source}: {path}: {msg}{extra}" if loc else f"{source}: {msg}{extra}"
    value = e.get("input", _value_at(data, loc))
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{source}: {path} = {shown}: {msg}{extra}"


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data; raise ShopfloorInputError naming the problem."""
    if data is None:
        raise ShopfloorInputError(f"{source}: the scenario is empty; it must be a YAML mapping with at least `name`")
    if not isinstance(data, dict):
        raise ShopfloorInputError(f"{source}: the scenario must be a YAML mapping of sections "
                                  f"(name, line, fleet, ...), not a {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ShopfloorInputError(format_validation_error(source, err, data, Scenario)) from None


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, override and validate a scenario file.

    Parameters
    ----------
    path : str | Path
        The YAML file.
    overrides : dict, optional
        Dotted keys to values, e.g. ``{"agents.pacing.policy": "push", "seed": 3}``, applied before validation.
    """
    path = Path(path)
    if not path.is_file():
        raise ShopfloorInputError(f"{path}: no such scenario file; pass a YAML file such as scenarios/smart_factory.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ShopfloorInputError(f"{path}: cannot read the scenario as UTF-8 text ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ShopfloorInputError(f"{path}: not valid YAML{where}: {problem}") from None
    if overrides:
        if not isinstance(data, dict):
            data = {} if data is None else data
        for key, value in overrides.items():
            data = set_dotted(data, key, value, str(path))
    return _resolve_recordings(parse_scenario(data, str(path)), path)


def _resolve_recordings(scenario: Scenario, path: Path) -> Scenario:
    """Voice events' recordings, relative to the scenario's folder, made absolute and checked to exist."""
    events = list(scenario.events)
    for k, event in enumerate(events):
        if isinstance(event, VoiceEvent) and event.audio is not None:
            audio = Path(event.audio).expanduser()
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise ShopfloorInputError(f"{path}: events[{k}].audio {event.audio!r}: no such file ({audio}); allowed: "
                                          f"a WAV or FLAC file, relative to the scenario's folder")
            events[k] = event.model_copy(update={"audio": str(audio.resolve())})
    return scenario.model_copy(update={"events": events}) if events != list(scenario.events) else scenario


def set_dotted(data: dict, key: str, value: Any, source: str = "<scenario>") -> dict:
    """Return a copy of ``data`` with ``a.b.c`` set to value (intermediate mappings are created)."""
    if not isinstance(data, dict):
        raise ShopfloorInputError(f"{source}: cannot set {key}: the scenario is not a mapping")
    out = dict(data)
    head, _, rest = key.partition(".")
    if not head:
        raise ShopfloorInputError(f"{source}: bad override key {key!r}; use dotted names like agents.pacing.policy")
    if rest:
        inner = out.get(head) or {}
        if not isinstance(inner, dict):
            raise ShopfloorInputError(f"{source}: cannot set {key}: {head} is not a mapping")
        out[head] = set_dotted(inner, rest, value, source)
    else:
        out[head] = value
    return out
