"""Datasets of rendered parts for the defect CNN and CLIP.

Item ``i`` of a dataset with seed ``s`` is fully determined by ``(s, i)``: its spec, its render seed and
its imaging conditions come from ``np.random.default_rng([s, i])``. So a dataset is reproducible, can
be rendered in parallel in any chunking, and two datasets with different seeds share no render seeds
in practice (render seeds are drawn from 2**31 values).

Training sets use *domain randomisation*: every image gets its own lighting (direction, elevation,
brightness, colour temperature) and sensor noise, drawn from ranges that cover a poorly lit,
noisy station as well as the nominal one (``randomized_shift``). Pose, blur and background stay at
their nominal ranges, so those shifts remain unseen in training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from environments.errors import ShopfloorInputError
from environments.parts import NOMINAL, PART_TYPES, PartSpec, RenderShift, render_part, sample_spec, shifted

ShiftMode = str  # "nominal" | "randomized" | "randomized_harsh" | "shifted:<kinds>[@severity]", e.g. "shifted:lighting+noise@1.0"

#: The benchmark's held-out condition: the full lighting and noise shift of the renderer.
EVAL_SHIFT: ShiftMode = "shifted:lighting+noise@1.0"


@dataclass(frozen=True)
class PartsData:
    """Rendered parts with their truth.

    Attributes
    ----------
    images : np.ndarray, shape = (n, size, size, 3), uint8
    labels : np.ndarray, shape = (n,), int64, defect codes (index in ``DEFECT_TYPES``)
    masks : np.ndarray, shape = (n, size, size), bool, or None when not kept
    specs : list[PartSpec]
    seeds : np.ndarray, shape = (n,), int64, render seeds
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    specs: list[PartSpec]
    seeds: np.ndarray
    twins: np.ndarray | None = None
    """(n,) uint8 images of each part's good twin (same part, pose and light, no defect), or None."""

    def __len__(self) -> int:
        return len(self.labels)

    def captions(self) -> list[str]:
        return [s.caption() for s in self.specs]


def randomized_shift(rng: np.random.Generator) -> RenderShift:
    """Imaging conditions for one training image: random lighting and sensor noise (domain randomisation)."""
    u = rng.random(5)
    return replace(
        NOMINAL,
        light_azimuth_deg=360.0 * u[0],
        light_elevation_deg=25.0 + 60.0 * u[1],
        brightness=0.5 + 0.8 * u[2],
        colour_temperature_k=2800.0 + 6200.0 * u[3],
        noise_std=0.07 * u[4] ** 0.7,
    )


def randomized_harsh_shift(rng: np.random.Generator) -> RenderShift:
    """The ranges of `randomized_shift`, drawn more often at their harsh ends: dim light, low light and
    strong sensor noise (a dim, noisy station is where a camera fails, and uniform draws put only ~2%
    of images there with all three at once; these put ~13%)."""
    u = rng.random(5)
    return replace(
        NOMINAL,
        light_azimuth_deg=360.0 * u[0],
        light_elevation_deg=25.0 + 60.0 * u[1] ** 2,
        brightness=0.5 + 0.8 * u[2] ** 2,
        colour_temperature_k=2800.0 + 6200.0 * u[3],
        noise_std=0.07 * u[4] ** 0.35,
    )


def parse_shift(mode: ShiftMode) -> Callable[[np.random.Generator], RenderShift]:
    """Turn a shift mode string into a per-item sampler of imaging conditions."""
    if mode == "nominal":
        return lambda rng: NOMINAL
    if mode == "randomized":
        return randomized_shift
    if mode == "randomized_harsh":
        return randomized_harsh_shift
    if mode.startswith("shifted:"):
        kinds, _, sev = mode[len("shifted:"):].partition("@")
        try:
            fixed = shifted(kinds.split("+") if kinds != "all" else "all", float(sev) if sev else 1.0)
        except ValueError as e:
            raise ShopfloorInputError(f"shift {mode!r} is invalid: {e}") from None
        return lambda rng: fixed
    raise ShopfloorInputError(
        f"shift {mode!r} is invalid; allowed: 'nominal', 'randomized', 'randomized_harsh' or "
        "'shifted:<kind>[+<kind>...][@severity]'.")


