"""An exported model folder → everything inference needs: the network, its parameters, the noise
schedule and the noise table.

A model folder holds ``model.json`` (hyperparameters, schedule, training record), ``params/``
(Orbax) and optionally ``prf.json`` (the noise table; :mod:`diffsr_jax.noise_table`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from diffsr_jax import checkpointing, noise_table
from diffsr_jax.models import abstract_params, build_unet
from diffsr_jax.schedules import Schedule, schedule_from_spec

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "default_model")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    model: Any               # the Linen module (static, hashable)
    params: Any              # its parameters (device arrays)
    schedule: Schedule
    meta: dict               # model.json
    noise_table: noise_table.NoiseTable   # prf.json or the fallback (a table's JSON dict is parsed)
    directory: str

    def __post_init__(self):
        if isinstance(self.noise_table, dict):
            object.__setattr__(self, "noise_table", noise_table.parse(self.noise_table))

    @property
    def stride(self) -> int:
        return self.model.total_stride

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_steps


def load_model(checkpoint: Optional[str] = None) -> LoadedModel:
    """Restores an exported model without running ``init`` (abstract tree via eval_shape)."""
    directory = os.path.abspath(os.path.expanduser(checkpoint or DEFAULT_CHECKPOINT))
    if not os.path.isdir(directory):
        raise checkpointing.CheckpointError(f"checkpoint directory not found: {directory}")
    meta = checkpointing.read_model_meta(directory)
    try:
        model = build_unet(**meta["model"])
        schedule = schedule_from_spec(meta["schedule"])
    except (ValueError, KeyError, TypeError) as e:
        raise checkpointing.CheckpointError(f"corrupt checkpoint metadata in {directory}: {e}") from None
    params = checkpointing.load_params(directory, abstract_params(model))
    return LoadedModel(model=model, params=params, schedule=schedule, meta=meta,
                       noise_table=read_noise_table(directory), directory=directory)


def read_noise_table(directory: str) -> noise_table.NoiseTable:
    """The model folder's noise table (the fallback without one); CheckpointError when corrupt."""
    try:
        return noise_table.load(directory)
    except noise_table.NoiseTableError as e:
        raise checkpointing.CheckpointError(f"corrupt PRF table {os.path.join(directory, 'prf.json')}: {e}") from None
