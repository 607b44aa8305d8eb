"""Train the GNN route planner (``shopfloor train router``).

Recipe: REINFORCE with POMO's shared baseline (Kwon et al. 2020, "POMO: Policy Optimization with
Multiple Optima for Reinforcement Learning"): every generated instance is solved by ``P`` sampled
rollouts that start from ``P`` different first customers, and each rollout's advantage is its cost minus
the mean cost of the instance's ``P`` rollouts, so no critic and no greedy baseline rollout is needed.
Instances come from `planning.cvrp_generator` (uniform and clustered customers, Uchoa-style demands);
each batch draws one ``n`` in ``n_min..n_max`` (one ``n`` per batch keeps the batch unpadded) and
as many instances as fit ``rollouts_per_batch``; every instance is seen through a random one of the
eight symmetries of the square. Adam, with the gradient norm clipped and a cosine learning rate.

Validation: greedy decoding of a fixed, seeded set of instances (``VAL_SEED``, n cycling through
``val_sizes``), against Clarke-Wright savings on the same instances; the gap is the mean of
``greedy / savings - 1``. The checkpoint is rewritten after each epoch that lowers the gap, so an
interrupted run leaves weights; the metrics file is rewritten after every epoch. Everything is seeded;
on one machine, with the same thread count, the same seed gives the same weights.

Seeds in use: training instances ``1_000_003 * seed + 21``; validation ``VAL_SEED``. Benchmarks must
draw their held-out instances from other seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from environments.errors import ShopfloorInputError
from planning.baselines.routing import CVRPInstance, clarke_wright_savings, solution_cost
from planning.cvrp_generator import GeneratorConfig, random_instance
from planning.route_model import RouteModel, RouteModelDims, load_router, make_batch, save_router, solve_many

__all__ = ["RouterTrainConfig", "quick_config", "train_router", "load_router", "validation_set"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)
VAL_SEED = 6_000_017


@dataclass(frozen=True)
class RouterTrainConfig:
    seed: int = 0
    """Seed of the instances, the initialisation and the sampled rollouts."""
    epochs: int = 30
    """Epochs; validation and the checkpoint come after each."""
    batches_per_epoch: int = 40
    """Gradient steps per epoch."""
    rollouts_per_batch: int = 1000
    """Instances x starts per gradient step (the memory and time of a step grow with it)."""
    max_starts: int = 50
    """POMO starts per instance: min(n, max_starts) different first customers, drawn at random when fewer than n."""
    instances: GeneratorConfig = GeneratorConfig()
    """What the training and validation instances are drawn from, including n_min..n_max."""
    lr: float = 1e-3
    """Adam's first learning rate; it falls along a cosine to ``lr_final`` (POMO: 1e-4, for a far longer run;
    in 60-step pilots, 1e-3 lowered the gap faster than 3e-4)."""
    lr_final: float = 1e-4
    """The learning rate at the last step."""
    weight_decay: float = 1e-6
    """Adam's L2 penalty (POMO's)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    n_val: int = 60
    """Validation instances."""
    val_sizes: tuple[int, ...] = (20, 50, 100)
    """Customers of the validation instances, in turn."""
    dims: RouteModelDims = RouteModelDims()
    """The model's size (the default is ~0.63 M parameters, 2.5 MB of weights)."""
    threads: int = 1
    """torch threads: on the 2-core machines, 2 threads lose badly to 1 whenever anything else runs."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batches_per_epoch", "rollouts_per_batch", "max_starts", "n_val", "threads"):
            if getattr(self, name) < 1:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 1.")
        if not self.val_sizes or min(self.val_sizes) < 1:
            raise ShopfloorInputError(f"val_sizes={self.val_sizes} is invalid; allowed: customer counts >= 1.")
        if not 0 < self.lr_final <= self.lr or self.max_grad_norm <= 0:
            raise ShopfloorInputError(f"lr={self.lr}, lr_final={self.lr_final}, max_grad_norm={self.max_grad_norm} "
                                      "are invalid; allowed: 0 < lr_final <= lr and max_grad_norm > 0.")


def quick_config(seed: int = 0) -> RouterTrainConfig:
    """A tiny run for tests and smoke checks (seconds): small instances, 2 epochs of 3 steps."""
    return replace(RouterTrainConfig(seed=seed), epochs=2, batches_per_epoch=3, rollouts_per_batch=200,
                   max_starts=20, instances=replace(GeneratorConfig(), n_min=10, n_max=20), n_val=6,
                   val_sizes=(10, 20))


def validation_set(cfg: RouterTrainConfig) -> list[CVRPInstance]:
    rng = np.random.default_rng(VAL_SEED)
    return [random_instance(rng, cfg.instances, cfg.val_sizes[i % len(cfg.val_sizes)]) for i in range(cfg.n_val)]


def validate(model: RouteModel, instances: list[CVRPInstance], savings: np.ndarray, chunk: int = 32) -> dict:
    """Greedy costs against savings: ``val/gap_to_savings`` overall and per n."""
    greedy = np.array([s.cost for a in range(0, len(instances), chunk)
                       for s in solve_many(model, instances[a:a + chunk], "greedy")])
    gap = greedy / savings - 1.0
    sizes = np.array([inst.n_customers for inst in instances])
    out = {"val/greedy_cost": float(greedy.mean()), "val/savings_cost": float(savings.mean()),
           "val/gap_to_savings": float(gap.mean())}
    out.update({f"val/gap_to_savings_n{n}": float(gap[sizes == n].mean()) for n in np.unique(sizes)})
    return out


def train_step(model: RouteModel, opt: torch.optim.Optimizer, cfg: RouterTrainConfig, rng: np.random.Generator,
               g: torch.Generator) -> dict:
    """One REINFORCE step on a fresh batch; returns the batch's metrics."""
    n = int(rng.integers(cfg.instances.n_min, cfg.instances.n_max + 1))
    p = min(n, cfg.max_starts)
    instances = [random_instance(rng, cfg.instances, n) for _ in range(max(1, cfg.rollouts_per_batch // p))]
    batch = make_batch(instances, cfg.dims.k_neighbours, rng.integers(0, 8, len(instances)).tolist())
    starts = 1 + torch.rand(len(instances), n, generator=g).argsort(1)[:, :p]  # p distinct first customers
    model.train()
    out = model.rollout(batch, p, starts, greedy=False, generator=g)
    advantage = out.cost - out.cost.mean(1, keepdim=True)  # POMO's shared baseline
    loss = (advantage * out.log_prob).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    cost = out.cost.double() * batch.scale[:, None]
    return {"loss": float(loss.detach()), "cost": float(cost.mean()), "best_cost": float(cost.min(1).values.mean()),
            "grad_norm": float(grad_norm), "n": n, "instances": len(instances)}


def train_router(cfg: RouterTrainConfig, out: str | Path, progress: Progress | None = None,
                 command: str = "") -> dict:
    """Train and save ``out`` (a checkpoint) plus ``out``'s ``.metrics.json``. Returns the metrics."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda stage, done, total: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, out, progress, command)
    finally:
        torch.set_num_threads(threads)  # a caller's own thread count is its business


def _train(cfg: RouterTrainConfig, out: Path, progress: Progress, command: str) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(1_000_003 * cfg.seed + 21)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    val = validation_set(cfg)
    savings = np.array([solution_cost(inst, clarke_wright_savings(inst)) for inst in val])
    model = RouteModel(cfg.dims)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * cfg.batches_per_epoch,
                                                       eta_min=cfg.lr_final)
    metrics = {"config": asdict(cfg), "command": command, "history": []}
    first = {"epoch": 0, **validate(model, val, savings), "time/wall_s": time.perf_counter() - t0}
    metrics["history"].append(first)  # the untrained model, for scale
    best = np.inf
    for epoch in range(1, cfg.epochs + 1):
        t_epoch, steps = time.perf_counter(), []
        for step in range(cfg.batches_per_epoch):
            steps.append(train_step(model, opt, cfg, rng, g))
            sched.step()
            progress(f"epoch {epoch}/{cfg.epochs}", step + 1, cfg.batches_per_epoch)
        row = {"epoch": epoch, **{f"train/{k}": float(np.mean([s[k] for s in steps]))
                                  for k in ("loss", "cost", "best_cost", "grad_norm", "n")},
               "train/instances": int(sum(s["instances"] for s in steps)), "train/lr": sched.get_last_lr()[0],
               **validate(model, val, savings),
               "time/epoch_s": time.perf_counter() - t_epoch, "time/wall_s": time.perf_counter() - t0}
        metrics["history"].append(row)
        if row["val/gap_to_savings"] < best:
            best = row["val/gap_to_savings"]
            save_router(out, model, {"command": command, "seed": cfg.seed, "config": asdict(cfg), "epoch": epoch,
                                     "val/gap_to_savings": best, "complete": epoch == cfg.epochs})
        metrics["best"] = {"epoch": int(np.argmin([r["val/gap_to_savings"] for r in metrics["history"][1:]])) + 1,
                           "val/gap_to_savings": best}
        metrics["train_s"] = time.perf_counter() - t0
        out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2))
    ckpt = torch.load(out, map_location="cpu", weights_only=True)  # mark the best checkpoint as a finished run's
    ckpt["meta"]["complete"] = True
    torch.save(ckpt, out)
    return metrics
