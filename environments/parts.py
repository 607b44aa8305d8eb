"""Procedural renderer of inspected parts: the inspection station's camera.

Each call draws one part, seen from above on a conveyor, with numpy and Pillow's ImageDraw only.
It is fast enough to render training sets on the fly: about 1 ms for a 64 x 64 image on one CPU core
(run ``python -m environments.parts`` for the numbers on this machine).

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
imaging         point light (direction, brightness, colour temperature), cast shadow, background,
                Gaussian blur and sensor noise, all set by ``RenderShift``
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
geometry, surface texture) is drawn first with a fixed number of draws that depend on neither the
defect nor the ``RenderShift`` nor the image size; the defect then draws from its own generator,
seeded from the scene generator. So for one seed the defective part and its good twin are the same
part in the same pose, and a shifted render shows the same part and defect under other conditions.

Extending
---------
- A new part type: write ``_build_<name>(rng) -> _Geometry`` (outline polygon, holes with their
  region, texture kind, optional height relief, a region classifier), add it to ``PART_BUILDERS``
  and ``PART_TYPES``, and its regions to ``_PART_REGIONS``.
- A new defect type: write ``_draw_<name>(canvas, region, rng) -> np.ndarray`` (it edits the
  canvas layers and returns the defect's boolean mask), add it to ``DEFECT_DRAWERS`` and append the
  name to the end of ``DEFECT_TYPES`` (integer codes stay stable). A surface defect is valid in every
  region of a part's surface; a defect tied to holes or to the outline gets an entry in
  ``_PART_REGIONS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from environments.errors import ShopfloorInputError

PART_TYPES: tuple[str, ...] = ("gear", "plate", "bracket", "cap", "washer")
METALS: tuple[str, ...] = ("steel", "aluminium", "brass", "copper")
MATERIALS: tuple[str, ...] = METALS + ("plastic", "painted")
COLOURS: tuple[str, ...] = ("natural", "red", "blue", "green", "yellow", "orange", "black", "grey", "white")
DEFECT_TYPES: tuple[str, ...] = ("good", "scratch", "crack", "dent", "stain", "missing_hole", "burr")
REGIONS: tuple[str, ...] = ("centre", "rim", "edge", "corner")

# Regions per part type: "surface" is where scratches, cracks, dents and stains may sit; other keys
# restrict a defect to where the part has what it needs (holes for missing_hole, outline for burr).
_PART_REGIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "gear": {"surface": ("centre", "rim"), "missing_hole": ("centre",), "burr": ("rim",)},
    "plate": {"surface": ("centre", "edge", "corner"), "missing_hole": ("centre", "corner"), "burr": ("edge", "corner")},
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
    "steel": _Material((0.56, 0.58, 0.62), 0.22, 0.55, 0.70, 4, 0.35, 0.07),
    "aluminium": _Material((0.78, 0.79, 0.81), 0.28, 0.58, 0.45, 3, 0.25, 0.05),
    "brass": _Material((0.76, 0.58, 0.24), 0.22, 0.55, 0.75, 4, 0.85, 0.06),
    "copper": _Material((0.74, 0.40, 0.25), 0.22, 0.55, 0.70, 4, 0.85, 0.06),
    "plastic": _Material(None, 0.30, 0.70, 0.22, 5, 0.0, 0.012),
    "painted": _Material(None, 0.26, 0.66, 0.55, 6, 0.0, 0.015, orange_peel_px=0.35),
}


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
    """Sensor noise, Gaussian per pixel and channel, standard deviation as a fraction of full scale."""
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
    texture: str  # "turned" (concentric, lathe) or "linear" (brushed along x)
    region_of: Callable[[np.ndarray, np.ndarray, str], np.ndarray]  # (x, y, region) -> bool
    relief: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None  # (u, v, r) -> height, local units
    extra_polys: list[np.ndarray] = field(default_factory=list)  # added material (burrs)


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _round_regions(centre_r: float, rim_r: float) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
    def region_of(x: np.ndarray, y: np.ndarray, region: str) -> np.ndarray:
        r = np.hypot(x, y)
        return r < centre_r if region == "centre" else (r > rim_r if region == "rim" else np.zeros_like(r, bool))

    return region_of


def _build_gear(rng: np.random.Generator) -> _Geometry:
    n_teeth = int(rng.integers(10, 17))
    r_root = rng.uniform(0.8, 0.86)
    phase = rng.uniform(0, 2 * np.pi)
    pitch = 2 * np.pi / n_teeth
    # per tooth: root, flank up, tip land (2 points), flank down; trapezoidal teeth
    offsets = np.array([-0.5, -0.27, -0.13, 0.13, 0.27]) * pitch
    radii = np.array([r_root, r_root, 1.0, 1.0, r_root])
    a = phase + np.arange(n_teeth)[:, None] * pitch + offsets[None, :]
    rr = np.broadcast_to(radii, a.shape)
    outline = np.stack([(rr * np.cos(a)).ravel(), (rr * np.sin(a)).ravel()], axis=1)
    r_bore = rng.uniform(0.14, 0.2)
    n_holes = int(rng.integers(4, 7))
    r_ring, r_hole = rng.uniform(0.47, 0.53), rng.uniform(0.1, 0.13)
    a0 = rng.uniform(0, 2 * np.pi)
    holes = [(0.0, 0.0, r_bore, "centre")] + [
        (r_ring * math.cos(a0 + k * 2 * np.pi / n_holes), r_ring * math.sin(a0 + k * 2 * np.pi / n_holes), r_hole, "centre")
        for k in range(n_holes)
    ]
    r_hub = r_bore + rng.uniform(0.08, 0.12)

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # raised hub around the bore
        return np.clip((r_hub - r) * 25.0, 0.0, 1.0) * 0.07

    return _Geometry(outline, holes, "turned", _round_regions(0.42, 0.6), relief)


def _build_plate(rng: np.random.Generator) -> _Geometry:
    a, b = rng.uniform(0.8, 0.88), rng.uniform(0.5, 0.64)
    rc = rng.uniform(0.1, 0.18)
    q = _unit_circle(48) * rc  # rounded corners: quarter circles of radius rc
    pts = []
    for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        quarter = q[k * 12 : k * 12 + 13] if k < 3 else np.concatenate([q[36:], q[:1]])
        pts.append(quarter + np.array([sx * (a - rc), sy * (b - rc)]))
    outline = np.concatenate(pts)
    r_c, inset = rng.uniform(0.09, 0.12), rng.uniform(0.19, 0.22)
    holes = [(sx * (a - inset), sy * (b - inset), r_c, "corner") for sx in (1, -1) for sy in (1, -1)]
    holes.insert(0, (0.0, 0.0, rng.uniform(0.13, 0.19), "centre"))

    def region_of(x: np.ndarray, y: np.ndarray, region: str) -> np.ndarray:
        ax, ay = np.abs(x), np.abs(y)
        corner = (ax > a - 0.36) & (ay > b - 0.36)
        if region == "corner":
            return corner
        if region == "edge":
            return ~corner & ((ax > a - 0.24) | (ay > b - 0.24))
        return (ax < 0.5 * a) & (ay < 0.55 * b) if region == "centre" else np.zeros_like(corner)

    return _Geometry(outline, holes, "linear", region_of)


def _build_bracket(rng: np.random.Generator) -> _Geometry:
    w = rng.uniform(0.4, 0.48)  # leg width
    e = 0.7  # half extent
    outline = np.array([(-e, -e), (-e + w, -e), (-e + w, e - w), (e, e - w), (e, e), (-e, e)])[::-1].copy()
    r_h = rng.uniform(0.1, 0.13)
    end = rng.uniform(0.2, 0.25)
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
        d = np.abs((u + e) - (e - v)) * 0.7071  # distance to the bend's diagonal
        on_rib = (u < -e + w + 0.05) & (v > e - w - 0.05)
        return np.where(on_rib, np.clip(0.05 - d * 0.5, 0.0, None), 0.0)

    return _Geometry(outline, holes, "linear", region_of, relief)


def _build_cap(rng: np.random.Generator) -> _Geometry:
    r_out = rng.uniform(0.92, 1.0)
    outline = _unit_circle(96) * r_out
    n_vents = int(rng.integers(3, 5))
    r_ring, r_vent = rng.uniform(0.44, 0.5), rng.uniform(0.09, 0.11)
    a0 = rng.uniform(0, 2 * np.pi)
    holes = [(0.0, 0.0, rng.uniform(0.12, 0.16), "centre")] + [
        (r_ring * math.cos(a0 + k * 2 * np.pi / n_vents), r_ring * math.sin(a0 + k * 2 * np.pi / n_vents), r_vent, "centre")
        for k in range(n_vents)
    ]
    r_dome = 0.8 * r_out
    dome_h = rng.uniform(0.22, 0.3)

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # domed top inside a flat rim
        return np.clip(1.0 - (r * (1.0 / r_dome)) ** 2, 0.0, None) * dome_h

    return _Geometry(outline, holes, "turned", _round_regions(0.4, 0.62 * r_out), relief)


def _build_washer(rng: np.random.Generator) -> _Geometry:
    r_out, r_in = rng.uniform(0.85, 1.0), rng.uniform(0.36, 0.48)
    outline = _unit_circle(96) * r_out
    mid = 0.5 * (r_out + r_in)

    def relief(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:  # gently rounded ring
        return np.sin(np.clip((r - r_in) * (np.pi / (r_out - r_in)), 0.0, np.pi)) * 0.1

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
    """Scratch space of one render. Defect drawers read ``u``, ``v`` (local coordinates of the pixel
    centres), ``geom``, ``albedo_luma`` and edit the layers below (all (size, size) float32 or None)."""

    def __init__(self, size: int, geom: _Geometry, cx: float, cy: float, angle: float, scale_px: float):
        self.size, self.geom = size, geom
        self.ss = 4 if size <= 64 else (2 if size <= 256 else 1)  # supersampling of rasterised shapes
        self.cx, self.cy, self.scale_px = cx, cy, scale_px
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        grid = _pixel_grid(size)
        dx, dy = grid - cx, grid - cy  # grid is the x coordinate per column; its transpose gives y
        dy = dy.T
        inv = 1.0 / scale_px
        self.u = (self.cos * dx + self.sin * dy) * inv
        self.v = (self.cos * dy - self.sin * dx) * inv
        self.albedo_luma = 0.5
        self.height: np.ndarray | None = None  # px, added to the surface height
        self.dark: np.ndarray | None = None  # 0..1, darkens the shaded colour
        self.whiten: np.ndarray | None = None  # 0..1, mixes the shaded colour towards light grey
        self.gloss: np.ndarray | None = None  # multiplier on the specular term
        self.tint: list[tuple[np.ndarray, np.ndarray]] = []  # (alpha, rgb) albedo mixes
        self.deferred_mask: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (coverage, base) -> mask

    def to_px(self, pts: np.ndarray) -> np.ndarray:
        """Local (n, 2) points -> pixel coordinates (n, 2)."""
        x, y = pts[:, 0], pts[:, 1]
        s = self.scale_px
        return np.stack([self.cx + s * (self.cos * x - self.sin * y), self.cy + s * (self.sin * x + self.cos * y)], 1)

    def _new_image(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        img = Image.new("L", (self.size * self.ss, self.size * self.ss), 0)
        return img, ImageDraw.Draw(img)

    def _to_array(self, img: Image.Image) -> np.ndarray:
        if self.ss > 1:
            img = img.reduce(self.ss)
        return np.frombuffer(img.tobytes(), np.uint8).reshape(self.size, self.size).astype(np.float32) * (1 / 255)

    def raster_polygons(self, polys: Sequence[np.ndarray], holes: Sequence[tuple[float, float, float, str]] = ()) -> np.ndarray:
        """Anti-aliased coverage (size, size) in [0, 1] of local polygons minus local circular holes."""
        img, draw = self._new_image()
        k = self.ss
        for poly in polys:
            draw.polygon((self.to_px(poly) * k).ravel().tolist(), fill=255)
        if holes:
            centres = self.to_px(np.array([(h[0], h[1]) for h in holes])) * k
            for (x, y), h in zip(centres, holes):
                r = h[2] * self.scale_px * k
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
        return self._to_array(img)

    def raster_lines(self, lines: Sequence[np.ndarray], widths: Sequence[float]) -> np.ndarray:
        """Anti-aliased coverage of local polylines with widths in local units."""
        img, draw = self._new_image()
        k = self.ss
        for line, w in zip(lines, widths):
            px_w = max(1, int(round(w * self.scale_px * k)))
            draw.line((self.to_px(line) * k).ravel().tolist(), fill=255, width=px_w, joint="curve")
        return self._to_array(img)

    def add(self, name: str, layer: np.ndarray) -> None:
        """Add ``layer`` to the layer ``name`` ("height", "dark", "whiten")."""
        old = getattr(self, name)
        setattr(self, name, layer if old is None else old + layer)

    def sample_point(self, region: str, rng: np.random.Generator, margin: float) -> np.ndarray:
        """A local point on the part's material in ``region``, at least ``margin`` from outline and holes."""
        geom = self.geom
        for _ in range(50):
            cand = rng.uniform(-1.0, 1.0, size=(64, 2))
            ok = geom.region_of(cand[:, 0], cand[:, 1], region) & _inside(cand, geom, margin)
            if ok.any():
                return cand[int(np.argmax(ok))]
        raise AssertionError(f"no point on the part in region {region!r}")  # geometry bug


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> np.ndarray:
    """(size, size) float32 x coordinate of each pixel centre (transpose for y)."""
    x = np.arange(size, dtype=np.float32) + 0.5
    return np.broadcast_to(x, (size, size)).copy()


