"""Procedural renderer of inspected parts: the inspection station's camera.

Each call draws one part, seen from above on a conveyor, with numpy and Pillow only: the outline and
holes are filled polygons (3x supersampled at 64 px); the surface is a height map (bevelled edges,
domes, hubs, dents) shaded with Lambert + Blinn-Phong under one directional light; the conveyor
background carries the part's cast shadow. Measured on one core of this project's shared 2 GHz vCPU
(where a plain Python loop runs ~4x slower than on a desktop): ~1.2 ms for a good 64 x 64 part,
~1.7 ms averaged over all defect types, ~3-4 ms at 128 x 128. ``python -m environments.parts``
times it and writes a contact sheet.

What is drawn
-------------
==============  ==============================================================================
part types      ``PART_TYPES``: gear, plate, bracket, cap, washer
materials       ``MATERIALS``: steel, aluminium, brass, copper (colour "natural"); plastic, painted
                (one of ``COLOURS`` other than "natural"). Each has its own diffuse/specular look:
                brushed or turned metal with tinted highlights, matte plastic, glossy orange-peel paint.
defects         ``DEFECT_TYPES`` (index = the line simulator's integer defect code, 0 = good)
regions         where a defect sits: "centre", "rim", "edge" or "corner"; the valid ones per part
                type and defect come from ``valid_regions(part_type, defect)``
pose            position jitter, rotation and scale, ranges set by ``RenderShift``
imaging         directional light (direction, brightness, colour temperature), cast shadow,
                background, Gaussian blur and sensor noise, all set by ``RenderShift``
==============  ==============================================================================

How each defect looks (its mask marks the pixels it changed on the part):

==============  ==============================================================================
scratch         one thin smooth line (straight or gently curved), sometimes with a fainter
                parallel twin: a shallow groove of exposed, shinier material
crack           a thin, jagged, branching line, dark (whitish on black parts: stress whitening)
dent            a round depression: shaded dark on one side and bright on the other, by the light
stain           an irregular, blotchy patch of another colour (rust, oil, residue), matte
missing_hole    one hole of the part's hole pattern is not there; every part type has holes:
                gear (bore and lightening holes, "centre"), plate (centre and corner holes),
                bracket (leg-end holes "edge", bend hole "corner"), cap (centre and vent holes),
                washer (its bore)
burr            a cluster of small jagged spikes sticking out of the outline
==============  ==============================================================================

Determinism
-----------
Everything random comes from ``np.random.default_rng(seed)``. The scene (pose, light, background,
geometry, surface texture, where the sensor-noise window sits) is drawn first, with a number of
draws that depends on neither the defect nor the ``RenderShift`` nor the image size; the defect then
draws from its own generator, seeded from the scene generator. So for one seed the defective part
and its good twin are the same part in the same pose, and a shifted render (other than "pose") shows
the same part and defect under other conditions. Sensor noise is a randomly placed and flipped
window of one fixed 512 x 512 field of Gaussian values (itself from ``default_rng``): 4x cheaper
than fresh draws; windows of different images overlap, which does not matter for sensor noise.

Extending
---------
- A new part type: write ``_build_<name>(rng) -> _Geometry`` (counter-clockwise outline polygon in
  local units with the outer radius ~1, holes with their region, texture kind, optional height
  relief, a region classifier); draw its randomness as one ``rng.random(k)`` so the draw count is
  fixed. Add it to ``PART_BUILDERS`` and ``PART_TYPES``, and its regions to ``_PART_REGIONS``.
- A new defect type: write ``_draw_<name>(canvas, region, rng) -> np.ndarray`` (it edits the
  canvas layers and returns the defect's boolean mask), add it to ``DEFECT_DRAWERS`` and append the
  name to the end of ``DEFECT_TYPES`` (integer codes stay stable). A surface defect is valid in every
  region of a part's surface; a defect tied to holes or to the outline gets an entry in
  ``_PART_REGIONS``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from environments.errors import ShopfloorInputError

PART_TYPES: tuple[str, ...] = ("gear", "plate", "bracket", "cap", "washer")
METALS: tuple[str, ...] = ("steel", "aluminium", "brass", "copper")
MATERIALS: tuple[str, ...] = METALS + ("plastic", "painted")
COLOURS: tuple[str, ...] = ("natural", "red", "blue", "green", "yellow", "orange", "black", "grey", "white")
DEFECT_TYPES: tuple[str, ...] = ("good", "scratch", "crack", "dent", "stain", "missing_hole", "burr")
REGIONS: tuple[str, ...] = ("centre", "rim", "edge", "corner")
_LUMA = np.array([0.3, 0.59, 0.11])

# Regions per part type: "surface" is where scratches, cracks, dents and stains may sit; other keys
# restrict a defect to where the part has what it needs (holes for missing_hole, outline for burr).
_PART_REGIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "gear": {"surface": ("centre", "rim"), "missing_hole": ("centre",), "burr": ("rim",)},
    "plate": {
        "surface": ("centre", "edge", "corner"),
        "missing_hole": ("centre", "corner"),
        "burr": ("edge", "corner"),
    },
    "bracket": {"surface": ("corner", "edge"), "missing_hole": ("corner", "edge"), "burr": ("corner", "edge")},
    "cap": {"surface": ("centre", "rim"), "missing_hole": ("centre",), "burr": ("rim",)},
    "washer": {"surface": ("centre", "rim"), "missing_hole": ("centre",), "burr": ("rim",)},
}

_RGB = tuple[float, float, float]
_COLOUR_RGB: dict[str, _RGB] = {  # linear-ish albedo in [0, 1]
    "red": (0.72, 0.10, 0.09),
    "blue": (0.10, 0.25, 0.68),
    "green": (0.12, 0.50, 0.20),
    "yellow": (0.88, 0.72, 0.10),
    "orange": (0.90, 0.42, 0.08),
    "black": (0.07, 0.07, 0.08),
    "grey": (0.46, 0.47, 0.49),
    "white": (0.86, 0.86, 0.84),
}


@dataclass(frozen=True)
class _Material:
    rgb: _RGB | None  # albedo; None = the spec's colour
    ambient: float  # light reaching the part from everywhere
    diffuse: float  # Lambert weight
    specular: float  # Blinn-Phong weight
    shininess_log2: int  # exponent = 2 ** shininess_log2 (computed by repeated squaring)
    metallic: float  # 0 = white highlights (dielectric), 1 = highlights tinted by the albedo
    grain: float  # amplitude of the turned/brushed texture on the albedo
    orange_peel_px: float = 0.0  # amplitude of paint relief, px at 64 px


_MATERIAL: dict[str, _Material] = {
    "steel": _Material((0.55, 0.57, 0.6), 0.3, 0.5, 0.55, 5, 0.4, 0.07),
    "aluminium": _Material((0.72, 0.73, 0.75), 0.3, 0.55, 0.45, 4, 0.25, 0.05),
    "brass": _Material((0.78, 0.64, 0.3), 0.28, 0.5, 0.6, 5, 0.85, 0.06),
    "copper": _Material((0.72, 0.38, 0.24), 0.28, 0.5, 0.6, 5, 0.85, 0.06),
    "plastic": _Material(None, 0.3, 0.7, 0.3, 5, 0.0, 0.012),
    "painted": _Material(None, 0.28, 0.66, 0.5, 6, 0.0, 0.015, orange_peel_px=0.35),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, numbers.Real) and lo <= value <= hi):
        raise ShopfloorInputError(f"{name}={value!r} is invalid; allowed: a number in [{lo}, {hi}].")


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ShopfloorInputError(f"{name}={value!r} is invalid; allowed: {tuple(choices)}.")


# --------------------------------------------------------------------------------------------------
# Public dataclasses
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderShift:
    """Imaging conditions; change them to create a distribution shift.

    Per-image random variation is drawn inside the stated jitters and ranges.
    """

    brightness: float = 1.0
    """Multiplier on the light intensity (1.0 = nominal exposure)."""
    brightness_jitter: float = 0.06
    """Per-image relative brightness variation, uniform in +-this."""
    light_azimuth_deg: float = 135.0
    """Where the light comes from, counter-clockwise on screen: 0 = right, 90 = top, 135 = top-left."""
    light_azimuth_jitter_deg: float = 20.0
    """Per-image azimuth variation, uniform in +-this (degrees)."""
    light_elevation_deg: float = 55.0
    """Light elevation above the conveyor plane (degrees, 90 = straight above)."""
    colour_temperature_k: float = 6500.0
    """Light colour temperature (kelvin); 6500 renders neutral, lower is warmer."""
    colour_temperature_jitter_k: float = 400.0
    """Per-image colour temperature variation, uniform in +-this (kelvin)."""
    blur_sigma_px: float = 0.0
    """Gaussian blur of the whole image, standard deviation in output pixels."""
    noise_std: float = 0.01
    """Sensor noise: Gaussian per pixel (luminance, same on the 3 channels), std as a fraction of full scale."""
    rotation_range_deg: tuple[float, float] = (-30.0, 30.0)
    """Part rotation range (degrees), uniform."""
    scale_range: tuple[float, float] = (0.9, 1.1)
    """Part scale range, uniform; 1.0 puts the part's outer radius at 0.36 of the image size."""
    position_jitter: float = 0.04
    """Part centre offset from the image centre, uniform in +-this fraction of the image size."""
    background_tone: float = 0.34
    """Mean grey level of the conveyor background, 0..1."""
    background_variation: float = 0.1
    """How much the background varies per image (tint, gradient, blotches), 0 = plain, 1 = strong."""

    def __post_init__(self) -> None:
        _check_range("brightness", self.brightness, 0.05, 5.0)
        _check_range("brightness_jitter", self.brightness_jitter, 0.0, 0.9)
        _check_range("light_elevation_deg", self.light_elevation_deg, 5.0, 90.0)
        _check_range("light_azimuth_jitter_deg", self.light_azimuth_jitter_deg, 0.0, 180.0)
        _check_range("colour_temperature_k", self.colour_temperature_k, 1500.0, 15000.0)
        _check_range("colour_temperature_jitter_k", self.colour_temperature_jitter_k, 0.0, 5000.0)
        _check_range("blur_sigma_px", self.blur_sigma_px, 0.0, 8.0)
        _check_range("noise_std", self.noise_std, 0.0, 0.5)
        _check_range("position_jitter", self.position_jitter, 0.0, 0.15)
        _check_range("background_tone", self.background_tone, 0.0, 1.0)
        _check_range("background_variation", self.background_variation, 0.0, 1.0)
        for name, (lo, hi), bounds in (
            ("rotation_range_deg", self.rotation_range_deg, (-360.0, 360.0)),
            ("scale_range", self.scale_range, (0.3, 1.3)),
        ):
            if not (bounds[0] <= lo <= hi <= bounds[1]):
                raise ShopfloorInputError(
                    f"RenderShift.{name}=({lo}, {hi}) is invalid; allowed: lo <= hi within {bounds}."
                )