def item_plan(seed: int, index: int, shift: ShiftMode, part_types: tuple[str, ...] = PART_TYPES,
              exclude: Iterable = (), defect: str | None = None) -> tuple[PartSpec, int, RenderShift]:
    """The spec, render seed and imaging conditions of item ``index`` of dataset ``seed``."""
    rng = np.random.default_rng([seed, index])
    part_type = part_types[rng.integers(len(part_types))]
    spec = sample_spec(rng, defect=defect, exclude=exclude, part_type=part_type)
    render_seed = int(rng.integers(2**31))
    return spec, render_seed, parse_shift(shift)(rng)


def _render_chunk(args) -> tuple:
    seed, start, stop, size, shift, part_types, exclude, keep_masks, twins, defect = args
    n = stop - start
    images = np.empty((n, size, size, 3), np.uint8)
    twin_images = np.empty((n, size, size, 3), np.uint8) if twins else None
    masks = np.empty((n, size, size), bool) if keep_masks else None
    labels, seeds, specs = np.empty(n, np.int64), np.empty(n, np.int64), []
    for k in range(n):
        spec, render_seed, cond = item_plan(seed, start + k, shift, part_types, exclude, defect)
        part = render_part(spec, render_seed, size, cond)
        images[k], labels[k], seeds[k] = part.image, spec.defect_code, render_seed
        if masks is not None:
            masks[k] = part.mask
        if twin_images is not None:
            twin_images[k] = part.image if spec.defect == "good" else render_part(
                replace(spec, defect="good", defect_region=None), render_seed, size, cond).image
        specs.append(spec)
    return images, labels, masks, specs, seeds, twin_images


def render_dataset(n: int, size: int, seed: int, shift: ShiftMode = "nominal",
                   part_types: Iterable[str] = PART_TYPES, exclude: Iterable = (), keep_masks: bool = False,
                   twins: bool = False, workers: int | None = None, progress: Callable[[int], None] | None = None,
                   defect: str | None = None) -> PartsData:
    """Render ``n`` parts, uniform over part types and defect classes (good is one class of seven).

    Parameters
    ----------
    n, size : how many images, and their side in pixels.
    seed : the dataset seed; training, validation and test sets must use different ones.
    shift : "nominal", "randomized" (domain randomisation) or "shifted:<kinds>[@severity]".
    part_types : the part types to draw from.
    exclude : combinations never drawn (see ``environments.parts.sample_spec``), for held-out sets.
    keep_masks : keep the defect masks (n x size x size bools).
    twins : also render each part's good twin (the renderer draws the same part, pose and light for one
        seed whatever the defect), for training on counterfactual pairs.
    workers : render processes (default: the CPUs available, at most 4; 1 renders in this process).
    progress : called with the number of items finished after each chunk.
    defect : render only this class of ``DEFECT_TYPES`` (e.g. "good": a station's known-good parts).
    """
    if n < 0:
        raise ShopfloorInputError(f"n={n} is invalid; allowed: an int >= 0.")
    parse_shift(shift)  # fail early on a bad mode
    part_types = tuple(part_types)
    exclude = tuple(tuple(e) if not isinstance(e, str) else e for e in exclude)
    workers = workers or min(4, len(os.sched_getaffinity(0)))
    chunk = max(64, min(2000, math.ceil(n / (4 * workers)) if n else 64))
    jobs = [(seed, a, min(a + chunk, n), size, shift, part_types, exclude, keep_masks, twins, defect)
            for a in range(0, n, chunk)]
    if workers == 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(_render_chunk(job))
            if progress:
                progress(job[2] - job[1])
    else:
        import multiprocessing

        # fork: the workers only run numpy and Pillow, and spawn would re-import an unguarded __main__
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = []
            for job, res in zip(jobs, pool.map(_render_chunk, jobs)):
                results.append(res)
                if progress:
                    progress(job[2] - job[1])
    if not results:
        return PartsData(np.empty((0, size, size, 3), np.uint8), np.empty(0, np.int64),
                         np.empty((0, size, size), bool) if keep_masks else None, [], np.empty(0, np.int64))
    return PartsData(
        images=np.concatenate([r[0] for r in results]),
        labels=np.concatenate([r[1] for r in results]),
        masks=np.concatenate([r[2] for r in results]) if keep_masks else None,
        specs=[s for r in results for s in r[3]],
        seeds=np.concatenate([r[4] for r in results]),
        twins=np.concatenate([r[5] for r in results]) if twins else None,
    )