def _inside(pts: np.ndarray, geom: _Geometry, margin: float) -> np.ndarray:
    """Which local points lie on material, at least ``margin`` from the outline and from every hole."""
    x, y = pts[:, :1], pts[:, 1:]
    p0 = geom.outline
    p1 = np.roll(p0, -1, axis=0)
    x0, y0, x1, y1 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    inside = ((crosses & (x < x_at)).sum(1) % 2) == 1
    # distance to the outline's segments
    ex, ey = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * ex + (y - y0) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    d2 = (x0 + t * ex - x) ** 2 + (y0 + t * ey - y) ** 2
    inside &= d2.min(1) >= margin * margin
    for hx, hy, hr, _ in geom.holes:
        inside &= np.hypot(pts[:, 0] - hx, pts[:, 1] - hy) >= hr + margin
    return inside


# --------------------------------------------------------------------------------------------------
# Defects: each draws on the canvas and returns its boolean mask (before clipping to the part)
# --------------------------------------------------------------------------------------------------
def _polyline_walk(start: np.ndarray, heading: float, n_steps: int, step: float, wiggle: float,
                   rng: np.random.Generator) -> np.ndarray:
    turns = heading + np.cumsum(rng.normal(0.0, wiggle, n_steps))
    steps = np.stack([np.cos(turns), np.sin(turns)], 1) * (step * rng.uniform(0.7, 1.3, (n_steps, 1)))
    return np.concatenate([start[None], start + np.cumsum(steps, axis=0)])