NOMINAL = RenderShift()
"""The nominal imaging conditions (the training distribution)."""

# What each kind of shift sets at severity 1; ``shifted`` interpolates from NOMINAL towards these.
_SHIFT_TARGETS: dict[str, dict[str, float | tuple[float, float]]] = {
    "lighting": {
        "brightness": 0.6,
        "light_azimuth_deg": 315.0,
        "light_elevation_deg": 30.0,
        "colour_temperature_k": 3200.0,
    },
    "blur": {"blur_sigma_px": 1.4},
    "noise": {"noise_std": 0.06},
    "pose": {"rotation_range_deg": (-180.0, 180.0), "scale_range": (0.72, 1.2), "position_jitter": 0.07},
    "background": {"background_tone": 0.62, "background_variation": 0.6},
}
SHIFT_KINDS: tuple[str, ...] = tuple(_SHIFT_TARGETS)


def shifted(kinds: str | Iterable[str] = "all", severity: float = 1.0, base: RenderShift = NOMINAL) -> RenderShift:
    """Return a shifted copy of ``base``.

    Parameters
    ----------
    kinds : "all", one of ``SHIFT_KINDS`` ("lighting", "blur", "noise", "pose", "background"), or several.
    severity : 0 returns ``base``, 1 the full preset; values in between interpolate linearly.
    base : the conditions to shift from.
    """
    names = SHIFT_KINDS if kinds == "all" else ((kinds,) if isinstance(kinds, str) else tuple(kinds))
    bad = [k for k in names if k not in _SHIFT_TARGETS]
    if bad:
        raise ShopfloorInputError(f"unknown shift kind(s) {bad}; allowed: 'all' or any of {SHIFT_KINDS}.")
    _check_range("severity", severity, 0.0, 1.0)
    changes: dict[str, float | tuple[float, float]] = {}
    for kind in names:
        for key, target in _SHIFT_TARGETS[kind].items():
            start = getattr(base, key)
            if isinstance(target, tuple):
                changes[key] = tuple(s + severity * (t - s) for s, t in zip(start, target))  # type: ignore[assignment]
            else:
                changes[key] = start + severity * (target - start)
    return replace(base, **changes)


SHIFTED = shifted("all")
"""Every shift kind at full severity."""


@dataclass(frozen=True)
class PartSpec:
    """What to draw. ``colour`` is "natural" for metals and a paint/plastic colour otherwise.

    ``defect_region`` is None for good parts; for a defective part left as None it becomes the first
    of ``valid_regions(part_type, defect)``.
    """

    part_type: str
    material: str
    colour: str = "natural"
    defect: str = "good"
    defect_region: str | None = None

    def __post_init__(self) -> None:
        _check_choice("part_type", self.part_type, PART_TYPES)
        _check_choice("material", self.material, MATERIALS)
        _check_choice("defect", self.defect, DEFECT_TYPES)
        if self.material in METALS:
            if self.colour != "natural":
                raise ShopfloorInputError(
                    f"PartSpec.colour={self.colour!r} is invalid for {self.material}; metals take 'natural'."
                )
        elif self.colour not in _COLOUR_RGB:
            raise ShopfloorInputError(
                f"PartSpec.colour={self.colour!r} is invalid for {self.material}; allowed: {tuple(_COLOUR_RGB)}."
            )
        if self.defect == "good":
            if self.defect_region is not None:
                raise ShopfloorInputError(
                    f"PartSpec.defect_region={self.defect_region!r} is invalid for a good part; allowed: None."
                )
            return
        allowed = valid_regions(self.part_type, self.defect)
        if self.defect_region is None:
            object.__setattr__(self, "defect_region", allowed[0])
        elif self.defect_region not in allowed:
            raise ShopfloorInputError(
                f"PartSpec.defect_region={self.defect_region!r} is invalid for a {self.defect} on a "
                f"{self.part_type}; allowed: {allowed}."
            )

    @property
    def defect_code(self) -> int:
        """Integer code of the defect: its index in ``DEFECT_TYPES`` (0 = good)."""
        return DEFECT_TYPES.index(self.defect)

    def caption(self) -> str:
        """One English sentence, e.g. "a brass gear with a crack near the rim", "a good blue plastic cap"."""
        look = self.material if self.material in METALS else f"{self.colour} {self.material}"
        if self.defect == "good":
            return f"a good {look} {self.part_type}"
        noun = self.defect.replace("_", " ")
        return f"{_article(look)} {look} {self.part_type} with {_article(noun)} {noun} near the {self.defect_region}"


