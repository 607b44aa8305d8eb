"""Gymnasium simulators of the plant: process unit, line, fleet, and the whole Plant (PettingZoo).

Importing this package registers the single-agent environments with Gymnasium:

| id                          | class                                   |
|-----------------------------|-----------------------------------------|
| shopfloor/ProcessControl-v0 | environments.process_control.ProcessControlEnv |
| shopfloor/LinePacing-v0     | environments.line_pacing.LinePacingEnv  |
| shopfloor/Dispatch-v0       | environments.dispatch.DispatchEnv       |

The whole plant is `environments.plant.ShopfloorPlant`, a PettingZoo ParallelEnv.
"""

from gymnasium.envs.registration import register, registry

ENVIRONMENTS = {
    "shopfloor/ProcessControl-v0": "environments.process_control:ProcessControlEnv",
    "shopfloor/LinePacing-v0": "environments.line_pacing:LinePacingEnv",
    "shopfloor/Dispatch-v0": "environments.dispatch:DispatchEnv",
}
PLANT = "environments.plant:ShopfloorPlant"

for _env_id, _entry_point in ENVIRONMENTS.items():
    if _env_id not in registry:
        # The envs truncate themselves after their episode length; no TimeLimit wrapper on top.
        register(id=_env_id, entry_point=_entry_point)
