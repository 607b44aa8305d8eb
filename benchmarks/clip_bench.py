"""PartsCLIP against its bars: zero-shot defect typing, text-to-image retrieval, training time.

Run: ``.venv/bin/python benchmarks/clip_bench.py [--n 5000] [--n-held-out 1400] [--spec local-dir:/path]
[--image-runtime torch|int8]``

Every test image is rendered with dataset seeds no training set uses (``BENCH_SEEDS``) under the
benchmark's held-out imaging condition ``EVAL_SHIFT`` (lighting and sensor noise shifted):

- zero-shot defect-type accuracy on parts of the combinations held out of training (bar >= 0.90), and
  on a gallery over all combinations, overall and per class;
- Recall@10 over the 20 written queries of ``RETRIEVAL_QUERIES`` on the gallery (bar >= 0.8):
  |relevant in top 10| / min(10, |relevant|), a result being relevant when its spec matches every
  attribute the query names; also the hit rate (>= 1 relevant in the top 10);
- the wall time of ``train_clip`` for the weights benchmarked, from their ``train_metrics.json`` (bar <= 20 min),
  and that of the defect CNN training whose convolutions the image tower starts from;
- the image tower's speed in torch and on its INT8 graph, side by side, at one view (the plant's) and at
  ``--views``: a batch of 4 parts in one thread (what the plant's inspection agent embeds per flush) and
  batches of 256 in two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.parts import DEFECT_TYPES  # noqa: E402
from perception.clip_model import DEFAULT_VIEWS, LOCAL_DIR, WEIGHTS_DIR, RetrievalIndex, load_clip  # noqa: E402
from perception.datasets import EVAL_SHIFT, render_dataset  # noqa: E402
from perception.defect_cnn import SHIPPED_CNN_64PX  # noqa: E402
from perception.train_clip import (BENCH_SEEDS, HELD_OUT, RETRIEVAL_QUERIES, retrieval_report,  # noqa: E402
                                   render_combos, zero_shot_report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="gallery size (parts over all combinations)")
    parser.add_argument("--n-held-out", type=int, default=1400, help="parts of the held-out combinations")
    parser.add_argument("--spec", default=None, help="what load_clip loads (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS, help="turned and mirrored copies of each "
                                                                         "image whose embeddings are averaged")
    parser.add_argument("--image-runtime", choices=("torch", "int8"), default="torch",
                        help="where the quality figures' images are embedded")
    parser.add_argument("--speed-reps", type=int, default=200, help="timed batches of 4 per runtime (0: no speed table)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    clip = load_clip(args.spec, views=args.views, image_runtime=args.image_runtime)
    gallery = render_dataset(args.n, 64, BENCH_SEEDS["gallery"], EVAL_SHIFT)
    held_images, held_labels, _ = render_combos(args.n_held_out, 64, BENCH_SEEDS["held_out"], HELD_OUT, EVAL_SHIFT)
    t_render = time.perf_counter() - t0

    t1 = time.perf_counter()
    emb = clip.encode_images(gallery.images)
    t_encode = time.perf_counter() - t1
    zs_all = zero_shot_report(clip, gallery.images, gallery.labels, emb)
    zs_held = zero_shot_report(clip, held_images, held_labels)
    index = RetrievalIndex(clip)
    index.add(range(len(gallery)), emb)
    t2 = time.perf_counter()
    ret = retrieval_report(index, gallery.specs)
    t_query = (time.perf_counter() - t2) / len(RETRIEVAL_QUERIES)

    weights = Path(args.spec[len(LOCAL_DIR):]) if args.spec and args.spec.startswith(LOCAL_DIR) else WEIGHTS_DIR
    train = json.loads((weights / "train_metrics.json").read_text()) if (weights / "train_metrics.json").is_file() \
        else None
    size_mb = sum(f.stat().st_size for f in weights.glob("open_clip_*")) / 1e6 if weights.is_dir() else float("nan")

    print(f"PartsCLIP benchmark: {clip.source or 'shipped'}; images embedded in {args.image_runtime} at {clip.views} "
          f"views; images at {EVAL_SHIFT}, dataset seeds {BENCH_SEEDS}; load {os.getloadavg()[0]:.1f}, "
          f"{args.threads} threads\n")
    print("| bar | measured | target | met |")
    print("|---|---:|---:|---|")
    acc = zs_held["accuracy"]
    print(f"| zero-shot defect-type accuracy, held-out combinations (n={zs_held['n']}) | {acc:.3f} | >= 0.90 | "
          f"{'yes' if acc >= 0.9 else 'NO'} |")
    print(f"| zero-shot defect-type accuracy, all combinations (n={zs_all['n']}) | {zs_all['accuracy']:.3f} | - | - |")
    rec = ret["recall_at_k"]
    print(f"| text-to-image Recall@10, 20 queries, gallery {args.n} | {rec:.3f} | >= 0.8 | "
          f"{'yes' if rec >= 0.8 else 'NO'} |")
    print(f"| hit rate@10 (>= 1 relevant in top 10) | {ret['hit_rate']:.3f} | - | - |")
    if train:
        total_min = train["timings_s"]["total"] / 60
        m = train["machine"]
        print(f"| train_clip wall time (render {train['timings_s']['render']:.0f} s + train "
              f"{train['timings_s']['train']:.0f} s + eval {train['timings_s']['evaluate']:.0f} s; load "
              f"{m['load_avg_1min_start']}->{m['load_avg_1min_end']}) | {total_min:.1f} min | <= 20 min | "
              f"{'yes' if total_min <= 20 else 'NO'} |")
    cnn_metrics = SHIPPED_CNN_64PX.with_suffix(".metrics.json")
    if train and train["config"].get("vision_init") == "shipped" and cnn_metrics.is_file():
        cnn = json.loads(cnn_metrics.read_text())
        print(f"| the defect CNN it starts from: `{cnn['command']}` (render + train) | "
              f"{(cnn['render_s'] + cnn['train_s']) / 60:.1f} min | - | - |")
    print(f"| weights size | {size_mb:.2f} MB | <= 10 MB | {'yes' if size_mb <= 10 else 'NO'} |")

    print("\nPer class (zero-shot accuracy):\n")
    print("| class | held-out combos: n | accuracy | all combos: n | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name in DEFECT_TYPES:
        h, a = zs_held["per_class"][name], zs_all["per_class"][name]
        h_acc, a_acc = (("-" if r["accuracy"] is None else f"{r['accuracy']:.3f}") for r in (h, a))
        print(f"| {name} | {h['n']} | {h_acc} | {a['n']} | {a_acc} |")
    print("\nConfusion, all combinations (rows = truth, columns = prediction, order "
          f"{', '.join(DEFECT_TYPES)}):\n")
    for name, row in zip(DEFECT_TYPES, zs_all["confusion"]):
        print(f"    {name:>12s} {' '.join(f'{v:5d}' for v in row)}")

    print("\nQueries (Recall@10 = hits / min(10, relevant)):\n")
    print("| query | relevant | hits in top 10 | recall@10 |")
    print("|---|---:|---:|---:|")
    for r in ret["queries"]:
        recall = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        print(f"| {r['query']} | {r['n_relevant']} | {r['hits']} | {recall} |")
    print(f"\nTimings: render {t_render:.1f} s; encode {len(gallery) / t_encode:,.0f} images/s ({clip.views} views); "
          f"one query over {len(index)} images {t_query * 1e3:.1f} ms (text encoding included).")
    for views in sorted({1, args.views}) if args.speed_reps else ():  # the plant indexes parts at one view
        speed_table(args.spec, views, gallery.images, args.speed_reps)


def speed_table(spec: str | None, views: int, images: np.ndarray, reps: int) -> None:
    """Embedding time of the image tower in torch and on its INT8 graph, interleaved rep by rep so that both
    see the same machine. Each runtime's thread count is set when it is loaded (its session keeps it)."""
    print(f"\nImage embedding, torch against INT8, {views} views, side by side ({reps} reps each):\n")
    print("| batch, threads | torch median ms | torch p99 ms | INT8 median ms | INT8 p99 ms | speed-up (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    saved = torch.get_num_threads()
    for batch, threads, n_reps in ((4, 1, reps), (256, 2, max(3, reps // 40))):
        torch.set_num_threads(threads)
        clips = {runtime: load_clip(spec, views=views, image_runtime=runtime) for runtime in ("torch", "int8")}
        times: dict[str, list[float]] = {runtime: [] for runtime in clips}
        for rep in range(n_reps + 2):  # the first two are warm-up
            x = images[(rep * batch) % (len(images) - batch):][:batch]
            for runtime, clip in clips.items():
                t = time.perf_counter()
                clip.encode_images(x)
                if rep >= 2:
                    times[runtime].append((time.perf_counter() - t) * 1e3)
        (tm, tp), (im, ip) = ((np.median(times[r]), np.percentile(times[r], 99)) for r in ("torch", "int8"))
        print(f"| {batch}, {threads} | {tm:.1f} | {tp:.1f} | {im:.1f} | {ip:.1f} | {tm / im:.1f}x |")
    torch.set_num_threads(saved)


if __name__ == "__main__":
    main()