@dataclass(frozen=True, eq=False)
class RenderedPart:
    """One rendered part.

    Attributes
    ----------
    image : np.ndarray, shape = (size, size, 3), uint8, read-only
    mask : np.ndarray, shape = (size, size), bool, read-only; the defect's pixels (all False when good)
    spec : PartSpec
    seed : int
    """

    image: np.ndarray
    mask: np.ndarray
    spec: PartSpec
    seed: int

    @property
    def label(self) -> int:
        """The defect code (index in ``DEFECT_TYPES``)."""
        return self.spec.defect_code

    def caption(self) -> str:
        """See ``PartSpec.caption``."""
        return self.spec.caption()


# --------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------
def valid_regions(part_type: str, defect: str) -> tuple[str, ...]:
    """Regions where ``defect`` can sit on ``part_type`` (empty for "good")."""
    _check_choice("part_type", part_type, PART_TYPES)
    _check_choice("defect", defect, DEFECT_TYPES)
    if defect == "good":
        return ()
    regions = _PART_REGIONS[part_type]
    return regions.get(defect, regions["surface"])


def sample_spec(
    rng: np.random.Generator,
    defect: str | int | None = None,
    exclude: Iterable[str | tuple[str, ...]] = (),
    part_type: str | None = None,
    material: str | None = None,
) -> PartSpec:
    """Draw a random ``PartSpec``.

    Parameters
    ----------
    rng : the generator to draw from.
    defect : a name or integer code from ``DEFECT_TYPES``; None draws uniformly over all of them.
    exclude : values never to produce. A string excludes any spec having it as part type, material,
        colour, defect or region (e.g. "brass"); a tuple excludes specs having all of its values
        together (e.g. ("brass", "gear") holds out brass gears, for compositional tests).
    part_type, material : fix these instead of drawing them.
    """
    if isinstance(defect, (int, np.integer)):
        if not 0 <= int(defect) < len(DEFECT_TYPES):
            raise ShopfloorInputError(f"defect code {defect} is invalid; allowed: 0..{len(DEFECT_TYPES) - 1}.")
        defect = DEFECT_TYPES[int(defect)]
    for name, value, choices in (("defect", defect, DEFECT_TYPES), ("part_type", part_type, PART_TYPES),
                                 ("material", material, MATERIALS)):
        if value is not None:
            _check_choice(name, value, choices)
    rules = [(item,) if isinstance(item, str) else tuple(item) for item in exclude]
    for _ in range(1000):
        p = part_type or PART_TYPES[rng.integers(len(PART_TYPES))]
        m = material or MATERIALS[rng.integers(len(MATERIALS))]
        c = "natural" if m in METALS else tuple(_COLOUR_RGB)[rng.integers(len(_COLOUR_RGB))]
        d = defect or DEFECT_TYPES[rng.integers(len(DEFECT_TYPES))]
        regions = valid_regions(p, d)
        r = regions[rng.integers(len(regions))] if regions else None
        values = {p, m, c, d, r}
        if not any(all(v in values for v in rule) for rule in rules):
            return PartSpec(p, m, c, d, r)
    raise ShopfloorInputError(f"sample_spec: exclude={rules} leaves nothing to sample with the values fixed.")


# --------------------------------------------------------------------------------------------------
# Geometry of the part types (local units: the part's outer radius is about 1)
# --------------------------------------------------------------------------------------------------
@dataclass
class _Geometry:
    outline: np.ndarray  # (n, 2) closed polygon, counter-clockwise
    holes: list[tuple[float, float, float, str]]  # x, y, radius, region
    texture: str  # "turned" (concentric lathe rings) or "linear" (brushed along x)
    region_of: Callable[[np.ndarray, np.ndarray, str], np.ndarray]  # (x, y, region) -> bool
    relief: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None  # (u, v, r) -> height, local units
    burr_min_r: float = 0.0  # burrs grow where the outline is at least this far from the centre (gear: tooth tips)


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ring(n: int, radius: float, angle0: float, hole_r: float, region: str) -> list[tuple[float, float, float, str]]:
    """``n`` holes evenly spaced on a circle."""
    step = 2 * math.pi / n
    angles = [angle0 + k * step for k in range(n)]
    return [(radius * math.cos(a), radius * math.sin(a), hole_r, region) for a in angles]


def _round_regions(centre_r: float, rim_r: float) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
    def region_of(x: np.ndarray, y: np.ndarray, region: str) -> np.ndarray:
        r2 = x * x + y * y
        if region == "centre":
            return r2 < centre_r**2
        return r2 > rim_r**2 if region == "rim" else np.zeros(r2.shape, bool)

    return region_of


def _build_gear(rng: np.random.Generator) -> _Geometry:
    p = rng.random(9)
    n_teeth = 10 + int(p[0] * 7)
    r_root = 0.8 + 0.06 * p[1]
    pitch = 2 * math.pi / n_teeth
    # per tooth: root, flank foot, tip land (2 points), flank foot: trapezoidal teeth
    offsets = np.array([-0.5, -0.27, -0.13, 0.13, 0.27]) * pitch
    radii = np.array([r_root, r_root, 1.0, 1.0, r_root])
    a = 2 * math.pi * p[2] + np.arange(n_teeth)[:, None] * pitch + offsets
    outline = np.stack([(radii * np.cos(a)).ravel(), (radii * np.sin(a)).ravel()], axis=1)
    r_bore = 0.12 + 0.04 * p[3]
    lightening = _ring(4 + int(p[4] * 2), 0.55 + 0.05 * p[5], 2 * math.pi * p[7], 0.08 + 0.025 * p[6], "centre")
    holes = [(0.0, 0.0, r_bore, "centre")] + lightening
    r_hub = r_bore + 0.08 + 0.04 * p[8]

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # raised hub around the bore
        return np.minimum(np.maximum((r_hub - r) * 25.0, 0.0), 1.0) * 0.07

    return _Geometry(outline, holes, "turned", _round_regions(0.44, 0.62), relief, burr_min_r=0.95)


def _build_plate(rng: np.random.Generator) -> _Geometry:
    p = rng.random(5)
    a, b = 0.8 + 0.08 * p[0], 0.5 + 0.14 * p[1]  # half width, half height
    rc = 0.1 + 0.08 * p[2]
    q = _unit_circle(48) * rc  # rounded corners: quarter circles of radius rc
    quarters = (q[0:13], q[12:25], q[24:37], np.concatenate([q[36:], q[:1]]))
    signs = ((1, 1), (-1, 1), (-1, -1), (1, -1))
    outline = np.concatenate([qq + (sx * (a - rc), sy * (b - rc)) for qq, (sx, sy) in zip(quarters, signs)])
    r_c, inset = 0.09 + 0.03 * p[3], 0.19 + 0.03 * p[4]
    holes = [(0.0, 0.0, 0.13 + 0.06 * p[3], "centre")]
    holes += [(sx * (a - inset), sy * (b - inset), r_c, "corner") for sx, sy in signs]

    def region_of(x: np.ndarray, y: np.ndarray, region: str) -> np.ndarray:
        ax, ay = np.abs(x), np.abs(y)
        corner = (ax > a - 0.42) & (ay > b - 0.4)
        if region == "corner":
            return corner
        if region == "edge":
            return ~corner & ((ax > a - 0.26) | (ay > b - 0.24))
        return (ax < 0.5 * a) & (ay < 0.55 * b) if region == "centre" else np.zeros_like(corner)

    return _Geometry(outline, holes, "linear", region_of)