def _draw_scratch(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.08)
    length = rng.uniform(0.55, 1.0)
    heading = rng.uniform(0, np.pi)
    d = np.array([math.cos(heading), math.sin(heading)])
    n = np.array([-d[1], d[0]])
    bend = rng.uniform(-0.2, 0.2) * length  # quadratic Bezier: a straight or gently curved stroke
    t = np.linspace(-0.5, 0.5, 14)[:, None]
    main = centre + t * length * d + (1.0 - 4.0 * t * t) * bend * n
    lines, widths = [main], [rng.uniform(0.035, 0.055)]
    if rng.random() < 0.35:  # a fainter parallel twin
        off = rng.uniform(0.07, 0.12) * rng.choice([-1.0, 1.0])
        lines.append(main[3:-3] + off * n)
        widths.append(widths[0] * 0.8)
    cov = c.raster_lines(lines, widths)
    strength = rng.uniform(0.5, 0.85)
    if c.albedo_luma < 0.62:  # exposed material reads lighter ...
        c.add("whiten", cov * strength)
    else:  # ... except on light parts, where the groove's shadow shows
        c.add("dark", cov * (0.35 * strength))
    c.add("height", cov * (-0.5 * c.scale_px * 0.04))
    c.gloss = 1.0 + cov * 1.5
    return cov > 0.3


