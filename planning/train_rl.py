"""Train the process and pacing controllers with stable-baselines3 (``shopfloor train process|pacing``).

Hyperparameters live in YAML files, RL Zoo style (``planning/hyperparams/<unit>.yml``): ``algo``,
``n_timesteps``, ``n_envs`` and ``randomization`` set up the run, every other key goes to the SB3
algorithm's constructor as it stands. The environment is the unit's own Gymnasium simulator, built
from the scenario's config, behind the safety shield (`planning.shield`) and domain randomisation
(`planning.domain_randomization`). Every ``eval_freq`` steps the deterministic policy is scored on
validation seeds of the *nominal* scenario (shielded, the same seeds every time); the best one is
kept. Validation seeds and the benchmark's held-out seeds (``HELD_OUT_SEEDS``) never meet the
training seeds.

Outputs: ``<out>`` (the SB3 ``.zip``), ``<out stem>.metrics.json`` (command, seed, hyperparameters,
learning curve, wall time) and TensorBoard logs under ``tensorboard_dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from environments.errors import ShopfloorInputError
from environments.scenario import Scenario
from planning.domain_randomization import Randomization
from planning.evaluation import evaluate, unit_env
from planning.rl_controller import RLController

Unit = Literal["process", "pacing"]
HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
POLICIES_DIR = Path(__file__).parent / "policies"
VALIDATION_SEEDS = tuple(range(5_000, 5_008))
HELD_OUT_SEEDS = tuple(range(10_000, 10_020))  # the benchmark's; never used in training or selection


class RLHyperparams(BaseModel):
    """One unit's entry of a hyperparameter file."""

    model_config = ConfigDict(frozen=True, extra="allow")  # extra keys are the algorithm's own

    algo: Literal["sac", "ppo", "td3"] = Field(description="stable-baselines3 algorithm.")
    n_timesteps: int = Field(gt=0, description="Environment steps to train for.")
    n_envs: int = Field(1, ge=1, le=64, description="Environments stepped together (DummyVecEnv).")
    eval_freq: int = Field(10_000, gt=0, description="Steps between validation runs.")
    episode_minutes: float = Field(480.0, gt=0, description="Training episode length, minutes of plant time.")
    randomization: Randomization = Field(default_factory=Randomization)
    policy: str = Field("MlpPolicy", description="SB3 policy name.")

    def algo_kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def load_hyperparams(unit: Unit, path: str | Path | None = None) -> RLHyperparams:
    """The ``unit`` entry of a hyperparameter YAML (the shipped ``planning/hyperparams/<unit>.yml`` by default)."""
    path = Path(path) if path is not None else HYPERPARAMS_DIR / f"{unit}.yml"
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ShopfloorInputError(f"hyperparameter file {str(path)!r} is unreadable ({type(e).__name__}); "
                                  f"allowed: a YAML file like planning/hyperparams/{unit}.yml.") from None
    if not isinstance(doc, dict) or unit not in doc:
        raise ShopfloorInputError(f"hyperparameter file {str(path)!r} has no {unit!r} entry; allowed: a mapping "
                                  f"{{{unit}: {{algo: ..., n_timesteps: ..., ...}}}}.")
    try:
        return RLHyperparams(**doc[unit])
    except ValidationError as e:
        err = e.errors()[0]
        raise ShopfloorInputError(f"{path}: {unit}.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None


def _algorithm(name: str):
    from stable_baselines3 import PPO, SAC, TD3

    return {"sac": SAC, "ppo": PPO, "td3": TD3}[name]


def _validation_callback(unit: Unit, scenario: Scenario, out: Path, eval_freq: int, curve: list[dict]):
    """Every ``eval_freq`` calls: score the deterministic policy on ``VALIDATION_SEEDS`` (the same seeds
    every time, so the scores compare), keep the best at ``out``, log ``eval/mean_reward``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Validate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.best = -np.inf

        def _on_step(self) -> bool:
            if self.n_calls % eval_freq == 0:
                self.validate()
            return True

        def _on_training_end(self) -> None:
            if not curve or curve[-1]["timesteps"] != self.num_timesteps:
                self.validate()

        def validate(self) -> None:
            runs = evaluate(unit, scenario, RLController(self.model), VALIDATION_SEEDS)
            reward = float(np.mean([r["episode_reward"] for r in runs]))
            curve.append({"timesteps": int(self.num_timesteps), "validation_reward": reward})
            self.logger.record("eval/mean_reward", reward)
            if reward > self.best:
                self.best = reward
                self.model.save(out, exclude=["replay_buffer"])

    return Validate()


def train_controller(unit: Unit, scenario: Scenario, hp: RLHyperparams, out: str | Path, seed: int = 0,
                     n_timesteps: int | None = None, tensorboard_dir: str | Path | None = "runs/tensorboard",
                     progress_bar: bool = True, command: str = "") -> dict:
    """Train ``unit``'s controller, keep the best validated policy at ``out``; returns the metrics.

    ``n_timesteps`` overrides the file's (for quick runs). Training uses one torch thread: the networks
    are small, and the second core steps the environments and evaluates.
    """
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_timesteps = n_timesteps or hp.n_timesteps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        train_env = make_vec_env(lambda: unit_env(unit, scenario, hp.randomization, hp.episode_minutes),
                                 n_envs=hp.n_envs, seed=seed)
        model = _algorithm(hp.algo)(hp.policy, train_env, seed=seed, verbose=0, device="cpu",
                                    tensorboard_log=str(tensorboard_dir) if tensorboard_dir else None,
                                    **hp.algo_kwargs())
        curve: list[dict] = []
        validate = _validation_callback(unit, scenario, out, max(1, min(hp.eval_freq, n_timesteps) // hp.n_envs),
                                        curve)
        model.learn(n_timesteps, callback=validate, progress_bar=progress_bar,
                    tb_log_name=f"{unit}_{hp.algo}_seed{seed}")
    finally:
        torch.set_num_threads(threads)
    metrics = {
        "unit": unit,
        "command": command,
        "seed": seed,
        "scenario": scenario.name,
        "algo": hp.algo,
        "hyperparams": hp.model_dump(mode="json"),
        "n_timesteps": n_timesteps,
        "train_s": round(time.perf_counter() - t0, 1),
        "validation_seeds": list(VALIDATION_SEEDS),
        "learning_curve": curve,
        "best_validation_reward": max((c["validation_reward"] for c in curve), default=None),
        "size_bytes": out.stat().st_size,
    }
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