def _build_bracket(rng: np.random.Generator) -> _Geometry:
    p = rng.random(3)
    w = 0.4 + 0.08 * p[0]  # leg width
    e = 0.7  # half extent: an L in the square [-e, e]^2, bend at (-e, e)
    outline = np.array([(-e, -e), (-e + w, -e), (-e + w, e - w), (e, e - w), (e, e), (-e, e)])  # counter-clockwise
    r_h, end = 0.1 + 0.03 * p[1], 0.2 + 0.05 * p[2]
    holes = [
        (-e + w / 2, e - w / 2, r_h, "corner"),
        (-e + w / 2, -e + end, r_h, "edge"),
        (e - end, e - w / 2, r_h, "edge"),
    ]
    j = -e + w + 0.12  # the bend square (plus a margin) is the "corner"

    def region_of(x: np.ndarray, y: np.ndarray, region: str) -> np.ndarray:
        corner = (x < j) & (y > -j)
        return corner if region == "corner" else (~corner if region == "edge" else np.zeros_like(corner))

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # a pressed rib across the bend
        d = np.abs(u + v) * 0.7071  # distance to the bend's diagonal
        on_rib = (u < -e + w + 0.04) & (v > e - w - 0.04)
        return np.maximum(0.05 - d * 0.5, 0.0) * on_rib

    return _Geometry(outline, holes, "linear", region_of, relief)


def _build_cap(rng: np.random.Generator) -> _Geometry:
    p = rng.random(6)
    r_out = 0.92 + 0.08 * p[0]
    outline = _unit_circle(96) * r_out
    vents = _ring(3 + int(p[2] * 2), 0.54 + 0.05 * p[3], 2 * math.pi * p[4], 0.08 + 0.025 * p[5], "centre")
    holes = [(0.0, 0.0, 0.12 + 0.04 * p[1], "centre")] + vents
    inv_dome2 = 1.0 / (0.8 * r_out) ** 2
    dome_h = 0.22 + 0.08 * p[5]

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # domed top inside a flat rim
        return np.maximum(1.0 - r * r * inv_dome2, 0.0) * dome_h

    return _Geometry(outline, holes, "turned", _round_regions(0.44, 0.66 * r_out), relief)


def _build_washer(rng: np.random.Generator) -> _Geometry:
    p = rng.random(2)
    r_out, r_in = 0.85 + 0.15 * p[0], 0.36 + 0.12 * p[1]
    outline = _unit_circle(96) * r_out
    mid = 0.5 * (r_out + r_in)
    k = math.pi / (r_out - r_in)

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # gently rounded ring
        return np.sin(np.minimum(np.maximum((r - r_in) * k, 0.0), math.pi)) * 0.1

    return _Geometry(outline, [(0.0, 0.0, r_in, "centre")], "turned", _round_regions(mid, mid), relief)


PART_BUILDERS: dict[str, Callable[[np.random.Generator], _Geometry]] = {
    "gear": _build_gear,
    "plate": _build_plate,
    "bracket": _build_bracket,
    "cap": _build_cap,
    "washer": _build_washer,
}


