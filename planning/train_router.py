"""Train the GNN route planner (``shopfloor train router``).

Two phases. First the planner imitates a search's solutions (`planning.imitation`): ``imitation_epochs``
epochs of teacher-forced steps over ``expert_instances`` generated instances, each solved by savings and
ruin and recreate. Then it is fine-tuned on its own rollouts for ``epochs`` epochs, as follows.

Fine-tuning: REINFORCE with POMO's shared baseline (Kwon et al. 2020, "POMO: Policy Optimization with
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

Seeds in use: training instances ``1_000_003 * seed + 21``; the expert set ``1_000_003 * seed + 22``;
validation ``VAL_SEED``. Benchmarks must draw their held-out instances from other seeds.
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
from planning.imitation import ExpertSolution, expert_dataset, imitation_loss
from planning.route_model import RouteModel, RouteModelDims, load_router, make_batch, save_router, solve_many

__all__ = ["RouterTrainConfig", "quick_config", "train_router", "load_router", "validation_set"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)
VAL_SEED = 6_000_017


@dataclass(frozen=True)
class RouterTrainConfig:
    seed: int = 0
    """Seed of the instances, the initialisation and the sampled rollouts."""
    expert_instances: int = 12_000
    """Generated instances solved by the expert for the imitation phase (0: no imitation phase)."""
    expert_iterations: int = 60
    """Ruin-and-recreate iterations per customer of the expert (`planning.imitation.expert_routes`)."""
    imitation_epochs: int = 8
    """Epochs of imitation, ``batches_per_epoch`` steps each; validation and the checkpoint come after each."""
    imitation_batch: int = 128
    """Expert solutions per imitation step."""
    imitation_lr: float = 1e-3
    """Adam's first learning rate in the imitation phase; it falls along a cosine to ``lr_final``."""
    epochs: int = 50
    """Epochs of REINFORCE fine-tuning after imitation."""
    batches_per_epoch: int = 40
    """Gradient steps per epoch."""
    rollouts_per_batch: int = 1000
    """Instances x starts per gradient step (the memory and time of a step grow with it)."""
    max_starts: int = 50
    """POMO starts per instance: min(n, max_starts) different first customers, drawn at random when fewer than n."""
    instances: GeneratorConfig = GeneratorConfig()
    """What the training and validation instances are drawn from, including n_min..n_max."""
    lr: float = 1e-4
    """Adam's first learning rate in the REINFORCE phase, falling along a cosine to ``lr_final`` (POMO's
    1e-4: the imitated planner is a starting point to keep, not to shake)."""
    lr_final: float = 2e-5
    """The learning rate at the last step of each phase."""
    weight_decay: float = 1e-6
    """Adam's L2 penalty (POMO's)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    n_val: int = 60
    """Validation instances."""
    val_sizes: tuple[int, ...] = (20, 50, 100)
    """Customers of the validation instances, in turn."""
    dims: RouteModelDims = RouteModelDims()
    """The model's size (the default is ~0.16 M parameters, 0.7 MB of weights)."""
    threads: int = 2
    """torch threads (the machines here have 2 cores; use 1 when something else runs beside training)."""
    workers: int | None = None
    """Processes that solve the expert set (default: the CPUs available)."""
    init: str | None = None
    """A checkpoint of `shopfloor train router` to start from instead of random weights (training on); its
    model size must be ``dims``. Its meta is recorded, so a chain of runs stays reproducible."""

    def __post_init__(self) -> None:
        for name in ("batches_per_epoch", "rollouts_per_batch", "max_starts", "n_val", "threads",
                     "expert_iterations", "imitation_batch"):
            if getattr(self, name) < 1:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 1.")
        for name in ("epochs", "imitation_epochs", "expert_instances"):
            if getattr(self, name) < 0:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 0.")
        if self.epochs + (self.imitation_epochs if self.expert_instances else 0) < 1:
            raise ShopfloorInputError("no training: allowed: epochs >= 1, or imitation_epochs >= 1 with "
                                      "expert_instances >= 1.")
        if not self.val_sizes or min(self.val_sizes) < 1:
            raise ShopfloorInputError(f"val_sizes={self.val_sizes} is invalid; allowed: customer counts >= 1.")
        if not 0 < self.lr_final <= min(self.lr, self.imitation_lr) or self.max_grad_norm <= 0:
            raise ShopfloorInputError(f"lr={self.lr}, imitation_lr={self.imitation_lr}, lr_final={self.lr_final}, "
                                      f"max_grad_norm={self.max_grad_norm} are invalid; allowed: "
                                      "0 < lr_final <= lr, imitation_lr and max_grad_norm > 0.")


def quick_config(seed: int = 0) -> RouterTrainConfig:
    """A tiny run for tests and smoke checks (seconds): small instances, 2 imitation epochs and 1 of
    REINFORCE, of 3 steps each."""
    return replace(RouterTrainConfig(seed=seed), expert_instances=64, expert_iterations=10, imitation_epochs=2,
                   imitation_batch=32, epochs=1, batches_per_epoch=3, rollouts_per_batch=200, max_starts=20,
                   instances=replace(GeneratorConfig(), n_min=10, n_max=20), n_val=6, val_sizes=(10, 20),
                   workers=1)


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
    grad_norm = _descend(model, opt, loss, cfg)
    cost = out.cost.double() * batch.scale[:, None]
    return {"loss": float(loss.detach()), "cost": float(cost.mean()), "best_cost": float(cost.min(1).values.mean()),
            "grad_norm": grad_norm, "n": n, "instances": len(instances)}


