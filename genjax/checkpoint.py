"""Whole-state checkpoints with orbax: save, find the latest, restore.

A checkpoint holds the family's whole train state (params, optimizer state,
batch statistics, EMA, step). Orbax writes each step into a temporary
directory and renames it when complete, so a save interrupted by a crash is
never listed as the latest. Nothing is ever unpickled. A checkpoint of
another model, or an unreadable one, is refused with one line that says what
differs, before anything is written.
"""

import os

import jax
import orbax.checkpoint as ocp

from genjax.errors import UserError


def _leaf_name(path) -> str:
  """'params/encoder/Dense_0/kernel' from a key path, whether of dicts, lists, dataclasses or namedtuples."""
  parts = []
  for entry in path:
    for attr in ("key", "idx", "name"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
  return "/".join(parts)


def _shapes(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  return {_leaf_name(path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def first_difference(saved, expected) -> str | None:
  """The first array in which two trees of arrays (or their metadata) differ, in words; None if none does."""
  have, want = _shapes(saved), _shapes(expected)
  # A parameter names the difference better than the optimizer moment that follows its shape.
  for name in sorted(set(have) | set(want), key=lambda n: ("opt_state" in n, n)):
    if name not in want:
      return f"it holds {name}, which this model does not have"
    if name not in have:
      return f"it lacks {name}, which this model has"
    if have[name] != want[name]:
      (shape, dtype), (model_shape, model_dtype) = have[name], want[name]
      return f"{name} is {dtype}{list(shape)} there, {model_dtype}{list(model_shape)} in this model"
  return None


def _floating(leaf) -> bool:
  return jax.dtypes.issubdtype(leaf.dtype, jax.numpy.inexact)


def non_finite_leaf(tree) -> str | None:
  """The name of the first floating array of `tree` holding a NaN or an infinity; None if every one is finite.

  Computed where the arrays live (one compiled reduction per array, one
  small fetch), so checking a state before it is saved costs no copy of it.
  """
  named = [(_leaf_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
           if _floating(leaf)]
  if not named:
    return None
  flags = jax.device_get(_all_finite_each([leaf for _, leaf in named]))
  for (name, _), ok in zip(named, flags):
    if not ok:
      return name
  return None


@jax.jit
def _all_finite_each(leaves):
  return [jax.numpy.isfinite(leaf).all() for leaf in leaves]


class Checkpointer:
  """A thin, typed face on `ocp.CheckpointManager` for one train state."""

  def __init__(self, directory: str, keep: int, read_only: bool = False):
    """Opens the checkpoints in `directory`, keeping the latest `keep`.

    `read_only` (sample.py, benchmarks) neither creates the directory nor
    deletes anything in it, half-written steps included.
    """
    options = ocp.CheckpointManagerOptions(
        preservation_policy=None if read_only else ocp.checkpoint_managers.LatestN(n=keep),
        create=not read_only,
        read_only=read_only,
        # A step half written when the process died is removed when the next run starts.
        cleanup_tmp_directories=not read_only,
        # Saving overlaps with the next training steps; `wait` joins it.
        enable_async_checkpointing=True,
    )
    # The handler is named up front so that a checkpoint's metadata can be read before restoring it.
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=("state",),
                                          item_handlers={"state": ocp.StandardCheckpointHandler()})
    # Orbax removes the half-written steps on a thread of its own and joins it only in `save`; a run that
    # stops before its first save (bad input) would leave that thread to fail at interpreter exit. Join it now.
    join_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
    if join_cleanup is not None:
      join_cleanup()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state) -> bool:
    """Starts saving `state` as `step` (the copy to the host is done on return); whether orbax took it."""
    return self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

  def restore(self, step: int, like):
    """The state saved at `step`, with the structure, shapes and placement of `like`.

    Raises:
      UserError: the checkpoint holds another model (naming the first array
        that differs) or cannot be read; nothing is written.
    """
    where = f"checkpoint: step {step} in {self._manager.directory}"
    unreadable = (f"; move {os.path.join(str(self._manager.directory), str(step))} away to resume from the"
                  " checkpoint before it, or use a new --workdir")
    try:
      saved = self._manager.item_metadata(step)["state"]
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"{where} is unreadable ({_first_line(e)}){unreadable}") from e
    if saved is None:
      raise UserError(f"{where} is unreadable (no metadata of its state){unreadable}")
    difference = first_difference(saved, like)
    if difference is not None:
      raise UserError(f"{where} was written by another model: {difference}; use a new --workdir, or the config"
                      " the checkpoint was trained with")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except Exception as e:  # pylint: disable=broad-except  (tensorstore, orbax and OS errors alike)
      raise UserError(f"{where} is unreadable ({_first_line(e)}){unreadable}") from e
    bad = non_finite_leaf(restored.state)
    if bad is not None:
      raise UserError(f"{where} holds non-finite values (NaN or infinity in {bad}), which no training or"
                      f" sampling can use{unreadable}")
    return restored.state

  def reached_preemption(self, step: int) -> bool:
    """Whether every process of a multi-host run has agreed to save and stop at `step` (orbax, JAX)."""
    return self._manager.reached_preemption(step)

  def close(self) -> None:
    """Waits for the save in flight, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  line = text.splitlines()[0] if text else type(error).__name__
  return line if len(line) <= 300 else line[:297] + "..."