# --------------------------------------------------------------------------------------------------
# The canvas: pose, local coordinates and the layers a defect edits
# --------------------------------------------------------------------------------------------------
class _Canvas:
    """Scratch space of one render.

    Holds the part's coverage, drawn with Pillow at ``ss`` times the resolution and box-filtered down
    (anti-aliasing), and the layers a defect edits. Defect drawers read ``u``, ``v`` (local coordinates
    of the pixel centres, (size, size) float32), ``r``, ``geom``, ``scale_px`` (pixels per local unit),
    ``albedo_rgb`` and ``coverage()``.
    """

    def __init__(self, size: int, geom: _Geometry, cx: float, cy: float, angle: float, scale_px: float):
        self.size, self.geom = size, geom
        self.ss = 3 if size <= 96 else (2 if size <= 256 else 1)  # supersampling of rasterised shapes
        self.cx, self.cy, self.scale_px = cx, cy, scale_px
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        s = scale_px
        self._to_px_m = np.array([[s * self.cos, s * self.sin], [-s * self.sin, s * self.cos]])
        self._to_px_t = np.array([cx, cy])
        grid, grid_y = _pixel_grid(size), _pixel_grid_y(size)
        inv = 1.0 / scale_px
        a, b = np.float32(self.cos * inv), np.float32(self.sin * inv)
        dx, dy = grid - np.float32(cx), grid_y - np.float32(cy)
        self.u = dx * a + dy * b
        self.v = dy * a - dx * b
        self._r: np.ndarray | None = None
        self.albedo_rgb = np.full(3, 0.5)
        self.height: np.ndarray | None = None  # px, added to the surface height
        self.dark: np.ndarray | None = None  # 0..1, darkens the shaded colour
        self.whiten: np.ndarray | None = None  # 0..1, mixes the shaded colour towards light grey
        self.gloss: np.ndarray | None = None  # multiplier on the specular term
        self.tint: list[tuple[np.ndarray, np.ndarray]] = []  # (alpha, rgb) albedo mixes
        # the part's outline minus its holes
        self._big = Image.new("L", (size * self.ss, size * self.ss), 0)
        self._draw = ImageDraw.Draw(self._big)
        k = self.ss
        self._draw.polygon(self.to_px(geom.outline, k).ravel().tolist(), fill=255)
        if geom.holes:
            h = np.array([hole[:3] for hole in geom.holes])
            xy = self.to_px(h[:, :2], k)
            rad = h[:, 2:] * (scale_px * k)
            for box in np.concatenate([xy - rad, xy + rad], axis=1).tolist():
                self._draw.ellipse(box, fill=0)
        self._image: Image.Image | None = None
        self._coverage: np.ndarray | None = None

    @property
    def r(self) -> np.ndarray:
        """Local radius of each pixel centre (computed once)."""
        if self._r is None:
            self._r = np.sqrt(self.u * self.u + self.v * self.v)
        return self._r

    @property
    def albedo_luma(self) -> float:
        return float(self.albedo_rgb @ _LUMA)

    def to_px(self, pts: np.ndarray, k: float = 1.0) -> np.ndarray:
        """Local (..., 2) points -> pixel coordinates (..., 2), times ``k`` (the supersampling)."""
        px = pts @ self._to_px_m + self._to_px_t
        if k != 1.0:
            px *= k
        return px

    def draw_disc(self, xyr: tuple[float, float, float], fill: int) -> None:
        """Draw a local disc (x, y, radius) onto the coverage: fill 0 cuts a hole, 255 adds material."""
        k = self.ss
        s = self.scale_px * k
        x = self.cx * k + s * (self.cos * xyr[0] - self.sin * xyr[1])
        y = self.cy * k + s * (self.sin * xyr[0] + self.cos * xyr[1])
        rad = xyr[2] * s
        self._draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=fill)
        self._image = self._coverage = None

    def draw_polygons(self, polys: Iterable[np.ndarray]) -> None:
        """Add local polygons of material to the coverage."""
        for poly in polys:
            self._draw.polygon(self.to_px(poly, self.ss).ravel().tolist(), fill=255)
        self._image = self._coverage = None

    def coverage_image(self) -> Image.Image:
        """The coverage as an "L" image (size x size)."""
        if self._image is None:
            self._image = self._big.reduce(self.ss) if self.ss > 1 else self._big.copy()
        return self._image

    def coverage(self) -> np.ndarray:
        """Fraction of each pixel covered by the part, (size, size) float32 in [0, 1] (read-only use)."""
        if self._coverage is None:
            self._coverage = _array(self.coverage_image())
        return self._coverage

    def raster_lines(self, lines: Sequence[np.ndarray], widths: Sequence[float]) -> np.ndarray:
        """Anti-aliased coverage (size, size) in [0, 1] of local polylines with widths in local units."""
        k = self.ss
        img = Image.new("L", (self.size * k, self.size * k), 0)
        draw = ImageDraw.Draw(img)
        for line, w in zip(lines, widths):
            draw.line(self.to_px(line, k).ravel().tolist(), fill=255, width=max(1, int(round(w * self.scale_px * k))))
        return _array(img.reduce(k) if k > 1 else img)

    def on_part(self, pts: np.ndarray) -> np.ndarray:
        """Fraction of local points (..., n, 2) that land on the part's material, shape (...)."""
        px = self.to_px(pts).astype(np.int64)
        np.clip(px, 0, self.size - 1, out=px)  # the image border is background
        return np.count_nonzero(self.coverage()[px[..., 1], px[..., 0]] > 0.5, axis=-1) / pts.shape[-2]

    def add(self, name: str, layer: np.ndarray) -> None:
        """Add ``layer`` to the layer ``name`` ("height", "dark" or "whiten")."""
        old = getattr(self, name)
        setattr(self, name, layer if old is None else old + layer)

    def sample_point(self, region: str, rng: np.random.Generator, margin: float) -> np.ndarray:
        """A local point in ``region`` with the part's material all around it within ``margin``.

        Picks a pixel uniformly among those that qualify (the margin shrinks if none does).
        """
        in_region = self.geom.region_of(self.u, self.v, region)
        solid = self.coverage() > 0.9
        k = int(round(margin * self.scale_px))
        for k in (k, k // 2, 0):
            idx = np.flatnonzero(in_region & _erode(solid, k))
            if len(idx):
                break
        else:
            raise AssertionError(f"no point on the part in region {region!r}")  # geometry bug
        q = rng.random(3)
        i = idx[int(q[0] * len(idx))]
        return np.array([self.u.flat[i], self.v.flat[i]]) + (q[1:] - 0.5) / self.scale_px  # anywhere in the pixel


def _erode(mask: np.ndarray, k: int) -> np.ndarray:
    """Binary erosion of a (h, w) bool mask by a (2k + 1) square."""
    if k <= 0:
        return mask
    rows = mask.copy()
    for i in range(1, k + 1):
        rows[:, i:] &= mask[:, :-i]
        rows[:, :-i] &= mask[:, i:]
    out = rows.copy()
    for i in range(1, k + 1):
        out[i:] &= rows[:-i]
        out[:-i] &= rows[i:]
    return out


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> np.ndarray:
    """(size, size) float32 x coordinate of each pixel centre."""
    x = np.arange(size, dtype=np.float32) + 0.5
    return np.broadcast_to(x, (size, size)).copy()


@lru_cache(maxsize=8)
def _pixel_grid_y(size: int) -> np.ndarray:
    """(size, size) float32 y coordinate of each pixel centre."""
    return np.ascontiguousarray(_pixel_grid(size).T)


_NOISE_BANK_SIZE = 512


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed (512, 512) field of standard normal float32 values; sensor noise is a window of it."""
    return np.random.default_rng(0x5E75).standard_normal((_NOISE_BANK_SIZE, _NOISE_BANK_SIZE), dtype=np.float32)


def _sensor_noise(size: int, draws: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """(size, size) standard normal noise: a randomly placed, flipped and transposed window of the
    noise bank (3 uniform ``draws``), 4x cheaper than drawing it here; fresh draws above 448 px."""
    if size > _NOISE_BANK_SIZE - 64:
        return rng.standard_normal((size, size), dtype=np.float32)
    span = _NOISE_BANK_SIZE - size
    x0, y0 = int(draws[0] * span), int(draws[1] * span)
    window = _noise_bank()[y0 : y0 + size, x0 : x0 + size]
    k = int(draws[2] * 8)
    if k & 1:
        window = window[::-1]
    if k & 2:
        window = window[:, ::-1]
    return window.T if k & 4 else window


# --------------------------------------------------------------------------------------------------
# Defects: each edits the canvas and returns its boolean mask (clipped to the part afterwards)
# --------------------------------------------------------------------------------------------------
def _walk(start: np.ndarray, heading: float | np.ndarray, n_steps: int, step: float, wiggle: float,
          rng: np.random.Generator) -> np.ndarray:
    """Jagged polylines (..., n_steps + 1, 2): steps whose direction random-walks by ``wiggle`` radians.

    ``heading`` may be an array: one walk per heading.
    """
    heading = np.asarray(heading, dtype=float)[..., None]
    turns = heading + np.cumsum(rng.standard_normal(heading.shape[:-1] + (n_steps,)) * wiggle, -1)
    lengths = step * (0.7 + 0.6 * rng.random(turns.shape))
    steps = np.stack([np.cos(turns) * lengths, np.sin(turns) * lengths], -1)
    path = np.cumsum(steps, axis=-2) + start
    return np.concatenate([np.broadcast_to(start, path.shape[:-2] + (1, 2)), path], -2)


_STROKE_T = np.linspace(-0.5, 0.5, 12)[:, None]  # stroke parameter along a scratch


def _draw_scratch(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.08)
    q = rng.random(7)
    length = 0.6 + 0.45 * q[0]
    bend = (q[2] - 0.5) * 0.4 * length  # quadratic Bezier: a straight or gently curved stroke
    t = _STROKE_T
    headings = math.pi * (q[1] + np.arange(4) / 4)  # four tries; keep the one most on the part
    d = np.stack([np.cos(headings), np.sin(headings)], 1)[:, None, :]  # (4, 1, 2)
    n = np.concatenate([-d[..., 1:], d[..., :1]], -1)
    strokes = centre + t * length * d + (1.0 - 4.0 * t * t) * bend * n  # (4, 12, 2)
    best = int(np.argmax(c.on_part(strokes)))
    main, n = strokes[best], n[best, 0]
    width = 0.045 + 0.025 * q[3]
    lines, widths = [main], [width]
    if q[4] < 0.35:  # a fainter parallel twin
        lines.append(main[3:-2] + (0.08 + 0.05 * q[5]) * n)
        widths.append(width * 0.8)
    cov = c.raster_lines(lines, widths)
    strength = 0.65 + 0.35 * q[6]
    if c.albedo_luma < 0.6:  # exposed material reads lighter ...
        c.add("whiten", cov * strength)
    else:  # ... except on light parts, where the groove's shadow shows
        c.add("dark", cov * (0.6 * strength))
    c.add("height", cov * (-0.03 * c.scale_px))
    c.gloss = 1.0 + cov
    return cov > 0.3


def _draw_crack(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    start = c.sample_point(region, rng, margin=0.05)
    q = rng.random(5)
    if region == "centre":
        heading = 2 * math.pi * q[0]
    else:  # from near the outline, roughly towards the centre
        heading = math.atan2(-start[1], -start[0]) + (q[0] - 0.5) * 1.8
    n_steps = 8 + int(q[1] * 4)
    walks = _walk(start, heading + np.arange(4) * (math.pi / 2), n_steps, 0.075 + 0.025 * q[2], 0.45, rng)
    main = walks[int(np.argmax(c.on_part(walks)))]  # four tries; keep the one most on the part
    width = 0.055 + 0.025 * q[3]
    lines, widths = [main], [width]
    n_branches = 1 + int(q[4] * 3)
    b = rng.random((n_branches, 3))
    for k_frac, side, n_frac in b:  # branches fork off at a sharp angle
        k = 1 + int(k_frac * (n_steps - 1))
        seg = main[k] - main[k - 1]
        turn = (0.5 + 0.6 * abs(side - 0.5) * 2) * (1 if side > 0.5 else -1)
        lines.append(_walk(main[k], math.atan2(seg[1], seg[0]) + turn, 2 + int(n_frac * 3), 0.06, 0.5, rng))
        widths.append(width * 0.75)
    cov = c.raster_lines(lines, widths)
    depth = 0.6 + 0.25 * float(rng.random())
    if c.albedo_luma < 0.2:  # stress whitening on dark parts
        c.add("whiten", cov * (depth - 0.1))
    else:
        c.add("dark", cov * depth)
    c.add("height", cov * (-0.012 * c.scale_px))
    return cov > 0.3


def _draw_dent(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.1)
    q = rng.random(2)
    radius = 0.22 + 0.1 * q[0]
    d2 = ((c.u - np.float32(centre[0])) ** 2 + (c.v - np.float32(centre[1])) ** 2) * np.float32(1.0 / radius**2)
    bowl = np.maximum(1.0 - d2, 0.0)
    bowl *= bowl  # smooth rim, deepest in the middle
    c.add("height", bowl * np.float32(-(0.55 + 0.3 * q[1]) * radius * c.scale_px))
    return d2 < 0.8**2


# rust, oil, residue, heat tint, grime
_STAIN_RGB = np.array([(0.45, 0.2, 0.06), (0.1, 0.08, 0.06), (0.95, 0.93, 0.85), (0.3, 0.24, 0.45), (0.55, 0.42, 0.1)])


def _draw_stain(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.08)
    q = rng.random(3)
    radius = 0.26 + 0.14 * q[0]
    d = np.sqrt((c.u - np.float32(centre[0])) ** 2 + (c.v - np.float32(centre[1])) ** 2) * np.float32(1.0 / radius)
    edge_noise = _smooth_noise(rng.standard_normal((6, 6)), c.size)  # a ragged outline ...
    blotch = _smooth_noise(rng.standard_normal((11, 11)), c.size)  # ... and an uneven inside
    alpha = np.minimum(np.maximum((1.0 - d - 0.2 * edge_noise) * 5.0, 0.0), 1.0)
    alpha *= np.minimum(np.maximum(0.85 + 0.2 * blotch, 0.6), 1.0)
    far = np.flatnonzero(np.abs(_STAIN_RGB @ _LUMA - c.albedo_luma) > 0.3)  # colours that stand out
    rgb = _STAIN_RGB[far[int(q[1] * len(far))]] if len(far) else _STAIN_RGB[2]
    alpha *= np.float32(0.8 + 0.2 * q[2])
    c.tint.append((alpha, rgb))
    c.gloss = 1.0 - 0.7 * alpha  # matte
    return alpha > 0.12


def _draw_missing_hole(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    idx = [i for i, h in enumerate(c.geom.holes) if h[3] == region]
    assert idx, f"no hole in region {region!r}"
    before = c.coverage()
    c.draw_disc(c.geom.holes.pop(idx[int(rng.random() * len(idx))])[:3], 255)  # the hole is not punched
    return c.coverage() - before > 0.25


def _draw_burr(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    closed = np.concatenate([c.geom.outline, c.geom.outline[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    total = arc[-1]
    # a spot on the outline inside the region, found on an even resampling of the outline
    s = np.linspace(0.0, total, 200, endpoint=False)
    x, y = np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])
    ok = np.flatnonzero(c.geom.region_of(x, y, region) & (x * x + y * y >= c.geom.burr_min_r**2))
    assert len(ok), f"no outline in region {region!r}"
    q = rng.random(4)
    n_spikes = 5 + int(q[2] * 5)
    spikes = rng.random((n_spikes, 6))
    t = (s[ok[int(q[0] * len(ok))]] + (np.sort(spikes[:, 0]) - 0.5) * (0.25 + 0.2 * q[1])) % total
    t2 = (t + 0.01) % total
    p = np.stack([np.interp(t, arc, closed[:, 0]), np.interp(t, arc, closed[:, 1])], 1)
    p2 = np.stack([np.interp(t2, arc, closed[:, 0]), np.interp(t2, arc, closed[:, 1])], 1)
    tan = (p2 - p) / np.maximum(np.linalg.norm(p2 - p, axis=1, keepdims=True), 1e-9)
    out = np.stack([tan[:, 1], -tan[:, 0]], 1)  # outward normal of a counter-clockwise outline
    half = 0.03 + 0.025 * spikes[:, 1:2]
    length = 0.14 + 0.12 * spikes[:, 2:3]
    tip = p + out * length + tan * ((spikes[:, 3:4] - 0.5) * 0.14)
    kink = p + out * length * (0.35 + 0.3 * spikes[:, 4:5]) + tan * half * (0.3 + spikes[:, 5:6])  # jagged flank
    base = out * 0.03
    before = c.coverage()
    c.draw_polygons(np.stack([p - tan * half - base, tip, kink, p + tan * half - base], 1))
    grown = c.coverage() - before
    # torn metal catches the light; torn plastic whitens
    whiten = 0.3 + 0.3 * q[3] + (0.2 if c.albedo_luma < 0.2 else 0.0)
    c.add("whiten", grown * np.float32(whiten))
    return grown > 0.3


DEFECT_DRAWERS: dict[str, Callable[[_Canvas, str, np.random.Generator], np.ndarray]] = {
    "scratch": _draw_scratch,
    "crack": _draw_crack,
    "dent": _draw_dent,
    "stain": _draw_stain,
    "missing_hole": _draw_missing_hole,
    "burr": _draw_burr,
}
assert set(DEFECT_DRAWERS) == set(DEFECT_TYPES[1:]), "every defect type needs a drawer"
assert set(PART_BUILDERS) == set(PART_TYPES) == set(_PART_REGIONS), "every part type needs a builder and regions"


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def render_part(spec: PartSpec, seed: int, size: int = 64, shift: RenderShift = NOMINAL) -> RenderedPart:
    """Render one part.

    Parameters
    ----------
    spec : what to draw.
    seed : non-negative int; the same (spec, seed, size, shift) gives a byte-identical image.
    size : image side in pixels, 16..1024.
    shift : imaging conditions.

    Returns
    -------
    RenderedPart with ``image`` (size, size, 3) uint8 and ``mask`` (size, size) bool.
    """
    if not isinstance(spec, PartSpec):
        raise ShopfloorInputError(f"spec must be a PartSpec, got {type(spec).__name__}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ShopfloorInputError(f"seed={seed!r} is invalid; allowed: an int >= 0.")
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 1024:
        raise ShopfloorInputError(f"size={size!r} is invalid; allowed: an int in 16..1024.")
    size, seed = int(size), int(seed)
    f32 = np.float32
    rng = np.random.default_rng(seed)

    # 1. scene draws: a fixed number, independent of the defect, the shift and the size
    scene = rng.random(16).tolist()  # pose 0-3, light 4-6, background 7-12, sensor noise 13-15
    geom = PART_BUILDERS[spec.part_type](rng)
    normals = rng.standard_normal(1024 + 64 + 144 + 3).astype(f32)
    grain_table, cloud, peel = normals[:1024], normals[1024:1088].reshape(8, 8), normals[1088:1232].reshape(12, 12)
    defect_seed = int(rng.integers(2**63))

    # 2. pose, local coordinates, albedo
    lo, hi = shift.rotation_range_deg
    angle = math.radians(lo + (hi - lo) * scene[0])
    lo, hi = shift.scale_range
    scale_px = 0.36 * size * (lo + (hi - lo) * scene[1])
    cx = size * (0.5 + shift.position_jitter * (2 * scene[2] - 1))
    cy = size * (0.5 + shift.position_jitter * (2 * scene[3] - 1))
    c = _Canvas(size, geom, cx, cy, angle, scale_px)
    mat = _MATERIAL[spec.material]
    jitter = normals[1232:].tolist()  # +-2 % albedo variation between parts
    base_rgb = [min(x * (1.0 + 0.02 * j), 1.0) for x, j in zip(mat.rgb or _COLOUR_RGB[spec.colour], jitter)]
    c.albedo_rgb = np.array(base_rgb)

    # 3. the defect edits geometry and layers before anything is rasterised
    mask = None
    if spec.defect != "good":
        mask = DEFECT_DRAWERS[spec.defect](c, spec.defect_region, np.random.default_rng(defect_seed))

    # 4. coverage, and a softened copy for the bevel and the cast shadow
    coverage = c.coverage()
    # the bevel: rounded edges from blurred coverage (sigma ~0.7 px at 64 px); without the blur the
    # anti-aliased staircase of slanted edges sparkles under glossy highlights
    if size <= 96:
        soft = _soften(coverage)
    else:
        soft = _array(c.coverage_image().filter(ImageFilter.GaussianBlur(0.7 * size / 64)))

    # 5. surface height (px) and its gradient (central differences, i.e. twice the slope)
    height_px = f32(0.11 * scale_px)  # the bevel
    if geom.relief is not None:
        height_px = height_px + geom.relief(c.u, c.v, c.r) * f32(scale_px)
    if mat.orange_peel_px:
        height_px = height_px + _smooth_noise(peel, size) * f32(mat.orange_peel_px * size / 64)
    if c.height is not None:
        height_px = height_px + c.height
    height = soft * height_px
    gx = np.zeros_like(height)
    gy = np.zeros_like(height)
    np.subtract(height[:, 2:], height[:, :-2], out=gx[:, 1:-1])
    np.subtract(height[2:], height[:-2], out=gy[1:-1])
    inv_n = 1.0 / np.sqrt(gx * gx + gy * gy + 4.0)

    # 6. shading: directional light, Lambert + Blinn-Phong, orthographic camera looking down
    az = math.radians(shift.light_azimuth_deg + shift.light_azimuth_jitter_deg * (2 * scene[4] - 1))
    el = math.radians(shift.light_elevation_deg)
    lx, ly, lz = math.cos(az) * math.cos(el), -math.sin(az) * math.cos(el), math.sin(el)
    hn = 1.0 / math.sqrt(lx * lx + ly * ly + (lz + 1.0) ** 2)  # half vector = normalise(L + view)
    tilt = gx * f32(lx) + gy * f32(ly)  # its xy part is parallel to L's
    diffuse = np.maximum(f32(2 * lz) - tilt, 0.0) * inv_n
    specular = np.maximum(f32(2 * (lz + 1.0) * hn) - tilt * f32(hn), 0.0) * inv_n
    for _ in range(mat.shininess_log2):
        specular *= specular
    specular *= f32(mat.specular)
    if c.gloss is not None:
        specular *= c.gloss
    lit = diffuse * f32(mat.diffuse) + f32(mat.ambient)
    if c.dark is not None:
        keep = 1.0 - np.minimum(c.dark, 0.95)
        lit *= keep
        specular *= keep

    # 7. colour: a sum of (weight map x rgb) terms
    cloud_px = _smooth_noise(cloud, size)
    grain_at = (c.r if geom.texture == "turned" else c.v + 4.0) * f32(scale_px)  # 1 px pitch
    grain = grain_table[grain_at.astype(np.int32) & 1023] * f32(mat.grain) + cloud_px * f32(0.03)
    part_cov = coverage
    if c.whiten is not None:
        w = np.minimum(c.whiten, 1.0)
        part_cov = coverage * (1.0 - w)
    body = part_cov * lit * (1.0 + grain)
    terms: list[tuple[np.ndarray, Sequence[float]]] = []  # (weight map, rgb)
    for alpha, rgb in c.tint:
        terms.append((body * alpha, rgb))
        body = body * (1.0 - alpha)
    spec_rgb = [(1.0 - mat.metallic) + mat.metallic * x / max(base_rgb) for x in base_rgb]
    terms += [(body, base_rgb), (part_cov * specular, spec_rgb)]
    if c.whiten is not None:
        terms.append((coverage * w, (0.8, 0.8, 0.8)))
    var = shift.background_variation
    tone = shift.background_tone * (1.0 + 0.5 * var * (2 * scene[7] - 1))
    bg_rgb = [min(tone * (1.0 + 0.25 * var * (2 * x - 1)), 1.0) for x in scene[8:11]]
    g_ang, g = 2 * math.pi * scene[11], var * 1.2 * scene[12] / size
    ramp = _pixel_grid(size) * f32(g * math.cos(g_ang)) + _pixel_grid_y(size) * f32(g * math.sin(g_ang))
    ramp += f32(1.0 - 0.5 * g * size * (math.cos(g_ang) + math.sin(g_ang)))  # mean 1
    ramp += cloud_px[::-1, ::-1] * f32(0.04 + 0.2 * var)
    shadow = _shift_image(soft, -lx / lz * 0.07 * size, -ly / lz * 0.07 * size)
    terms.append(((1.0 - coverage) * (ramp - 0.45 * shadow), bg_rgb))
    gain = shift.brightness * (1.0 + shift.brightness_jitter * (2 * scene[5] - 1))
    kelvin = shift.colour_temperature_k + shift.colour_temperature_jitter_k * (2 * scene[6] - 1)
    light_rgb = [x * gain * 255.0 for x in _kelvin_rgb(int(round(kelvin / 10.0)) * 10)]
    mix = [[f32(a * b) for a, b in zip(np.asarray(rgb).tolist(), light_rgb)] for _, rgb in terms]  # (n_terms, 3)
    img = np.empty((3, size, size), f32)  # channels first: contiguous per-channel sums are ~4x faster here
    for ch in range(3):
        np.multiply(terms[0][0], mix[0][ch], out=img[ch])
        for (weight, _), m in zip(terms[1:], mix[1:]):
            img[ch] += weight * m[ch]

    # 8. camera: blur and sensor noise (luminance noise, the same on the three channels)
    if shift.blur_sigma_px > 0:
        img = _blur(img, shift.blur_sigma_px)
    if shift.noise_std > 0:  # (+ 0.5 rounds in the cast below)
        img += _sensor_noise(size, scene[13:16], rng) * f32(shift.noise_std * 255.0) + f32(0.5)
    else:
        img += 0.5
    np.maximum(img, 0.0, out=img)
    np.minimum(img, 255.0, out=img)
    image = img.transpose(1, 2, 0).astype(np.uint8)

    mask = np.zeros((size, size), bool) if mask is None else mask & (coverage > 0.5)
    image.flags.writeable = False
    mask.flags.writeable = False
    return RenderedPart(image=image, mask=mask, spec=spec, seed=seed)


def render_batch(
    specs: Sequence[PartSpec], seeds: Sequence[int], size: int = 64, shift: RenderShift = NOMINAL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render several parts.

    Returns
    -------
    images : np.ndarray, shape = (n, size, size, 3), uint8
    labels : np.ndarray, shape = (n,), int64, defect codes (index in ``DEFECT_TYPES``)
    masks : np.ndarray, shape = (n, size, size), bool
    """
    if len(specs) != len(seeds):
        raise ShopfloorInputError(f"render_batch got {len(specs)} specs and {len(seeds)} seeds; they must match.")
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 1024:
        raise ShopfloorInputError(f"size={size!r} is invalid; allowed: an int in 16..1024.")
    n = len(specs)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), bool)
    labels = np.empty(n, np.int64)
    for i, (spec, seed) in enumerate(zip(specs, seeds)):
        part = render_part(spec, seed, size, shift)
        images[i], masks[i], labels[i] = part.image, part.mask, spec.defect_code
    return images, labels, masks


