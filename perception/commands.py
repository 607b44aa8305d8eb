"""The operator's command grammar: transcribed text -> an intent with slots, or ``none``.

=============  ======================================  ==============================================
intent         slots                                   e.g.
=============  ======================================  ==============================================
set_setpoint   target, value, unit                     "set reactor temperature to one hundred eighty degrees"
inspect        station, defect?, batch?                "inspect station three for cracks"
stop_line      line                                    "stop line two"
start_line     line                                    "restart line one"
change_speed   line, percent                           "change speed of line one to eighty percent"
dispatch       order?, vehicle?                        "dispatch order seventeen with van two"
query          subject (canonical_subject)             "find gears with a crack near the rim"
confirm        -                                       "confirm", "yes, do it"
cancel         -                                       "cancel", "never mind"
none           -                                       anything else: never a guess
=============  ======================================  ==============================================

Three steps: normalise the text (lower case, no punctuation, "%" -> "percent"); turn number words into
numbers ("one hundred eighty" -> 180, "two point five" -> 2.5); snap words the recogniser slipped on
("reacter", "stashion") to the nearest word of the grammar or the plant's vocabulary when they are
close enough (``difflib`` ratio >= 0.8, words of 4+ letters). Then one rule per intent looks for its
verb and its slots; a command missing a slot it needs is ``none`` with the reason, not a guess.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

INTENTS = ("set_setpoint", "inspect", "stop_line", "start_line", "change_speed", "dispatch", "query", "confirm",
           "cancel", "none")

_UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
          "seventeen": 17, "eighteen": 18, "nineteen": 19, "zero": 0, "oh": 0}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES) | {"point", "and", "a"}

# what a target is called when spoken -> (canonical target, default unit)
DEFAULT_TARGETS: dict[str, tuple[str, str]] = {
    "reactor temperature": ("jacket_temperature", "C"), "jacket temperature": ("jacket_temperature", "C"),
    "temperature": ("jacket_temperature", "C"), "reactor pressure": ("pressure", "bar"),
    "pressure": ("pressure", "bar"), "release rate": ("release_rate", "per_h"), "feed rate": ("release_rate", "per_h"),
}
UNIT_WORDS: dict[str, str] = {"degrees": "C", "degree": "C", "celsius": "C", "c": "C", "bar": "bar", "bars": "bar",
                              "percent": "%", "parts per hour": "per_h", "per hour": "per_h"}
DEFECT_WORDS: dict[str, str] = {"scratch": "scratch", "scratches": "scratch", "scratched": "scratch",
                                "crack": "crack", "cracks": "crack", "cracked": "crack", "dent": "dent",
                                "dents": "dent", "dented": "dent", "stain": "stain", "stains": "stain",
                                "stained": "stain", "missing hole": "missing_hole", "missing holes": "missing_hole",
                                "burr": "burr", "burrs": "burr", "defects": None, "defect": None}
_CONFIRM = {"confirm", "confirmed", "yes", "yes confirm", "affirmative", "do it", "yes do it", "go ahead",
            "yes go ahead", "confirm that", "i confirm"}
_CANCEL = {"cancel", "cancelled", "cancel that", "abort", "no", "never mind", "nevermind", "forget it", "scratch that",
           "no cancel"}
_SET_VERBS = ("set", "change", "raise", "lower", "increase", "decrease", "make")
_VERBS = _SET_VERBS + ("stop", "halt", "start", "restart", "resume", "inspect", "check", "dispatch", "send", "find",
                       "show", "search", "list")
# what a spoken number slot is often heard as, right after the word that takes it ("line to" = "line 2")
_SLOT_WORDS = ("line", "station", "vehicle", "van", "truck", "order", "batch")
_HOMOPHONES = {"to": "2", "too": "2", "for": "4", "won": "1", "free": "3", "tree": "3", "ate": "8"}
_FILLERS = ("please", "now", "ok", "okay", "and", "so", "um", "uh", "hey", "then")
_KEYWORDS = ("set", "change", "raise", "lower", "increase", "decrease", "stop", "halt", "start", "restart",
             "resume", "speed", "line", "station", "inspect", "check", "batch", "dispatch", "send", "order",
             "vehicle", "van", "truck", "find", "show", "search", "list", "confirm", "cancel", "abort", "percent",
             "degrees", "celsius", "bar", "reactor", "temperature", "pressure", "jacket", "release", "rate",
             "for", "with", "to", "of", "me", "parts")


@dataclass(frozen=True)
class Vocabulary:
    """The plant's words: what the grammar accepts as targets, lines, stations and vehicles."""

    targets: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    lines: tuple[str, ...] = ("1",)
    stations: tuple[str, ...] = ()
    n_vehicles: int = 0

    def __hash__(self) -> int:  # a plant's grammar is cached by its vocabulary (agents.runtime)
        return hash((tuple(self.targets.items()), self.lines, self.stations, self.n_vehicles))

    def words(self) -> list[str]:
        """Words to bias speech recognition toward (``SpeechRecognizer.set_vocabulary``)."""
        out = ["station", "line", "reactor", "temperature", "pressure", "inspect", "dispatch", "vehicle", "confirm",
               "cancel", "percent", "degrees", "bar"]
        out += [w for phrase in self.targets for w in phrase.split()]
        out += [s for s in self.stations if not s.isdigit()] + [s for s in self.lines if not s.isdigit()]
        return list(dict.fromkeys(out))

    def lexicon(self) -> set[str]:
        # never number words: snapping "light" to "eight" would invent a value the operator did not say
        words = set(_KEYWORDS) | {w for p in self.targets for w in p.split()}
        words |= {w for p in list(UNIT_WORDS) + [p for p in DEFECT_WORDS] for w in p.split()}
        words |= {s.lower() for s in self.stations + self.lines}
        return words


