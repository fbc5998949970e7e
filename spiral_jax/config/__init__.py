"""The training configuration (``schema``: the grouped, validated dataclasses) and its ConfigDict
side (``dicts``: experiment files, ``--config.x=y`` overrides, ``config.json``)."""
from spiral_jax.config.schema import (OPPONENTS, CheckpointConfig, EvalConfig, GameSpec,
                                      MeshConfig, OptimConfig, RLConfig, SamplingConfig,
                                      TrainConfig, WarmStartConfig, check_files,
                                      check_rae_groups)
from spiral_jax.config.dicts import (RENAMED, defaults, from_config_dict, load_run, save,
                                     to_config_dict)

__all__ = ["OPPONENTS", "RENAMED", "CheckpointConfig", "EvalConfig", "GameSpec", "MeshConfig",
           "OptimConfig", "RLConfig", "SamplingConfig", "TrainConfig", "WarmStartConfig",
           "check_files", "check_rae_groups", "defaults", "from_config_dict", "load_run", "save",
           "to_config_dict"]
