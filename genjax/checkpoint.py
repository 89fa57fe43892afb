"""Whole-state checkpoints with orbax: save, find the latest, restore.

A checkpoint holds the family's whole train state (params, optimizer state,
batch statistics, EMA, step). Orbax writes each step into a temporary
directory and renames it when complete, so a save interrupted by a crash is
never listed as the latest. Nothing is ever unpickled.
"""

import os

import jax
import orbax.checkpoint as ocp

from genjax.errors import UserError


class Checkpointer:
  """A thin, typed face on `ocp.CheckpointManager` for one train state."""

  def __init__(self, directory: str, keep: int):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(n=keep),
        create=True,
        # Saving overlaps with the next training steps; `wait` joins it.
        enable_async_checkpointing=True,
    )
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

  def restore(self, step: int, like):
    """The state saved at `step`, with the structure, shapes and placement of `like`."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise UserError(
          f"checkpoint: cannot restore step {step} from {self._manager.directory} into this"
          f" model ({first_line[:300]}); use a new --workdir or the config it was trained with") from e
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