def _draw_crack(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    start = c.sample_point(region, rng, margin=0.05)
    heading = math.atan2(-start[1], -start[0]) + rng.uniform(-0.9, 0.9)  # roughly towards the centre
    if region == "centre":
        heading = rng.uniform(0, 2 * np.pi)
    n_steps = int(rng.integers(6, 10))
    main = _polyline_walk(start, heading, n_steps, rng.uniform(0.07, 0.09), 0.55, rng)
    w = rng.uniform(0.045, 0.065)
    lines, widths = [main], [w]
    for _ in range(int(rng.integers(1, 4))):  # branches fork off at a sharp angle
        k = int(rng.integers(1, n_steps))
        seg = main[k] - main[k - 1]
        side = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
        lines.append(_polyline_walk(main[k], math.atan2(seg[1], seg[0]) + side, int(rng.integers(2, 5)), 0.06, 0.5, rng))
        widths.append(w * 0.75)
    cov = c.raster_lines(lines, widths)
    if c.albedo_luma < 0.2:  # stress whitening on dark parts
        c.add("whiten", cov * rng.uniform(0.45, 0.7))
    else:
        c.add("dark", cov * rng.uniform(0.6, 0.85))
    c.add("height", cov * (-0.3 * c.scale_px * 0.04))
    return cov > 0.3


def _draw_dent(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.1)
    radius = rng.uniform(0.17, 0.27)
    d2 = ((c.u - centre[0]) ** 2 + (c.v - centre[1]) ** 2) * (1.0 / radius**2)
    q = np.clip(1.0 - d2, 0.0, None)
    bowl = q * q  # smooth rim, deepest in the middle
    depth_px = rng.uniform(0.35, 0.6) * radius * c.scale_px
    c.add("height", bowl * -depth_px)
    c.add("dark", bowl * rng.uniform(0.05, 0.15))  # the hollow catches less light
    return d2 < 0.8**2


def _draw_stain(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    centre = c.sample_point(region, rng, margin=0.05)
    radius = rng.uniform(0.2, 0.36)
    d = np.sqrt((c.u - centre[0]) ** 2 + (c.v - centre[1]) ** 2) * (1.0 / radius)
    edge_noise = _smooth_noise(rng.standard_normal((6, 6)), c.size)
    blotch = _smooth_noise(rng.standard_normal((11, 11)), c.size)
    alpha = np.clip((1.0 - d - 0.3 * edge_noise) * 4.0, 0.0, 1.0) * np.clip(0.7 + 0.35 * blotch, 0.2, 1.0)
    # a colour that contrasts with the part
    palette = np.array([(0.45, 0.2, 0.06), (0.1, 0.08, 0.06), (0.9, 0.88, 0.8), (0.3, 0.24, 0.45), (0.55, 0.4, 0.1)])
    luma = palette @ np.array([0.3, 0.59, 0.11])
    far = np.flatnonzero(np.abs(luma - c.albedo_luma) > 0.3)
    rgb = palette[far[rng.integers(len(far))]] if len(far) else palette[2]
    strength = rng.uniform(0.6, 0.9)
    c.tint.append((alpha * strength, rgb.astype(np.float32)))
    c.gloss = 1.0 - 0.7 * alpha
    return alpha > 0.3


def _draw_missing_hole(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    holes = c.geom.holes
    idx = [i for i, h in enumerate(holes) if h[3] == region]
    assert idx, f"no hole in region {region!r}"
    x, y, r, _ = holes.pop(idx[int(rng.integers(len(idx)))])
    return (c.u - x) ** 2 + (c.v - y) ** 2 < (r + 0.5 / c.scale_px) ** 2


def _draw_burr(c: _Canvas, region: str, rng: np.random.Generator) -> np.ndarray:
    outline = c.geom.outline
    # resample the outline uniformly by arc length, then pick a spot in the region
    seg = np.linalg.norm(np.roll(outline, -1, 0) - outline, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    closed = np.concatenate([outline, outline[:1]])
    s = np.linspace(0.0, arc[-1], 400, endpoint=False)
    pts = np.stack([np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])], 1)
    ok = np.flatnonzero(c.geom.region_of(pts[:, 0], pts[:, 1], region))
    assert len(ok), f"no outline in region {region!r}"
    s0 = s[ok[int(rng.integers(len(ok)))]]
    span = rng.uniform(0.2, 0.4)
    n_spikes = int(rng.integers(3, 7))
    polys = []
    for t in s0 + np.sort(rng.uniform(-span / 2, span / 2, n_spikes)):
        p = np.array([np.interp(t % arc[-1], arc, closed[:, 0]), np.interp(t % arc[-1], arc, closed[:, 1])])
        q = np.array([np.interp((t + 0.01) % arc[-1], arc, closed[:, 0]), np.interp((t + 0.01) % arc[-1], arc, closed[:, 1])])
        tan = (q - p) / max(np.linalg.norm(q - p), 1e-9)
        out = np.array([tan[1], -tan[0]])  # outward normal of a counter-clockwise outline
        half = rng.uniform(0.025, 0.045)
        length = rng.uniform(0.09, 0.17)
        tip = p + out * length + tan * rng.uniform(-0.05, 0.05)
        kink = p + out * length * rng.uniform(0.4, 0.6) + tan * half * rng.uniform(0.3, 1.2)  # jagged flank
        polys.append(np.stack([p - tan * half - out * 0.03, kink, tip, p + tan * half - out * 0.03]))
    c.geom.extra_polys.extend(polys)
    c.deferred_mask = lambda coverage, base: (coverage > 0.35) & (base < 0.5)
    return np.zeros((c.size, c.size), bool)


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
    rng = np.random.default_rng(seed)
    f32 = np.float32

    # 1. scene draws: a fixed number, independent of the defect, the shift and the size
    pose = rng.random(4)
    light = rng.random(3)
    bg_draw = rng.random(6)
    bg_blotch = rng.standard_normal((5, 5))
    geom = PART_BUILDERS[spec.part_type](rng)
    grain_table = rng.standard_normal(512).astype(f32)
    mottle = rng.standard_normal((5, 5))
    peel = rng.standard_normal((12, 12))
    albedo_jitter = rng.uniform(-0.03, 0.03, 3)
    defect_seed = int(rng.integers(2**63))

    # 2. pose
    lo, hi = shift.rotation_range_deg
    angle = math.radians(lo + (hi - lo) * pose[0])
    lo, hi = shift.scale_range
    scale_px = 0.36 * size * (lo + (hi - lo) * pose[1])
    cx = size * (0.5 + shift.position_jitter * (2 * pose[2] - 1))
    cy = size * (0.5 + shift.position_jitter * (2 * pose[3] - 1))
    c = _Canvas(size, geom, cx, cy, angle, scale_px)
    u, v = c.u, c.v
    r = np.sqrt(u * u + v * v)

    # 3. material albedo
    mat = _MATERIAL[spec.material]
    base_rgb = np.clip(np.array(mat.rgb if mat.rgb is not None else _COLOUR_RGB[spec.colour]) * (1 + albedo_jitter), 0, 1)
    c.albedo_luma = float(base_rgb @ np.array([0.3, 0.59, 0.11]))

    # 4. the defect edits geometry and layers before anything is rasterised
    mask = np.zeros((size, size), bool)
    if spec.defect != "good":
        mask = DEFECT_DRAWERS[spec.defect](c, spec.defect_region, np.random.default_rng(defect_seed))

    # 5. coverage and surface height (px)
    base_cov = c.raster_polygons([geom.outline], geom.holes)
    coverage = base_cov
    if geom.extra_polys:
        coverage = np.maximum(base_cov, c.raster_polygons(geom.extra_polys))
    if c.deferred_mask is not None:
        mask = mask | c.deferred_mask(coverage, base_cov)
    bevel_sigma = 0.045 * scale_px
    soft = _blur(coverage, bevel_sigma)
    relief = geom.relief(u, v, r) * scale_px if geom.relief is not None else 0.0
    if mat.orange_peel_px:
        relief = relief + _smooth_noise(peel, size) * (mat.orange_peel_px * size / 64)
    height = soft * (3.0 * bevel_sigma) + soft * relief
    if c.height is not None:
        height = height + soft * c.height

    # 6. albedo with grain (turned rings or brushed lines, 1 px pitch) and mottling
    if geom.texture == "turned":
        idx = (r * scale_px).astype(np.int32)
    else:
        idx = ((v + 2.0) * scale_px).astype(np.int32)
    grain = grain_table[np.clip(idx, 0, 511)] * f32(mat.grain) + _smooth_noise(mottle, size) * f32(0.03)
    albedo = base_rgb.astype(f32)[None, None, :] * (1.0 + grain)[..., None]
    for alpha, rgb in c.tint:
        albedo = albedo + (rgb - albedo) * alpha[..., None]

    # 7. shading: point light, Lambert + Blinn-Phong with an orthographic camera
    az = math.radians(shift.light_azimuth_deg + shift.light_azimuth_jitter_deg * (2 * light[0] - 1))
    el = math.radians(shift.light_elevation_deg)
    dist = 1.6 * size
    lx = size * 0.5 + math.cos(az) * math.cos(el) * dist
    ly = size * 0.5 - math.sin(az) * math.cos(el) * dist
    lz = math.sin(el) * dist
    grid = _pixel_grid(size)
    Lx, Ly = lx - grid, (ly - grid).T
    inv_l = 1.0 / np.sqrt(Lx * Lx + Ly * Ly + f32(lz * lz))
    Lx, Ly, Lz = Lx * inv_l, Ly * inv_l, lz * inv_l
    gx = np.zeros_like(height)
    gy = np.zeros_like(height)
    gx[:, 1:-1] = (height[:, 2:] - height[:, :-2]) * 0.5
    gy[1:-1, :] = (height[2:, :] - height[:-2, :]) * 0.5
    inv_n = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    n_dot_l = np.clip((Lz - gx * Lx - gy * Ly) * inv_n, 0.0, None)
    Hz = Lz + 1.0
    inv_h = 1.0 / np.sqrt(Lx * Lx + Ly * Ly + Hz * Hz)
    spec_term = np.clip((Hz - gx * Lx - gy * Ly) * inv_n * inv_h, 0.0, None)
    for _ in range(mat.shininess_log2):
        spec_term = spec_term * spec_term
    spec_term = spec_term * f32(mat.specular)
    if c.gloss is not None:
        spec_term = spec_term * c.gloss
    spec_rgb = (1.0 - mat.metallic) + mat.metallic * base_rgb / max(base_rgb.max(), 1e-6)
    part = albedo * (mat.ambient + mat.diffuse * n_dot_l)[..., None] + spec_term[..., None] * spec_rgb.astype(f32)
    if c.dark is not None:
        part = part * (1.0 - np.clip(c.dark, 0.0, 0.95))[..., None]
    if c.whiten is not None:
        part = part + (f32(0.8) - part) * np.clip(c.whiten, 0.0, 1.0)[..., None]

    # 8. background with the part's cast shadow
    var = shift.background_variation
    tone = shift.background_tone * (1.0 + 0.5 * var * (2 * bg_draw[0] - 1))
    tint = 1.0 + 0.25 * var * (2 * bg_draw[1:4] - 1)
    g_ang = 2 * np.pi * bg_draw[4]
    ramp = ((grid - size / 2) * math.cos(g_ang) + (grid.T - size / 2) * math.sin(g_ang)) * f32(var * 0.6 * bg_draw[5] / size)
    shade = 1.0 + ramp + _smooth_noise(bg_blotch, size) * f32(0.04 + 0.2 * var)
    shadow_len = (0.05 + 0.05 / math.tan(el)) * size
    shadow = _shift_image(_blur(coverage, 0.04 * size), -math.cos(az) * shadow_len, math.sin(az) * shadow_len)
    shade = shade * (1.0 - 0.45 * shadow)
    bg = (np.clip(tone * tint, 0, 1).astype(f32))[None, None, :] * shade[..., None]

    # 9. composite, light colour, blur, noise
    img = bg + (part - bg) * coverage[..., None]
    gain = shift.brightness * (1.0 + shift.brightness_jitter * (2 * light[1] - 1))
    kelvin = shift.colour_temperature_k + shift.colour_temperature_jitter_k * (2 * light[2] - 1)
    img = img * (_kelvin_rgb(kelvin) * (gain * 255.0)).astype(f32)
    if shift.blur_sigma_px > 0:
        img = _blur(img, shift.blur_sigma_px)
    if shift.noise_std > 0:
        img = img + rng.standard_normal(img.shape, dtype=f32) * f32(shift.noise_std * 255.0)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    mask = mask & (coverage > 0.5)
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
    """Separable Gaussian blur over the first two axes, edges clamped."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).astype(np.float32)
    n = a.shape[0]
    pad = [(radius, radius), (0, 0)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, pad, mode="edge")
    out = p[:n] * k[0]
    for i in range(1, 2 * radius + 1):
        out = out + p[i : i + n] * k[i]
    pad = [(0, 0), (radius, radius)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(out, pad, mode="edge")
    out = p[:, :n] * k[0]
    for i in range(1, 2 * radius + 1):
        out = out + p[:, i : i + n] * k[i]
    return out


def _smooth_noise(cells: np.ndarray, size: int) -> np.ndarray:
    """Bicubic upsampling of a small grid of random values to (size, size) float32."""
    img = Image.fromarray(cells.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
    return np.frombuffer(img.tobytes(), np.float32).reshape(size, size)


def _shift_image(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a 2-D array by whole pixels (rounded), filling with zeros."""
    ix, iy = int(round(dx)), int(round(dy))
    out = np.zeros_like(a)
    h, w = a.shape
    out[max(iy, 0) : h + min(iy, 0), max(ix, 0) : w + min(ix, 0)] = a[max(-iy, 0) : h - max(iy, 0), max(-ix, 0) : w - max(ix, 0)]
    return out


@lru_cache(maxsize=256)
def _kelvin_rgb_cached(kelvin_rounded: int) -> tuple[float, float, float]:
    def raw(k: float) -> np.ndarray:  # Tanner Helland's fit of the Planckian locus, channels in 0..1
        t = k / 100.0
        r = 1.0 if t <= 66 else min(1.0, 1.292936 * (t - 60) ** -0.1332047592)
        g = 0.3900815788 * math.log(t) - 0.6318414438 if t <= 66 else 1.129890861 * (t - 60) ** -0.0755148492
        b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.5432067891 * math.log(t - 10) - 1.19625408914)
        return np.clip(np.array([r, g, b]), 0.0, 1.0)

    rgb = raw(kelvin_rounded) / raw(6500.0)
    rgb = rgb / float(rgb @ np.array([0.3, 0.59, 0.11]))  # keep the luminance, change only the colour
    return tuple(float(x) for x in rgb)


def _kelvin_rgb(kelvin: float) -> np.ndarray:
    return np.array(_kelvin_rgb_cached(int(round(kelvin / 10.0)) * 10))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, (int, float)) and lo <= value <= hi):
        raise ShopfloorInputError(f"{name}={value!r} is invalid; allowed: a number in [{lo}, {hi}].")


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ShopfloorInputError(f"{name}={value!r} is invalid; allowed: {tuple(choices)}.")


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Write a contact sheet of all part types x defects and time the renderer.")
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