def contact_sheet(size: int = 128, seed: int = 0, shift: RenderShift = NOMINAL) -> np.ndarray:
    """A grid image: one row per part type, one column per defect type, materials cycling.

    Returns
    -------
    np.ndarray, shape = (n_parts * size, n_defects * size, 3), uint8
    """
    sheet = np.zeros((len(PART_TYPES) * size, len(DEFECT_TYPES) * size, 3), np.uint8)
    looks = [("steel", "natural"), ("brass", "natural"), ("plastic", "blue"), ("aluminium", "natural"),
             ("painted", "red"), ("copper", "natural"), ("plastic", "black"), ("painted", "yellow")]
    for i, part_type in enumerate(PART_TYPES):
        material, colour = looks[i % len(looks)]
        for j, defect in enumerate(DEFECT_TYPES):
            regions = valid_regions(part_type, defect)
            region = regions[(i + j) % len(regions)] if regions else None
            spec = PartSpec(part_type, material, colour, defect, region)
            sheet[i * size : (i + 1) * size, j * size : (j + 1) * size] = render_part(spec, seed + i, size, shift).image
    return sheet


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, edges clamped."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).astype(np.float32)
    lead = [(0, 0)] * (a.ndim - 2)
    n = a.shape[-1]
    p = np.pad(a, lead + [(radius, radius), (0, 0)], mode="edge")
    out = p[..., :n, :] * k[0]
    for i in range(1, 2 * radius + 1):
        out += p[..., i : i + n, :] * k[i]
    p = np.pad(out, lead + [(0, 0), (radius, radius)], mode="edge")
    out = p[..., :n] * k[0]
    for i in range(1, 2 * radius + 1):
        out += p[..., i : i + n] * k[i]
    return out


