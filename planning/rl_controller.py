"""A trained stable-baselines3 policy as a plant controller (``agents.<unit>.policy: rl[:<path>]``).

The policy acts on exactly the observation its Gymnasium environment gives, so it runs unchanged in
the Plant; the plant's SafetyAgent applies the same checks the policy was trained behind
(`planning.shield`). Loading checks that the policy's spaces match the scenario's unit, so a pacing
policy for a four-station line is refused for a five-station one with a one-line reason.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from environments.errors import ShopfloorInputError

POLICIES_DIR = Path(__file__).parent / "policies"
SHIPPED_POLICIES = {"process": POLICIES_DIR / "process_sac.zip", "pacing": POLICIES_DIR / "pacing_sac.zip"}


def load_rl_policy(path: str | os.PathLike):
    """Load an SB3 policy written by ``shopfloor train process|pacing`` (the algorithm is read from the
    metrics file beside it, else tried in turn)."""
    from stable_baselines3 import PPO, SAC, TD3

    path = Path(path)
    if not path.is_file():
        raise ShopfloorInputError(f"RL policy {str(path)!r} does not exist; allowed: a .zip written by "
                                  "`shopfloor train process` or `shopfloor train pacing`.")
    algos = {"sac": SAC, "ppo": PPO, "td3": TD3}
    metrics = path.with_suffix(".metrics.json")
    order = list(algos)
    if metrics.is_file():
        named = json.loads(metrics.read_text()).get("algo")
        order = [named] + [a for a in order if a != named] if named in algos else order
    errors = []
    for name in order:
        try:
            return algos[name].load(path, device="cpu")
        except Exception as e:  # SB3 raises many types for a foreign or mismatched file
            errors.append(f"{name}: {type(e).__name__}")
    raise ShopfloorInputError(f"{str(path)!r} is not a stable-baselines3 policy ({', '.join(errors)}); allowed: "
                              "a .zip written by `shopfloor train process|pacing`.")


@lru_cache(maxsize=8)
def _cached_policy(path: str, mtime: float):
    """Policies are stateless at inference: one loaded copy per file serves every seed of a study."""
    return load_rl_policy(path)


class RLController:
    """``act(observation) -> action`` with a trained SB3 policy, deterministic.

    ``RLController(model)`` wraps a policy in memory (training validates this way);
    ``RLController.load(path, observation_space, action_space)`` loads the file and refuses a policy
    trained for other spaces.
    """

    def __init__(self, model):
        self.model = model

    @classmethod
    def load(cls, path: str | os.PathLike, observation_space=None, action_space=None) -> RLController:
        path = Path(path)
        if not path.is_file():
            load_rl_policy(path)  # raises the one-line error
        model = _cached_policy(str(path.resolve()), path.stat().st_mtime)
        for what, want, have in (("observation", observation_space, model.observation_space),
                                 ("action", action_space, model.action_space)):
            if want is not None and (want.shape != have.shape):
                raise ShopfloorInputError(f"RL policy {str(path)!r} was trained for {what} shape {have.shape}; "
                                          f"this plant's unit has {want.shape}; retrain it for this scenario.")
        return cls(model)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(np.asarray(observation, dtype=np.float32), deterministic=True)
        return np.asarray(action, dtype=np.float32)
