"""`shopfloor train ...`: reproduce every shipped model from a seed. One command per model.

Each command shows a progress bar, writes the weights and a metrics file next to them, and records
the command line that made them. The defaults reproduce the shipped weights.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cluster.cli_common import StagedProgress, console, fail_on_bad_input
from environments.errors import ShopfloorInputError

train_app = typer.Typer(no_args_is_help=True, help="Train a model; the defaults reproduce the shipped weights.")


def _command_line() -> str:
    return "shopfloor " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _int_list(option: str, text: str | None, default: tuple[int, ...], example: str) -> tuple[int, ...]:
    """Comma-separated ints of a CLI option, or ``default`` when it is not given."""
    try:
        return default if text is None else tuple(int(c) for c in text.split(","))
    except ValueError:
        raise ShopfloorInputError(f"{option} {text!r} is invalid; allowed: comma-separated ints, one per conv layer, "
                                  f"e.g. {example}.") from None


@train_app.command("defect-cnn")
@fail_on_bad_input
def defect_cnn(
    seed: Annotated[int, typer.Option(help="Seed of the data, the initialisation and the batches.")] = 0,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (a .metrics.json goes beside it).")] = Path(
        "perception/weights/defect_cnn.pt"),
    n_train: Annotated[int, typer.Option(min=1, help="Rendered training images.")] = 96_000,
    n_val: Annotated[int, typer.Option(min=1, help="Rendered validation images.")] = 3_000,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    lr: Annotated[float, typer.Option(min=1e-6, max=1.0, help="Peak learning rate of the one-cycle schedule.")] = 3e-3,
    image_size: Annotated[int, typer.Option(min=32, max=256, help="Image side in pixels.")] = 96,
    train_shift: Annotated[str, typer.Option(help="Imaging conditions of the training images: randomized (uniform "
                                                  "over the ranges) or randomized_harsh (weighted to dim, low, "
                                                  "noisy light).")] = "randomized_harsh",
    val_shift: Annotated[str, typer.Option(help="Imaging conditions of the validation images, which pick the epoch "
                                                "and calibrate the reject thresholds: randomized or "
                                                "randomized_harsh.")] = "randomized_harsh",
    channels: Annotated[str | None, typer.Option(help="Output channels of the five conv layers, comma-separated, "
                                                      "e.g. 16,32,96,128,128 (the first layer's width sets the "
                                                      "speed); default: the shipped network's.")] = None,
    residual_blocks: Annotated[str | None, typer.Option(help="Residual blocks after each of the five conv layers, "
                                                             "comma-separated, e.g. 0,1,2,1,0; default: the shipped "
                                                             "network's.")] = None,
    init: Annotated[Path | None, typer.Option(help="Start from this defect CNN checkpoint (same channels, no more "
                                                   "residual blocks; new ones start as the identity) and train on "
                                                   "a fresh rendered set; give a new --seed so the set is new.")] = None,
    views: Annotated[int, typer.Option(help="Test-time views (turned and mirrored copies averaged) the checkpoint "
                                            "uses by default: 1, 2, 4 or 8; thresholds are calibrated for all.")] = 4,
    bf16: Annotated[bool | None, typer.Option("--bf16/--fp32", help="Train under bfloat16 autocast, or in float32; "
                                                                   "default: bf16 where the CPU has it natively.",
                                              show_default=False)] = None,
    unshuffle: Annotated[int, typer.Option(help="Space-to-depth before the first conv layer: 1 (none), 2 or 4 "
                                                "pixels per side folded into channels.")] = 1,
    teacher: Annotated[Path | None, typer.Option(help="Distil this defect CNN checkpoint (at --teacher-views) into "
                                                      "the new one, beside the labels.")] = None,
    teacher_views: Annotated[int, typer.Option(help="The teacher's test-time views: 1, 2, 4 or 8.")] = 4,
    distill_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Weight of the teacher's target; the "
                                                                        "labels' cross-entropy gets the rest.")] = 0.8,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny run (tests, smoke checks): 700 images, 1 epoch.")] = False,
) -> None:
    """Train the defect CNN on rendered, domain-randomised parts and calibrate its reject threshold.

    The shipped CNN is a chain of five runs, listed with their commands in perception/train_defect_cnn.py;
    they predate the 96 px and harsh-validation-light defaults, so they spell out ``--val-shift randomized``
    (and runs 1-4 ``--image-size 64``)."""
    from perception.train_defect_cnn import DefectCNNTrainConfig, train_defect_cnn

    if quick:
        n_train, n_val, epochs = 600, 100, 1
    widths = _int_list("--channels", channels, DefectCNNTrainConfig().channels, "16,32,96,128,128")
    blocks = _int_list("--residual-blocks", residual_blocks, DefectCNNTrainConfig().residual_blocks, "0,1,2,1,0")
    cfg = DefectCNNTrainConfig(seed=seed, image_size=image_size, channels=widths, residual_blocks=blocks,
                               n_train=n_train, n_val=n_val, epochs=epochs, lr=lr, train_shift=train_shift,
                               val_shift=val_shift, init=None if init is None else str(init), views=views, bf16=bf16,
                               unshuffle=unshuffle, teacher=None if teacher is None else str(teacher),
                               teacher_views=teacher_views, distill_weight=distill_weight)
    with StagedProgress() as progress:
        metrics = train_defect_cnn(cfg, out, progress, command=_command_line())
    val = metrics["validation"]
    table = Table(title=f"defect CNN, validation ({val['n']} parts)")
    for col in ("accuracy", "defect_escape_rate", "false_alarm_rate", "auroc", "train s"):
        table.add_column(col, justify="right")
    table.add_row(f"{val['accuracy']:.4f}", f"{val['defect_escape_rate']:.4f}", f"{val['false_alarm_rate']:.4f}",
                  f"{val['auroc']:.4f}", f"{metrics['render_s'] + metrics['train_s']:.0f}")
    console.print(table)
    console.print(f"weights: {out}  metrics: {Path(out).with_suffix('.metrics.json')}")


@train_app.command("clip")
@fail_on_bad_input
def clip(
    seed: Annotated[int, typer.Option(help="Seed of the data, the initialisation and the batches.")] = 0,
    out: Annotated[Path, typer.Option(help="open_clip local-dir checkpoint directory to write.")] = Path(
        "perception/weights/parts_clip"),
    defect_cnn: Annotated[str, typer.Option(
        help="Defect CNN checkpoint whose convolutions start (and stay locked in) the image tower; "
             "'shipped' is perception/weights/defect_cnn_64px.pt (CLIP sees 64 px parts), 'none' trains the "
             "tower from scratch.")] = "shipped",
    n_train: Annotated[int | None, typer.Option(min=2, help="Rendered training parts (twin pairs count as two); "
                                                          "default: the recipe's.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: the recipe's.")] = None,
    train_shift: Annotated[str | None, typer.Option(help="Imaging conditions of the training parts: randomized or "
                                                         "randomized_harsh; default: the recipe's.")] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--fp32", help="Run the locked defect-CNN trunk over the "
                                                                   "training parts in bfloat16, or in float32; "
                                                                   "default: bf16 where the CPU has it natively.",
                                              show_default=False)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny run (tests, smoke checks).")] = False,
) -> None:
    """Train the parts CLIP contrastively on rendered parts and captions, holding some combinations out."""
    from perception.train_clip import CLIPTrainConfig, train_clip

    init = None if defect_cnn.lower() == "none" else defect_cnn
    chosen = {k: v for k, v in (("n_train", n_train), ("epochs", epochs), ("train_shift", train_shift)) if v is not None}
    cfg = CLIPTrainConfig(seed=seed, vision_init=init, bf16=bf16, **chosen)
    if quick:
        cfg = CLIPTrainConfig(seed=seed, n_train=512, n_val=64, n_val_held_out=64, epochs=1, batch_size=128,
                              vision_init=init, bf16=bf16)
    with StagedProgress() as progress:
        metrics = train_clip(cfg, out, progress, command=_command_line())
    console.print_json(data={k: v for k, v in metrics.items() if not isinstance(v, (list, dict)) or k == "validation"})
    console.print(f"weights: {out}")


@train_app.command("speech")
@fail_on_bad_input
def speech(
    seed: Annotated[int, typer.Option(help="Seed of the sentences, voices, noise, initialisation and batches.")] = 0,
    out: Annotated[Path, typer.Option(help="Adapter to write (a .metrics.json goes beside it).")] = Path(
        "perception/weights/speech_adapter.pt"),
    n_train: Annotated[int, typer.Option(min=1, help="Synthetic training clips (espeak-ng).")] = 2_400,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny run (tests, smoke checks): 48 clips, 1 epoch.")
                     ] = False,
) -> None:
    """Train the low-rank speech adapter that tunes tiny.en to spoken plant commands (needs espeak-ng, sox)."""
    from perception.train_speech import SpeechTrainConfig, train_speech_adapter

    cfg = (SpeechTrainConfig(seed=seed, n_train=48, n_val=16, epochs=1) if quick
           else SpeechTrainConfig(seed=seed, n_train=n_train, epochs=epochs))
    with StagedProgress() as progress:
        metrics = train_speech_adapter(cfg, out, progress, command=_command_line())
    table = Table(title=f"speech adapter, teacher-forced on {cfg.n_val} validation clips")
    for col in ("epoch", "validation loss", "token accuracy"):
        table.add_column(col, justify="right")
    for row in metrics["history"]:
        table.add_row(str(row["epoch"]), f"{row['val_loss']:.4f}", f"{row['val_token_accuracy']:.4f}")
    console.print(table)
    console.print(f"best epoch {metrics['best_epoch']}; render {metrics['render_s']:.0f} s, train "
                  f"{metrics['train_s']:.0f} s; adapter: {out}")


@train_app.command("router")
@fail_on_bad_input
def router(
    seed: Annotated[int, typer.Option(help="Seed of the instances, the initialisation and the sampled rollouts.")] = 0,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (a .metrics.json goes beside it).")] = Path(
        "planning/policies/router.pt"),
    expert_instances: Annotated[int, typer.Option(min=0, help="Instances the expert solves for imitation "
                                                               "(0: REINFORCE alone).")] = 12_000,
    imitation_epochs: Annotated[int, typer.Option(min=0, help="Epochs of imitation.")] = 8,
    epochs: Annotated[int, typer.Option(min=0, help="Epochs of REINFORCE after imitation.")] = 50,
    batches_per_epoch: Annotated[int, typer.Option(min=1, help="Gradient steps per epoch.")] = 40,
    d_model: Annotated[int, typer.Option(min=8, max=512, help="Width of the encoder and decoder (a multiple of "
                                                              "the 4 heads); the feed-forward is twice it. A step "
                                                              "costs about (d_model / 64)^2 of the default's.")] = 64,
    layers: Annotated[int, typer.Option(min=1, max=12, help="Graph-attention layers of the encoder.")] = 4,
    init: Annotated[Path | None, typer.Option(help="Train on from this router checkpoint (of the same size) "
                                                   "instead of random weights.")] = None,
    lr: Annotated[float, typer.Option(min=1e-7, max=1.0, help="First learning rate of the REINFORCE phase; it "
                                                              "falls along a cosine to 2e-5 or to itself if lower.")] = 1e-4,
    val_instances: Annotated[int, typer.Option(min=3, help="Validation instances (20, 50 and 100 customers in "
                                                           "turn) that pick the best epoch.")] = 60,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny run (tests, smoke checks): 10-20 customers, "
                                                        "3 epochs of 3 steps.")] = False,
) -> None:
    """Train the GNN route planner on generated CVRP instances: imitation of a search's routes, then
    REINFORCE with POMO's shared baseline. With ``--init``, training goes on from a checkpoint (use
    ``--expert-instances 0`` to go straight to REINFORCE)."""
    from planning.route_model import RouteModelDims
    from planning.train_router import RouterTrainConfig, quick_config, train_router

    dims = RouteModelDims(d_model=d_model, d_ff=2 * d_model, n_layer=layers)
    init_path = None if init is None else str(init)
    cfg = replace(quick_config(seed), dims=dims, init=init_path) if quick else RouterTrainConfig(
        seed=seed, expert_instances=expert_instances, imitation_epochs=imitation_epochs, epochs=epochs,
        batches_per_epoch=batches_per_epoch, dims=dims, init=init_path, lr=lr,
        lr_final=min(RouterTrainConfig.lr_final, lr), n_val=val_instances)
    with StagedProgress() as progress:
        metrics = train_router(cfg, out, progress, command=_command_line())
    table = Table(title=f"route planner, greedy on {cfg.n_val} validation instances")
    for col in ("epoch", "phase", "gap to savings", *(f"n={n}" for n in sorted(set(cfg.val_sizes))), "train s"):
        table.add_column(col, justify="right")
    for row in metrics["history"]:
        table.add_row(str(row["epoch"]), row["phase"], f"{row['val/gap_to_savings']:+.1%}",
                      *(f"{row[f'val/gap_to_savings_n{n}']:+.1%}" for n in sorted(set(cfg.val_sizes))),
                      f"{row['time/wall_s']:.0f}")
    console.print(table)
    console.print(f"weights: {out} (best epoch {metrics['best']['epoch']})  "
                  f"metrics: {Path(out).with_suffix('.metrics.json')}")


def _train_controller(unit: str, seed: int, out: Path | None, scenario: Path, hyperparams: Path | None,
                      timesteps: int | None, quick: bool, tensorboard: Path | None) -> None:
    from environments.scenario import load_scenario
    from planning.rl_controller import SHIPPED_POLICIES
    from planning.train_rl import load_hyperparams, train_controller

    hp = load_hyperparams(unit, hyperparams)
    if quick:  # a smoke run: a few hundred steps, validated once, two-hour episodes
        hp = hp.model_copy(update={"eval_freq": 600, "episode_minutes": 120.0, "n_envs": 1,
                                   **({"learning_starts": 100} if hp.algo != "ppo" else {"n_steps": 200})})
        timesteps = timesteps or 600
    out = out or SHIPPED_POLICIES[unit]
    metrics = train_controller(unit, load_scenario(scenario), hp, out, seed=seed, n_timesteps=timesteps,
                               tensorboard_dir=tensorboard, progress_bar=True, command=_command_line())
    table = Table(title=f"{unit} controller ({hp.algo.upper()}), validation reward on the nominal scenario")
    for col in ("timesteps", "mean episode reward"):
        table.add_column(col, justify="right")
    for row in metrics["learning_curve"]:
        table.add_row(str(row["timesteps"]), f"{row['validation_reward']:.1f}")
    console.print(table)
    console.print(f"policy: {out} ({metrics['size_bytes'] / 1e6:.2f} MB, {metrics['train_s']:.0f} s)  "
                  f"metrics: {Path(out).with_suffix('.metrics.json')}")


_SCENARIO_OPT = Annotated[Path, typer.Option(help="Scenario whose unit config, limits and tick the policy is trained "
                                                  "for.")]
_HP_OPT = Annotated[Path | None, typer.Option(help="Hyperparameter YAML (RL Zoo style); default "
                                                      "planning/hyperparams/<unit>.yml.")]
_STEPS_OPT = Annotated[int | None, typer.Option(min=1, help="Override the file's n_timesteps.")]
_QUICK_OPT = Annotated[bool, typer.Option("--quick", help="A tiny run (tests, smoke checks): 600 steps.")]
_TB_OPT = Annotated[Path | None, typer.Option(help="TensorBoard log directory.")]


def _controller_command(unit: str, summary: str) -> None:
    """Register ``shopfloor train <unit>`` (process and pacing take the same options)."""

    @train_app.command(unit, help=summary)
    @fail_on_bad_input
    def command(
        seed: Annotated[int, typer.Option(help="Seed of the policy, the environments and the randomisation.")] = 0,
        out: Annotated[Path | None, typer.Option(help="Policy .zip to write (a .metrics.json goes beside it); "
                                                      "default planning/policies/<unit>_sac.zip.")] = None,
        scenario: _SCENARIO_OPT = Path("scenarios/smart_factory.yaml"),
        hyperparams: _HP_OPT = None,
        timesteps: _STEPS_OPT = None,
        quick: _QUICK_OPT = False,
        tensorboard: _TB_OPT = Path("runs/tensorboard"),
    ) -> None:
        _train_controller(unit, seed, out, scenario, hyperparams, timesteps, quick, tensorboard)


_controller_command("process", "Train the reactor's setpoint controller (SAC) on the process simulator, behind the "
                               "safety shield.")
_controller_command("pacing", "Train the line's pacing controller (SAC: release rate and station speeds) on the line "
                              "simulator, behind the safety shield.")
