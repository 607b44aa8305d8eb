"""How visible the rendered defects are: an upper bound on what any inspector could see.

Each defective part is rendered beside the same part without its defect (the same seed gives the same
scene, light and sensor noise, so the difference is the defect alone). d' is the matched filter's
signal-to-noise ratio of the luminance difference: sqrt(sum of squared differences) / noise std. It
bounds a detector that knows the defect's shape and place; a real one sees less. That ideal detector,
thresholded at 2 % false alarms, misses a defect with probability Phi(z_0.98 - d'); the mean over the
defects is the floor under the escape bar (issue 4: escape <= 0.005 at false alarm <= 0.02).

Usage::

    .venv/bin/python benchmarks/defect_visibility.py [--n 700] [--size 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from environments.parts import DEFECT_TYPES, NOMINAL, PartSpec, render_part, sample_spec, shifted  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=700, help="defective parts per condition, the types in turn")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (the sensor noise is per pixel, so a "
                                                          "finer image shows a defect over more of them)")
    args = ap.parse_args()
    defects = DEFECT_TYPES[1:]
    print("| condition | defect | d', 5th percentile | median | share with d' < 5 | ideal escape at 2% false alarm |")
    print("|---|---|---:|---:|---:|---:|")
    z_fa = norm.ppf(0.98)
    for name, shift in (("nominal", NOMINAL), ("lighting + noise @1.0 (the bar's)", shifted(("lighting", "noise")))):
        rng = np.random.default_rng(args.seed)
        sigma = max(shift.noise_std * 255.0, 1.0)
        dprime: dict[str, list[float]] = {d: [] for d in defects}
        for i in range(args.n):
            spec = sample_spec(rng, defect=defects[i % len(defects)])
            good = PartSpec(spec.part_type, spec.material, spec.colour)
            seed = 10**6 + i
            diff = (render_part(spec, seed, args.size, shift).image.astype(float)
                    - render_part(good, seed, args.size, shift).image.astype(float)).mean(-1)
            dprime[spec.defect].append(float(np.sqrt((diff**2).sum()) / sigma))
        for d, v in dprime.items():
            v = np.asarray(v)
            print(f"| {name} | {d} | {np.percentile(v, 5):.1f} | {np.median(v):.1f} | {np.mean(v < 5):.3f} "
                  f"| {norm.cdf(z_fa - v).mean():.4f} |")
        every = np.concatenate(list(dprime.values()))
        print(f"| {name} | all | {np.percentile(every, 5):.1f} | {np.median(every):.1f} | {np.mean(every < 5):.3f} "
              f"| {norm.cdf(z_fa - every).mean():.4f} |")


if __name__ == "__main__":
    main()