def _descend(model: RouteModel, opt: torch.optim.Optimizer, loss: torch.Tensor, cfg: RouterTrainConfig) -> float:
    """One clipped gradient step on ``loss``; returns the gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    return float(grad_norm)


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


def imitation_step(model: RouteModel, opt: torch.optim.Optimizer, cfg: RouterTrainConfig,
                   solutions: list[ExpertSolution], rng: np.random.Generator) -> dict:
    """One teacher-forced step on ``solutions``; returns the step's metrics."""
    model.train()
    loss = imitation_loss(model, solutions, rng)
    grad_norm = _descend(model, opt, loss, cfg)
    return {"loss": float(loss.detach()), "grad_norm": grad_norm,
            "n": float(np.mean([s[0].n_customers for s in solutions])), "instances": len(solutions)}


def _train(cfg: RouterTrainConfig, out: Path, progress: Progress, command: str) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(1_000_003 * cfg.seed + 21)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    val = validation_set(cfg)
    savings = np.array([solution_cost(inst, clarke_wright_savings(inst)) for inst in val])
    model = RouteModel(cfg.dims)
    metrics = {"config": asdict(cfg), "command": command, "history": []}
    if cfg.init is not None:
        start, ckpt = load_router(cfg.init)
        if start.dims != cfg.dims:
            raise ShopfloorInputError(f"--init {cfg.init!r} has the model size {asdict(start.dims)}; allowed: a "
                                      f"checkpoint of this run's size, {asdict(cfg.dims)}.")
        model.load_state_dict(start.state_dict())
        metrics["init"] = {"path": cfg.init, **{k: ckpt["meta"].get(k) for k in ("command", "seed", "epoch", "init")}}
    first = {"epoch": 0, "phase": "untrained" if cfg.init is None else "init", **validate(model, val, savings),
             "time/wall_s": time.perf_counter() - t0}
    metrics["history"].append(first)  # the starting model, for scale
    best = np.inf
    if cfg.init is not None:  # training on keeps the start unless an epoch beats it on validation
        best = first["val/gap_to_savings"]
        save_router(out, model, {"command": command, "seed": cfg.seed, "config": asdict(cfg), "epoch": 0,
                                 "phase": "init", "val/gap_to_savings": best, "complete": False,
                                 "init": metrics["init"]})
        metrics["best"] = {"epoch": 0, "val/gap_to_savings": best}
    # (phase, epochs, first learning rate, one step given the optimiser)
    phases: list[tuple[str, int, float, Callable[[torch.optim.Optimizer], dict]]] = []
    if cfg.expert_instances and cfg.imitation_epochs:
        solved = [0]

        def expert_progress(k: int) -> None:
            solved[0] += k
            progress("expert routes", solved[0], cfg.expert_instances)

        t_expert = time.perf_counter()
        experts = expert_dataset(1_000_003 * cfg.seed + 22, cfg.expert_instances, cfg.instances,
                                 cfg.expert_iterations, cfg.workers, expert_progress)
        metrics["expert_s"] = time.perf_counter() - t_expert
        # Batches of similar sizes pad little: sort by n, and draw each batch as a run of neighbours.
        experts.sort(key=lambda s: s[0].n_customers)
        size = min(cfg.imitation_batch, len(experts))

        def imitate(opt: torch.optim.Optimizer) -> dict:
            a = int(rng.integers(0, len(experts) - size + 1))
            return imitation_step(model, opt, cfg, experts[a:a + size], rng)

        phases.append(("imitation", cfg.imitation_epochs, cfg.imitation_lr, imitate))
    if cfg.epochs:
        phases.append(("reinforce", cfg.epochs, cfg.lr, lambda opt: train_step(model, opt, cfg, rng, g)))
    epoch = 0
    for phase, n_epochs, lr, step_once in phases:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_epochs * cfg.batches_per_epoch,
                                                           eta_min=cfg.lr_final)
        for k in range(1, n_epochs + 1):
            epoch += 1
            t_epoch, steps = time.perf_counter(), []
            for step in range(cfg.batches_per_epoch):
                steps.append(step_once(opt))
                sched.step()
                progress(f"{phase} {k}/{n_epochs}", step + 1, cfg.batches_per_epoch)
            row = {"epoch": epoch, "phase": phase,
                   **{f"train/{key}": float(np.mean([s[key] for s in steps])) for key in steps[0] if key != "instances"},
                   "train/instances": int(sum(s["instances"] for s in steps)), "train/lr": sched.get_last_lr()[0],
                   **validate(model, val, savings),
                   "time/epoch_s": time.perf_counter() - t_epoch, "time/wall_s": time.perf_counter() - t0}
            metrics["history"].append(row)
            if row["val/gap_to_savings"] < best:
                best = row["val/gap_to_savings"]
                last = phase == phases[-1][0] and k == n_epochs
                save_router(out, model, {"command": command, "seed": cfg.seed, "config": asdict(cfg), "epoch": epoch,
                                         "phase": phase, "val/gap_to_savings": best, "complete": last,
                                         "init": metrics.get("init")})
            ranked = metrics["history"][0 if cfg.init is not None else 1:]  # a random start is never kept
            metrics["best"] = {"epoch": ranked[int(np.argmin([r["val/gap_to_savings"] for r in ranked]))]["epoch"],
                               "val/gap_to_savings": best}
            metrics["train_s"] = time.perf_counter() - t0
            out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2))
    ckpt = torch.load(out, map_location="cpu", weights_only=True)  # mark the best checkpoint as a finished run's
    ckpt["meta"]["complete"] = True
    torch.save(ckpt, out)
    return metrics