def _soften(a: np.ndarray) -> np.ndarray:
    """One [1, 2, 1] / 4 binomial pass along both axes (sigma 0.71 px), zero outside."""
    b = a * 0.5
    b[1:] += a[:-1] * 0.25
    b[:-1] += a[1:] * 0.25
    out = b * 0.5
    out[:, 1:] += b[:, :-1] * 0.25
    out[:, :-1] += b[:, 1:] * 0.25
    return out


def _array(img: Image.Image) -> np.ndarray:
    """An "L" image as a float32 array in [0, 1]."""
    a = np.frombuffer(img.tobytes(), np.uint8).reshape(img.size[1], img.size[0]).astype(np.float32)
    a *= 1 / 255
    return a


def _smooth_noise(cells: np.ndarray, size: int) -> np.ndarray:
    """Smooth random field (size, size) float32 from a small (n, n) grid of values (cubic B-spline)."""
    m = _spline_matrix(cells.shape[0], size)
    return m @ cells.astype(np.float32) @ m.T


@lru_cache(maxsize=32)
def _spline_matrix(n_cells: int, size: int) -> np.ndarray:
    """(size, n_cells) cubic B-spline weights, rows normalised then scaled so the field's std is ~1."""
    t = (np.arange(size) + 0.5) / size * (n_cells - 1)  # position in cell units
    d = np.abs(t[:, None] - np.arange(n_cells)[None, :])
    w = np.where(d < 1, 2 / 3 - d**2 + d**3 / 2, np.where(d < 2, (2 - d) ** 3 / 6, 0.0))
    w /= w.sum(1, keepdims=True)
    w *= 1.6  # B-spline smoothing shrinks the variance; bring the std back near 1
    return w.astype(np.float32)


