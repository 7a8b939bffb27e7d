"""Everything that touches Orbax lives here (the only module that imports it).

Two kinds of checkpoint:
- training checkpoints: a CheckpointManager in ``<workdir>/checkpoints`` holding the whole
  TrainState (params, EMA params, optimizer state, step);
- exported models: a directory with ``params/`` (EMA params, Orbax StandardSave) and
  ``model.json`` (UNet hyperparameters + schedule), which is all inference needs. The abstract
  parameter tree comes from ``jax.eval_shape`` so loading never runs ``init``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model it is loaded into."""


def make_manager(directory: str, *, max_to_keep: int = 3) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_train_state(manager: ocp.CheckpointManager, step: int, state: Any) -> bool:
    """Async save (call ``manager.wait_until_finished()`` before exit). False if step exists."""
    return manager.save(int(step), args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Optional[Any]:
    """The newest *complete* checkpoint (Orbax ignores half-written temp dirs), or None."""
    step = manager.latest_step()
    if step is None:
        return None
    return restore_step(manager, step, abstract_state)


def restore_step(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def export_model(directory: str, params: Any, model_hparams: dict, schedule_spec: dict,
                 extra: Optional[dict] = None) -> str:
    """Writes an inference checkpoint atomically (temp dir + rename). Refuses to overwrite."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory):
        raise CheckpointError(f"{directory} exists; refusing to overwrite an exported model")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), jax.device_get(params))
        ckptr.wait_until_finished()
        meta = {"model": model_hparams, "schedule": schedule_spec, **(extra or {})}
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_model_meta(directory: str) -> dict:
    path = os.path.join(directory, "model.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"no model checkpoint at {directory} (missing model.json)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint metadata {path}: {e}") from None
    if "model" not in meta or "schedule" not in meta:
        raise CheckpointError(f"corrupt checkpoint metadata {path}: needs 'model' and 'schedule'")
    return meta


def load_params(directory: str, abstract_params: Any) -> Any:
    """Restores exported params into the structure of ``abstract_params`` (ShapeDtypeStructs)."""
    path = os.path.join(os.path.abspath(directory), "params")
    if not os.path.isdir(path):
        raise CheckpointError(f"no parameters in checkpoint {directory} (missing params/)")
    # Orbax restores each array at its stored shape whatever the target says: a model.json that
    # disagrees with params/ would only fail at the first forward pass, deep inside Flax. So the
    # stored tree (Orbax's metadata, when it can be read) and then the restored one are checked.
    what = f"{path} does not match the architecture in model.json"
    ckptr = ocp.StandardCheckpointer()
    try:
        meta = ckptr.metadata(path)
        stored = _shapes(getattr(meta, "item_metadata", meta))
    except Exception:  # no or unreadable metadata: the restore below reports what is wrong
        stored = None
    if stored:
        _compare_shapes(stored, _shapes(abstract_params), what)
    try:
        params = ckptr.restore(path, abstract_params)
    except Exception as e:  # Orbax raises a variety of types for truncated/mismatched data
        raise CheckpointError(f"cannot restore parameters from {path}: {type(e).__name__}: {e}") from None
    check_tree_matches(params, abstract_params, what)
    return params


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shapes(tree: Any) -> dict:
    """{"Conv_0/bias": shape} for a tree of arrays, ShapeDtypeStructs or Orbax array metadata."""
    return {_path_str(p): tuple(x.shape if hasattr(x, "shape") else jnp.shape(x))
            for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def check_tree_matches(tree: Any, abstract: Any, what: str) -> None:
    """CheckpointError ``"<what>: ..."`` naming the first differences when ``tree``'s leaf paths
    or shapes differ from ``abstract``'s (a tree of ShapeDtypeStructs); None when they agree."""
    _compare_shapes(_shapes(tree), _shapes(abstract), what)


def _compare_shapes(got: dict, want: dict, what: str) -> None:
    wrong = [k for k in want if k in got and got[k] != want[k]]
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    problems = []
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} parameter(s) of another shape, e.g. {k} is {got[k]} in the checkpoint "
                        f"but {want[k]} for the architecture")
    if missing:
        problems.append(f"{len(missing)} parameter(s) missing, e.g. {missing[0]}")
    if extra:
        problems.append(f"{len(extra)} unexpected parameter(s), e.g. {extra[0]}")
    if problems:
        raise CheckpointError(f"{what}: {'; '.join(problems)}")
