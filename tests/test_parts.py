"""Tests of the procedural part renderer (environments/parts.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from environments.errors import ShopfloorInputError
from environments.parts import (
    COLOURS,
    DEFECT_TYPES,
    MATERIALS,
    METALS,
    NOMINAL,
    PART_TYPES,
    SHIFT_KINDS,
    SHIFTED,
    PartSpec,
    RenderedPart,
    RenderShift,
    render_batch,
    render_part,
    sample_spec,
    shifted,
    valid_regions,
)

SIZE = 64


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted_mask = np.zeros_like(mask)
            shifted_mask[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
                max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
            ]
            out |= shifted_mask
    return out


def _all_specs(material: str = "steel", colour: str = "natural") -> list[PartSpec]:
    specs = []
    for part_type in PART_TYPES:
        specs.append(PartSpec(part_type, material, colour))
        for defect in DEFECT_TYPES[1:]:
            for region in valid_regions(part_type, defect):
                specs.append(PartSpec(part_type, material, colour, defect, region))
    return specs


def _high_freq_energy(image: np.ndarray) -> float:
    g = image.astype(np.float64).mean(-1)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [NOMINAL, SHIFTED], ids=["nominal", "shifted"])
def test_same_seed_is_byte_identical(shift: RenderShift) -> None:
    rng = np.random.default_rng(0)
    for i in range(20):
        spec = sample_spec(rng)
        a = render_part(spec, 1000 + i, SIZE, shift)
        b = render_part(spec, 1000 + i, SIZE, shift)
        assert a.image.tobytes() == b.image.tobytes(), spec
        assert np.array_equal(a.mask, b.mask), spec


def test_different_seeds_differ() -> None:
    spec = PartSpec("gear", "brass", "natural", "crack", "rim")
    images = [render_part(spec, seed, SIZE).image for seed in range(8)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


def test_determinism_does_not_depend_on_call_order() -> None:
    spec = PartSpec("plate", "painted", "red", "stain", "corner")
    first = render_part(spec, 7, SIZE).image
    for s in range(5):  # render other things in between
        render_part(PartSpec("cap", "plastic", "blue", "dent", "rim"), s, 128)
    assert np.array_equal(first, render_part(spec, 7, SIZE).image)


# ------------------------------------------------------------------------------------------------
# every part type x defect x region renders, with a sensible mask
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("material,colour", [("steel", "natural"), ("plastic", "black"), ("painted", "white")])
def test_every_part_and_defect_renders(material: str, colour: str) -> None:
    for seed, spec in enumerate(_all_specs(material, colour)):
        part = render_part(spec, seed, SIZE)
        assert isinstance(part, RenderedPart)
        assert part.image.shape == (SIZE, SIZE, 3) and part.image.dtype == np.uint8
        assert part.mask.shape == (SIZE, SIZE) and part.mask.dtype == np.bool_
        assert part.label == DEFECT_TYPES.index(spec.defect)
        if spec.defect == "good":
            assert not part.mask.any(), spec
        else:
            assert part.mask.sum() >= 5, (spec, int(part.mask.sum()))
        assert 5 < part.image.mean() < 250  # neither black nor blown out


@pytest.mark.parametrize("size", [32, 128, 200])
def test_other_sizes(size: int) -> None:
    for defect in DEFECT_TYPES:
        spec = PartSpec("washer", "copper", "natural", defect)
        part = render_part(spec, 3, size)
        assert part.image.shape == (size, size, 3)
        assert part.mask.shape == (size, size)
        assert part.mask.any() == (defect != "good")


def test_defect_changes_pixels_inside_its_mask() -> None:
    """A defect vs. the same part rendered good with the same seed: the difference sits in the mask."""
    for material, colour in [("steel", "natural"), ("plastic", "red"), ("brass", "natural")]:
        for seed, spec in enumerate(_all_specs(material, colour)):
            if spec.defect == "good":
                continue
            bad = render_part(spec, seed, SIZE)
            good = render_part(dataclasses.replace(spec, defect="good", defect_region=None), seed, SIZE)
            diff = np.abs(bad.image.astype(np.int32) - good.image.astype(np.int32)).sum(-1)
            assert diff.sum() > 0, spec
            near = _dilate(bad.mask, 2)  # anti-aliasing and the burr's own shadow spill a little
            assert diff[near].sum() / diff.sum() > 0.75, spec
            # visible: the defect moves pixels inside its mask by several grey levels on average
            assert diff[bad.mask].mean() / 3 > 5, (spec, diff[bad.mask].mean() / 3)


def test_good_twin_shares_pose_and_background() -> None:
    spec = PartSpec("bracket", "aluminium", "natural", "scratch", "edge")
    bad = render_part(spec, 11, SIZE)
    good = render_part(PartSpec("bracket", "aluminium"), 11, SIZE)
    outside = ~_dilate(bad.mask, 2)
    assert np.array_equal(bad.image[outside], good.image[outside])


def test_missing_hole_fills_a_hole_for_every_part_type() -> None:
    for part_type in PART_TYPES:
        for region in valid_regions(part_type, "missing_hole"):
            bad = render_part(PartSpec(part_type, "steel", "natural", "missing_hole", region), 5, SIZE)
            good = render_part(PartSpec(part_type, "steel"), 5, SIZE)
            luma_bad = bad.image[bad.mask].astype(float).mean()
            luma_good = good.image[bad.mask].astype(float).mean()
            assert luma_bad > luma_good + 10, (part_type, region)  # metal where the dark hole was


def test_burr_grows_the_outline() -> None:
    for part_type in PART_TYPES:
        spec = PartSpec(part_type, "aluminium", "natural", "burr")
        bad = render_part(spec, 2, SIZE)
        good = render_part(PartSpec(part_type, "aluminium"), 2, SIZE)
        # the burr's pixels were background in the good part: they turn brighter than the dark conveyor
        assert bad.image[bad.mask].mean() > good.image[bad.mask].mean() + 10, part_type


# ------------------------------------------------------------------------------------------------
# shift controls
# ------------------------------------------------------------------------------------------------
def test_blur_lowers_high_frequency_energy() -> None:
    quiet = dataclasses.replace(NOMINAL, noise_std=0.0)
    for seed in range(5):
        spec = sample_spec(np.random.default_rng(seed))
        sharp = render_part(spec, seed, SIZE, quiet).image
        blurred = render_part(spec, seed, SIZE, dataclasses.replace(quiet, blur_sigma_px=1.5)).image
        assert _high_freq_energy(blurred) < 0.5 * _high_freq_energy(sharp)


def test_noise_raises_pixel_std() -> None:
    spec = PartSpec("plate", "steel")
    quiet = render_part(spec, 3, SIZE, dataclasses.replace(NOMINAL, noise_std=0.0)).image.astype(float)
    noisy = render_part(spec, 3, SIZE, dataclasses.replace(NOMINAL, noise_std=0.05)).image.astype(float)
    residual = noisy - quiet
    assert noisy.std() > quiet.std()
    assert abs(residual.std() - 0.05 * 255) < 0.15 * 0.05 * 255  # the std asked for, clipping aside


def test_lighting_controls() -> None:
    spec = PartSpec("cap", "plastic", "white")
    base = render_part(spec, 4, SIZE).image.astype(float)
    dim = render_part(spec, 4, SIZE, dataclasses.replace(NOMINAL, brightness=0.5)).image.astype(float)
    assert dim.mean() < 0.65 * base.mean()
    warm = render_part(spec, 4, SIZE, dataclasses.replace(NOMINAL, colour_temperature_k=3000.0)).image.astype(float)
    assert warm[..., 0].mean() / warm[..., 2].mean() > 1.2 * base[..., 0].mean() / base[..., 2].mean()
    moved = render_part(spec, 4, SIZE, dataclasses.replace(NOMINAL, light_azimuth_deg=315.0)).image
    assert np.abs(moved.astype(float) - base).mean() > 2


def test_pose_and_background_controls() -> None:
    spec = PartSpec("bracket", "brass")
    base = render_part(spec, 9, SIZE)
    turned = render_part(spec, 9, SIZE, dataclasses.replace(NOMINAL, rotation_range_deg=(90.0, 90.0)))
    assert np.abs(turned.image.astype(float) - base.image).mean() > 5
    small = render_part(spec, 9, SIZE, dataclasses.replace(NOMINAL, scale_range=(0.6, 0.6)))
    large = render_part(spec, 9, SIZE, dataclasses.replace(NOMINAL, scale_range=(1.2, 1.2)))
    assert np.abs(large.image.astype(float) - small.image).mean() > 5
    light_bg = render_part(spec, 9, SIZE, dataclasses.replace(NOMINAL, background_tone=0.8))
    corner = (slice(0, 6), slice(0, 6))
    assert light_bg.image[corner].mean() > base.image[corner].mean() + 50


def test_shift_presets() -> None:
    assert shifted("all", severity=0.0) == NOMINAL
    spec = PartSpec("gear", "steel", "natural", "dent", "rim")
    base = render_part(spec, 1, SIZE)
    for kind in SHIFT_KINDS:
        s = shifted(kind)
        assert s != NOMINAL
        other = render_part(spec, 1, SIZE, s)
        assert not np.array_equal(other.image, base.image), kind
        if kind != "pose":  # the same part and defect, imaged differently
            assert np.array_equal(other.mask, base.mask), kind
    half = shifted("noise", severity=0.5)
    assert NOMINAL.noise_std < half.noise_std < SHIFTED.noise_std
    with pytest.raises(ShopfloorInputError):
        shifted("fog")


def test_render_shift_validates() -> None:
    with pytest.raises(ShopfloorInputError, match="noise_std"):
        RenderShift(noise_std=-0.1)
    with pytest.raises(ShopfloorInputError, match="scale_range"):
        RenderShift(scale_range=(1.2, 0.8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        NOMINAL.noise_std = 0.2  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# specs, captions, batches
# ------------------------------------------------------------------------------------------------
def test_captions() -> None:
    assert PartSpec("gear", "brass", "natural", "crack", "rim").caption() == "a brass gear with a crack near the rim"
    assert PartSpec("cap", "plastic", "blue").caption() == "a good blue plastic cap"
    assert PartSpec("plate", "aluminium", "natural", "missing_hole", "corner").caption() == (
        "an aluminium plate with a missing hole near the corner"
    )
    assert render_part(PartSpec("washer", "painted", "red", "burr", "rim"), 0, 32).caption() == (
        "a red painted washer with a burr near the rim"
    )
    rng = np.random.default_rng(1)
    for _ in range(200):
        spec = sample_spec(rng)
        text = spec.caption()
        assert spec.part_type in text and spec.material in text
        if spec.material not in METALS:
            assert spec.colour in text
        if spec.defect == "good":
            assert text.startswith("a good ")
        else:
            assert spec.defect.replace("_", " ") in text and spec.defect_region in text


def test_sample_spec() -> None:
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng) for _ in range(700)]
    assert {s.defect for s in specs} == set(DEFECT_TYPES)
    assert {s.part_type for s in specs} == set(PART_TYPES)
    assert {s.material for s in specs} == set(MATERIALS)
    assert {s.colour for s in specs} == set(COLOURS)
    for s in specs:
        assert (s.colour == "natural") == (s.material in METALS)
        assert (s.defect_region is None) == (s.defect == "good")
    assert all(sample_spec(rng, defect="burr").defect == "burr" for _ in range(20))
    assert all(sample_spec(rng, defect=5).defect == "missing_hole" for _ in range(20))
    held_out = [sample_spec(rng, exclude=["brass", ("gear", "steel")]) for _ in range(300)]
    assert not any(s.material == "brass" for s in held_out)
    assert not any(s.part_type == "gear" and s.material == "steel" for s in held_out)
    a = [sample_spec(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    with pytest.raises(ShopfloorInputError):
        sample_spec(rng, defect="rust")
    with pytest.raises(ShopfloorInputError):
        sample_spec(rng, defect=9)
    with pytest.raises(ShopfloorInputError):
        sample_spec(rng, exclude=list(PART_TYPES))


def test_part_spec_validates() -> None:
    assert DEFECT_TYPES[0] == "good" and len(DEFECT_TYPES) == 7
    with pytest.raises(ShopfloorInputError, match="part_type"):
        PartSpec("sprocket", "steel")
    with pytest.raises(ShopfloorInputError, match="colour"):
        PartSpec("gear", "steel", "red")
    with pytest.raises(ShopfloorInputError, match="colour"):
        PartSpec("gear", "plastic", "natural")
    with pytest.raises(ShopfloorInputError, match="defect_region"):
        PartSpec("gear", "steel", "natural", "burr", "centre")  # burrs live on the outline
    with pytest.raises(ShopfloorInputError, match="defect_region"):
        PartSpec("gear", "steel", "natural", "good", "rim")
    assert PartSpec("plate", "steel", "natural", "dent").defect_region == valid_regions("plate", "dent")[0]
    with pytest.raises(ShopfloorInputError, match="size"):
        render_part(PartSpec("gear", "steel"), 0, size=8)
    with pytest.raises(ShopfloorInputError, match="seed"):
        render_part(PartSpec("gear", "steel"), -1)


def test_render_batch() -> None:
    rng = np.random.default_rng(2)
    specs = [sample_spec(rng) for _ in range(12)]
    seeds = list(range(100, 112))
    images, labels, masks = render_batch(specs, seeds, SIZE)
    assert images.shape == (12, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [DEFECT_TYPES.index(s.defect) for s in specs]
    assert masks.shape == (12, SIZE, SIZE) and masks.dtype == np.bool_
    for i in (0, 5, 11):
        one = render_part(specs[i], seeds[i], SIZE)
        assert np.array_equal(images[i], one.image) and np.array_equal(masks[i], one.mask)
    with pytest.raises(ShopfloorInputError):
        render_batch(specs, seeds[:3], SIZE)