@dataclass
class ParsedCommand:
    intent: str
    slots: dict = field(default_factory=dict)
    text: str = ""  # the normalised text the rules saw
    reason: str = ""  # why it is ``none`` when it looked like a command

    def as_dict(self) -> dict:
        return {"intent": self.intent, "slots": self.slots}


def normalise(text: str) -> list[str]:
    text = text.lower().replace("%", " percent ").replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"[^a-z0-9. ]+", " ", text)
    text = re.sub(r"\.(?!\d)", " ", text)  # sentence dots go, decimal points stay
    return text.split()


def words_to_numbers(tokens: Sequence[str]) -> list[str]:
    """Replace runs of number words by the number they say: "one hundred eighty" -> "180"."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j, value = _number_at(tokens, i)
        if j > i:
            out.append(_fmt(value))
            i = j
        else:
            out.append(tokens[i])
            i += 1
    return out


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _number_at(tokens: Sequence[str], i: int) -> tuple[int, float]:
    """(end index, value) of the number starting at ``i``; end == i when there is none."""
    total, current, j, seen = 0.0, 0.0, i, False
    while j < len(tokens):
        w = tokens[j]
        if w in _UNITS:
            if seen and current % 10 and current >= 1 and current < 10:
                break  # "two three" is two numbers
            current += _UNITS[w]
        elif w in _TENS:
            if seen and current % 100:
                break
            current += _TENS[w]
        elif w in _SCALES and seen:
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0.0
        elif w == "a" and j + 1 < len(tokens) and tokens[j + 1] in _SCALES and not seen:
            current = 1
        elif w == "and" and seen and j + 1 < len(tokens) and tokens[j + 1] in set(_UNITS) | set(_TENS):
            pass
        elif re.fullmatch(r"\d+(\.\d+)?", w) and not seen:
            return j + 1, float(w)
        else:
            break
        seen = seen or w != "and"
        j += 1
    if not seen:
        return i, 0.0
    value = total + current
    if j + 1 < len(tokens) and tokens[j] == "point":  # "two point five"
        digits, k = "", j + 1
        while k < len(tokens) and tokens[k] in _UNITS and _UNITS[tokens[k]] < 10:
            digits += str(_UNITS[tokens[k]])
            k += 1
        if digits:
            return k, float(f"{int(value)}.{digits}")
    return j, value


def snap(tokens: Sequence[str], lexicon: Iterable[str], cutoff: float = 0.8) -> list[str]:
    """Replace words the recogniser slipped on by the closest lexicon word, when close enough and about as
    long. A number word stays itself: "four" is 0.86 alike to "for", and "sixty four" must not become 60."""
    lexicon = sorted(set(lexicon))
    out = []
    for w in tokens:
        if len(w) >= 4 and not w.replace(".", "").isdigit() and w not in lexicon and w not in _NUMBER_WORDS:
            close = difflib.get_close_matches(w, lexicon, n=1, cutoff=cutoff)
            # a slip keeps a word's length, about: "second" is 0.8 alike to "send", but "wait a second" is
            # no dispatch
            w = close[0] if close and abs(len(close[0]) - len(w)) <= 1 else w
        out.append(w)
    return out


def _collapse_repeats(tokens: list[str]) -> list[str]:
    """"confirm confirm confirm" -> "confirm": a phrase said (or decoded) twice in a row counts once."""
    out = list(tokens)
    changed = True
    while changed:
        changed = False
        for n in range(1, len(out) // 2 + 1):
            for k in range(len(out) - 2 * n + 1):
                if out[k:k + n] == out[k + n:k + 2 * n]:
                    del out[k + n:k + 2 * n]
                    changed = True
                    break
            if changed:
                break
    return out


def _slot_homophones(tokens: list[str]) -> list[str]:
    """"line to speed" -> "line 2 speed": a homophone of a digit right after a slot word is that digit,
    unless a real number follows it ("line to 80 percent" keeps its "to")."""
    out = list(tokens)
    for k in range(1, len(out)):
        if out[k - 1] in _SLOT_WORDS and out[k] in _HOMOPHONES:
            nxt = out[k + 1] if k + 1 < len(out) else ""
            if not re.fullmatch(r"\d+(\.\d+)?", nxt):
                out[k] = _HOMOPHONES[out[k]]
    return out


def _number_after(tokens: list[str], keys: Iterable[str]) -> str | None:
    """The number (or name) right after one of ``keys`` ("line 2" -> "2")."""
    for k, w in enumerate(tokens[:-1]):
        if w in keys:
            nxt = tokens[k + 1]
            if nxt == "number" and k + 2 < len(tokens):
                nxt = tokens[k + 2]
            return nxt
    return None


def _first_number(tokens: list[str], start: int = 0) -> float | None:
    for w in tokens[start:]:
        if re.fullmatch(r"\d+(\.\d+)?", w):
            return float(w)
    return None


def _resolve(name: str | None, allowed: Sequence[str]) -> str | None:
    if name is None:
        return None
    for a in allowed:
        if name == a.lower():
            return a
    return None


def canonical_subject(words: Sequence[str]) -> str:
    """A search's description in one form: part nouns plural, a defect after "with" plural, no "a"/"an",
    and "the" only after a preposition of place. "the plate with a crack near the rim" and "plates with
    cracks near the rim" ask the inspection history the same thing; the recogniser writes either for the
    same speech ("Find caps with a dent." for "find caps with dents"), and the retrieval must not care."""
    from environments.parts import PART_TYPES

    out: list[str] = []
    for w in words:
        prev = out[-1] if out else ""
        if w in ("a", "an") or (w == "the" and prev not in _PLACE_WORDS):
            continue
        if w in PART_TYPES or w == "part":
            w += "s"
        elif prev in ("with", "missing") and w in _DEFECT_PLURALS:
            w = _DEFECT_PLURALS[w]
        out.append(w)
    return " ".join(out)


def describes_parts(words: Sequence[str] | str) -> bool:
    """Does a search (its words, or an utterance) name something the inspection history holds: a part, a
    material, a colour or a defect?"""
    if isinstance(words, str):
        words = normalise(words)
    return any(w in _part_words() for w in words)


@functools.cache
def _part_words() -> frozenset[str]:
    from environments.parts import COLOURS, MATERIALS, PART_TYPES

    words = set(PART_TYPES) | {p + "s" for p in PART_TYPES} | {"part", "parts", "defective", "good", "metal"}
    return frozenset(words | set(MATERIALS) | set(COLOURS) | {w for p in DEFECT_WORDS for w in p.split()})


_BARE_DISPATCH_WORDS = frozenset({"the", "next", "order", "a", "van", "vehicle", "truck", "now", "please"})
_PLACE_WORDS = ("near", "at", "on", "in")
_DEFECT_PLURALS = {"scratch": "scratches", "crack": "cracks", "dent": "dents", "stain": "stains", "burr": "burrs",
                   "hole": "holes"}


def spelled_alike(a: str, b: str) -> float:
    """How alike two utterances are spelled, 0..1: difflib's ratio of their normalised words, a phrase
    said twice counted once ("Find played with birds." and "Find plates with burrs." 0.82)."""
    a_words, b_words = (" ".join(_collapse_repeats(normalise(t))) for t in (a, b))
    return difflib.SequenceMatcher(None, a_words, b_words).ratio()


def parse_command(text: str, vocab: Vocabulary = Vocabulary()) -> ParsedCommand:
    """Parse one utterance. Slots hold plant names (``vocab``) and numbers as floats."""
    tokens = _collapse_repeats(words_to_numbers(snap(normalise(text), vocab.lexicon())))
    joined = " ".join(tokens)
    none = ParsedCommand("none", text=joined)
    if not tokens:
        return none
    if joined in _CONFIRM:
        return ParsedCommand("confirm", text=joined)
    if joined in _CANCEL:
        return ParsedCommand("cancel", text=joined)
    tokens = _slot_homophones(tokens)
    joined = " ".join(tokens)
    # the recogniser often adds a word or two in front ("it is inspect ..."): the verb may come late
    start = next((k for k, w in enumerate(tokens[:4]) if w in _VERBS), 0)
    tokens = tokens[start:]
    while len(tokens) > 1 and tokens[0] in _FILLERS:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in _VERBS:  # a trailing restart of the phrase ("..., find")
        tokens = tokens[:-1]
    joined = " ".join(tokens)
    verb = tokens[0]

    # query: "find / show (me) / search (for) / list ..." -> the rest is the subject for CLIP
    if verb in ("find", "show", "search", "list", "which"):
        rest = tokens[tokens.index(verb) + 1:]
        while rest and rest[0] in ("me", "for", "all", "the"):
            rest = rest[1:]
        if not rest:
            return ParsedCommand("none", text=joined, reason="a query needs a description, e.g. 'find cracked gears'")
        if not describes_parts(rest):  # "find my keys" is no search of the inspection history
            return ParsedCommand("none", text=joined, reason="a query describes parts by type, material, colour or "
                                                             "defect, e.g. 'find cracked gears'")
        return ParsedCommand("query", {"subject": canonical_subject(rest)}, joined)

    line = _resolve(_number_after(tokens, ("line",)), vocab.lines)
    if len(vocab.lines) == 1 and "line" in tokens and line is None and _number_after(tokens, ("line",)) is None:
        line = vocab.lines[0]  # "stop the line" in a plant with one line
    if verb in ("stop", "halt") and "line" in tokens:
        return ParsedCommand("stop_line", {"line": line}, joined) if line else \
            ParsedCommand("none", text=joined, reason=f"which line? allowed: {list(vocab.lines)}")
    if verb in ("start", "restart", "resume") and "line" in tokens:
        return ParsedCommand("start_line", {"line": line}, joined) if line else \
            ParsedCommand("none", text=joined, reason=f"which line? allowed: {list(vocab.lines)}")

    if "speed" in tokens and "line" in tokens:
        at = tokens.index("to") + 1 if "to" in tokens else tokens.index("speed")
        percent = _first_number(tokens, at)
        if line is None or percent is None:
            return ParsedCommand("none", text=joined, reason="say the line and the speed, e.g. 'set line 1 speed "
                                 "to 80 percent'")
        return ParsedCommand("change_speed", {"line": line, "percent": percent}, joined)

    if verb in ("inspect", "check"):
        station = _resolve(_number_after(tokens, ("station",)), vocab.stations)
        if station is None and len(tokens) > 1:
            station = _resolve(tokens[1], vocab.stations)
        if station is None:
            return ParsedCommand("none", text=joined, reason=f"which station? allowed: {list(vocab.stations)}")
        slots: dict = {"station": station}
        for phrase, defect in sorted(DEFECT_WORDS.items(), key=lambda kv: -len(kv[0])):
            if defect and re.search(rf"\b{phrase}\b", joined):
                slots["defect"] = defect
                break
        batch = _number_after(tokens, ("batch",))
        if batch is not None and batch.replace(".", "").isdigit():
            slots["batch"] = int(float(batch))
        return ParsedCommand("inspect", slots, joined)

    if verb in ("dispatch", "send"):
        slots = {}
        order = _number_after(tokens, ("order",))
        vehicle = _number_after(tokens, ("vehicle", "van", "truck"))
        if order is not None and order.isdigit():
            slots["order"] = int(order)
        if vehicle is not None and vehicle.isdigit():
            if not 1 <= int(vehicle) <= max(vocab.n_vehicles, 1):
                return ParsedCommand("none", text=joined, reason=f"vehicle {vehicle} does not exist; allowed: 1.."
                                     f"{vocab.n_vehicles}")
            slots["vehicle"] = int(vehicle)
        if not slots and not set(tokens[1:]) <= _BARE_DISPATCH_WORDS:  # "send me the photos" is no dispatch
            return ParsedCommand("none", text=joined, reason="a dispatch names an order or a vehicle, or is said "
                                                             "alone ('dispatch the next order')")
        return ParsedCommand("dispatch", slots, joined)

    named_target = any(re.search(rf"\b{p}\b", joined) for p in vocab.targets)
    if verb in _SET_VERBS or (named_target and re.search(r"\bto \d", joined)):  # "reactor temperature to 80"
        for phrase, (target, unit) in sorted(vocab.targets.items(), key=lambda kv: -len(kv[0])):
            if re.search(rf"\b{phrase}\b", joined):
                after = joined.index(phrase) + len(phrase)
                value = _first_number(joined[after:].split())
                if value is None:
                    return ParsedCommand("none", text=joined, reason=f"set {phrase} to what value?")
                spoken_unit = next((u for w, u in sorted(UNIT_WORDS.items(), key=lambda kv: -len(kv[0]))
                                    if re.search(rf"\b{w}\b", joined[after:])), unit)
                return ParsedCommand("set_setpoint", {"target": target, "value": value, "unit": spoken_unit}, joined)
        return ParsedCommand("none", text=joined, reason=f"set what? allowed targets: {sorted(vocab.targets)}")
    return none


# ------------------------------------------------------------------------------ the sentences it accepts
_STOP_VERBS, _START_VERBS = ("stop", "halt"), ("start", "restart", "resume")
_FIND_VERBS = ("find", "show", "show me", "search for", "list")
_REGIONS = ("centre", "center", "rim", "edge", "corner", "middle")
_TEMPERATURE_UNITS = ("degrees", "degree", "degrees celsius", "celsius", "°", "°C")
_PERCENT = ("percent", "per cent", "%")


def spoken_number(n: int) -> str:
    """An integer 0..999 in words, as an operator says it: 180 -> "one hundred eighty"."""
    ones = {v: w for w, v in _UNITS.items() if w != "oh"}
    tens = {v: w for w, v in _TENS.items()}
    if n < 20:
        return ones[n]
    if n < 100:
        return tens[n // 10 * 10] + ("" if n % 10 == 0 else " " + ones[n % 10])
    rest = n % 100
    return ones[n // 100] + " hundred" + ("" if rest == 0 else " " + spoken_number(rest))


def _digits(upto: int, decimals_upto: int = 0) -> tuple[str, ...]:
    """Numbers as Whisper writes them: "69", "2.5". (Spelt-out alternatives, "sixty nine", tripled the
    grammar's build time and won back none of the numbers tiny.en mishears: benchmarks/voice.py.)"""
    out = [str(n) for n in range(upto + 1)]
    out += [f"{n}.{d}" for n in range(decimals_upto) for d in range(1, 10)]
    return tuple(out)


def command_sentences(vocab: Vocabulary = Vocabulary(), parts: Sequence[str] = (),
                      part_words: Sequence[str] = ()) -> list[tuple[tuple[str, ...], ...]]:
    """The sentences the grammar accepts, as patterns: each a sequence of word choices (alternatives).

    This is the command language the recogniser may be held to (``perception.constrained_decoding``):
    every sentence it spells parses to an intent with all its slots (tests check this). A phrase that
    begins with a symbol ("%", "°C") is written against the word before it. Numbers are written as
    digits, as Whisper writes them; ``parts`` and ``part_words`` are the nouns and attribute words a
    search may use (``environments.parts``: part types, materials, colours).
    """
    number = _digits(999, decimals_upto=100)
    vehicle_ids = tuple(str(k) for k in range(1, vocab.n_vehicles + 1))
    vehicle_ids += tuple(w for w, n in _UNITS.items() if str(n) in vehicle_ids and w != "oh")
    sets = _SET_VERBS
    lines = tuple(dict.fromkeys(vocab.lines + tuple(w for w, n in _UNITS.items() if str(n) in vocab.lines)))
    units_of = {"C": _TEMPERATURE_UNITS, "bar": ("bar", "bars"), "per_h": ("parts per hour", "per hour")}
    out: list[tuple[tuple[str, ...], ...]] = []
    integer = _digits(999)
    for phrase, (_, unit) in vocab.targets.items():
        value = number if unit == "bar" else integer  # "eighty seven" is not 8.7 degrees
        for target in ((phrase,), ("the " + phrase,)):
            out.append((sets, target, ("to",), value))
            out.append((sets, target, ("to",), value, units_of[unit]))
    for verbs, the in ((_STOP_VERBS, ("line", "the line")), (_START_VERBS, ("line", "the line"))):
        out.append((verbs, the, lines))
        if len(vocab.lines) == 1:
            out.append((verbs, ("the line",)))
    out.append((sets, ("line",), lines, ("speed to",), number, _PERCENT))
    out.append((sets, ("the speed of line", "speed of line"), lines, ("to",), number, _PERCENT))
    defects = tuple(w for w, d in DEFECT_WORDS.items() if d)
    for verb in ("inspect", "check"):
        for station in ((tuple(vocab.stations),), (("station",), tuple(vocab.stations))):
            if not vocab.stations:
                continue
            out.append(((verb,), *station))
            out.append(((verb,), *station, ("for",), defects))
            out.append(((verb,), *station, ("batch",), number))
            out.append(((verb,), *station, ("for",), defects, ("batch",), number))
    vehicles = ("vehicle", "van", "truck")
    out.append((("dispatch",),))
    out.append((("dispatch",), ("order",), integer))  # orders are numbered: "order 25.8" names none
    if vehicle_ids:
        out.append((("dispatch",), ("order",), integer, ("with", "to", "on"), vehicles, vehicle_ids))
        out.append((("dispatch",), ("with", "to", "on"), vehicles, vehicle_ids))
    # a search says what the captions of the parts say: "[all] [brass|cracked ...] gears [with a crack [near the rim]]"
    nouns = tuple(parts) + tuple(p + "s" for p in parts) + ("parts", "part")
    adjectives = tuple(part_words) + ("defective", "good", "cracked", "scratched", "dented", "stained")
    singular = tuple(w for w, d in DEFECT_WORDS.items() if d and w == d.replace("_", " "))
    plural = tuple(w for w, d in DEFECT_WORDS.items() if d and w.endswith("s") and w != d) + ("defects",)
    where = (("near the", "at the", "on the", "in the"), _REGIONS)
    for lead in ((), (("all", "the", "all the"),)):
        for n_adjectives in range(3):
            for tail in ((), (("with",), plural), (("with a", "with an"), singular), (("with",), plural) + where,
                         (("with a", "with an"), singular) + where):
                out.append((_FIND_VERBS, *lead, *([adjectives] * n_adjectives), nouns, *tail))
    out.append((tuple(_CONFIRM),))
    out.append((tuple(_CANCEL),))
    return out