def _shift_image(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a 2-D array by whole pixels (rounded), filling with zeros."""
    ix, iy = int(round(dx)), int(round(dy))
    out = np.zeros_like(a)
    h, w = a.shape
    dst = (slice(max(iy, 0), h + min(iy, 0)), slice(max(ix, 0), w + min(ix, 0)))
    out[dst] = a[max(-iy, 0) : h - max(iy, 0), max(-ix, 0) : w - max(ix, 0)]
    return out


@lru_cache(maxsize=256)
def _kelvin_rgb(kelvin_rounded: int) -> tuple[float, float, float]:
    """Light colour at a colour temperature, relative to 6500 K, at equal luminance."""
    def raw(k: float) -> np.ndarray:  # Tanner Helland's fit of the Planckian locus, channels in 0..1
        t = k / 100.0
        r = 1.0 if t <= 66 else min(1.0, 1.292936 * (t - 60) ** -0.1332047592)
        g = 0.3900815788 * math.log(t) - 0.6318414438 if t <= 66 else 1.129890861 * (t - 60) ** -0.0755148492
        b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.5432067891 * math.log(t - 10) - 1.19625408914)
        return np.clip(np.array([r, g, b]), 0.0, 1.0)

    rgb = raw(kelvin_rounded) / raw(6500.0)
    rgb = rgb / float(rgb @ _LUMA)  # keep the luminance, change only the colour
    return tuple(float(x) for x in rgb)


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Write a contact sheet of part types x defects; time the renderer.")
    parser.add_argument("--out", default="/tmp/parts_sheet.png")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--shifted", action="store_true", help="render under SHIFTED instead of NOMINAL")
    args = parser.parse_args()
    Image.fromarray(contact_sheet(args.size, shift=SHIFTED if args.shifted else NOMINAL)).save(args.out)
    print(f"wrote {args.out}")
    spec_rng = np.random.default_rng(0)
    specs = [sample_spec(spec_rng) for _ in range(300)]
    for px in (64, 128):
        t0 = time.perf_counter()
        for i, s in enumerate(specs):
            render_part(s, i, px)
        print(f"{px} px: {(time.perf_counter() - t0) / len(specs) * 1e3:.2f} ms per image")
