"""Whole-state checkpoints with orbax: save, find the latest, restore.

A checkpoint holds the family's whole train state (params, optimizer state,
batch statistics, EMA, step). Orbax writes each step into a temporary
directory and renames it when complete, so a save interrupted by a crash is
never listed as the latest. Nothing is ever unpickled. A checkpoint of
another model, or an unreadable one, is refused with one line that says what
differs, before anything is written. A save that finds the disk or quota
full is one line too (DiskFullError), and leaves only complete checkpoints.
"""

import errno
import re
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

from genjax import paths
from genjax.errors import (CheckpointWriteError, DiskFullError, UserError, disk_full_cause, os_error_cause,
                           os_error_words)

TMP_MARK = ".orbax-checkpoint-tmp"  # orbax writes a step under this name and renames it when complete
# restore_latest: how many steps to read while a live run keeps replacing the newest. A read takes about as
# long as a tiny model's save interval on a busy CPU, so a run with keep_checkpoints=1 can replace a few in a row.
RESTORE_ATTEMPTS = 10


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
    self._directory = paths.absolute(directory)  # a gs:// one as it is: orbax writes it through tensorstore
    self._read_only = read_only
    self._in_flight: int | None = None  # the step whose asynchronous save has not been joined yet
    self._last_started: int | None = None  # the step of the last save started (the one close() can still find failed)
    self._partial_left = False  # a save failed: its half-written step directory is removed again on close
    # The handler is named up front so that a checkpoint's metadata can be read before restoring it.
    for attempt in range(RESTORE_ATTEMPTS):
      try:
        self._manager = ocp.CheckpointManager(self._directory, options=options, item_names=("state",),
                                              item_handlers={"state": ocp.StandardCheckpointHandler()})
        break
      except FileNotFoundError:
        # Orbax lists the steps as it opens; a live run may remove one (keep_checkpoints) while it does.
        if not read_only or attempt == RESTORE_ATTEMPTS - 1:
          raise
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
    """Starts saving `state` as `step` (the copy to the host is done on return); whether orbax took it.

    Raises:
      DiskFullError: this save, or the previous one (which is joined first), ran out of space or quota; its
        half-written step directory is removed and every complete checkpoint is left as it was.
      CheckpointWriteError: the same, where the OS refused the write another way (permission, read-only).
    """
    # Joined here rather than inside orbax's save, so that a failure is blamed on the step that failed.
    self._join(self._in_flight)
    try:
      taken = self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
    except Exception as e:  # pylint: disable=broad-except  (tensorstore reports a full disk as a ValueError)
      error = self._write_failed(e, step)
      if error is None:
        raise
      raise error from e
    if taken:
      self._in_flight = self._last_started = step
    return taken

  def wait(self) -> None:
    """Waits for the save in flight (a step is listed only once complete); raises DiskFullError as `save` does."""
    self._join(self._in_flight)

  def delete(self, step: int) -> None:
    """Removes the checkpoint of `step` (one whose weights turned out to diverge), waiting for the save in flight."""
    self._join(self._in_flight)
    self._manager.delete(step)

  def _join(self, step: int | None) -> None:
    """Waits for the save in flight (of `step`), turning a full disk into DiskFullError."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      error = self._write_failed(e, step)
      if error is None:
        raise
      raise error from e
    finally:
      self._in_flight = None

  def _write_failed(self, error: BaseException, step: int | None) -> CheckpointWriteError | None:
    """The one-line DiskFullError for a failed save of `step` if `error` says the disk or quota is full, a
    CheckpointWriteError if the OS refused another way (permission, a read-only file system); else None.

    Removes what the failed save left behind, so that the disk holds only complete checkpoints.
    """
    cause = disk_full_cause(error)
    refused = os_error_cause(error) if cause is None else None
    if cause is None and refused is None:
      return None
    self._partial_left = True
    removed = self._remove_partial_steps()
    what = f"step {step}" if step is not None else "a checkpoint"
    remedy = "fix that" if refused is not None else "free space"
    last = self._last_complete_step()
    if last is None:
      kept = f"no checkpoint is complete yet; {remedy}, then run the same command to start again"
    else:
      kept = f"the checkpoint of step {last} is intact; {remedy}, then run the same command to resume from it"
    partial = f" (the partial {what if step is not None else 'step'} was removed)" if removed else ""
    if refused is not None:
      return CheckpointWriteError(f"checkpoint: cannot write {what} into {self._directory}:"
                                  f" {os_error_words(refused)}{partial}; {kept}")
    quota = getattr(cause, "errno", None) == errno.EDQUOT or "quota" in str(cause).lower() or (
        f"os_error_code='{errno.EDQUOT}'" in str(cause))
    return DiskFullError(f"checkpoint: cannot write {what} into {self._directory}:"
                         f" {'disk quota exceeded' if quota else 'no space left on device'}{partial}; {kept}")

  def _remove_partial_steps(self) -> bool:
    """Removes the half-written step directories (`N.orbax-checkpoint-tmp*`) a failed save left; whether it removed
    some and none is left.

    Process 0 removes them, as orbax removes them when a run starts; a read-only manager leaves them.
    """
    if self._read_only or jax.process_index() != 0:
      return False
    # The failed save's other writes may still be finishing on orbax's threads and recreate a file or two.
    for attempt in range(6):
      try:
        partial = [name for name in paths.listdir(self._directory) if TMP_MARK in name]
      except OSError:
        return False
      if not partial:
        return attempt > 0
      if attempt == 5:
        return False
      for name in partial:
        paths.rmtree(paths.join(self._directory, name))
      time.sleep(0.05)
    return False

  def _last_complete_step(self) -> int | None:
    """The newest step on disk that orbax lists as complete (re-read from the directory)."""
    try:
      self._manager.reload()
      return self._manager.latest_step()
    except Exception:  # pylint: disable=broad-except  (only said in a message: the names are enough)
      try:
        steps = [int(name) for name in paths.listdir(self._directory) if name.isdigit()]
      except OSError:
        return None
      return max(steps, default=None)

  def _where(self, step: int) -> tuple[str, str]:
    """The start of a line about `step`, and the remedy for an unreadable one."""
    return (f"checkpoint: step {step} in {self._manager.directory}",
            f"; move {paths.join(str(self._manager.directory), str(step))} away to resume from the checkpoint"
            " before it, or use a new --workdir")

  def saved_metadata(self, step: int):
    """The shapes and dtypes of the state saved at `step` (read without its arrays); UserError if unreadable."""
    where, unreadable = self._where(step)
    try:
      saved = self._manager.item_metadata(step)["state"]
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"{where} is unreadable ({_first_line(e)}){unreadable}") from e
    if saved is None:
      raise UserError(f"{where} is unreadable (no metadata of its state){unreadable}")
    return saved

  def restore(self, step: int, like):
    """The state saved at `step`, with the structure, shapes and placement of `like`.

    Raises:
      UserError: the checkpoint holds another model (naming the first array
        that differs) or cannot be read; nothing is written.
    """
    where, unreadable = self._where(step)
    saved = self.saved_metadata(step)
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

  def restore_latest(self, like):
    """(step, state) of the newest complete checkpoint, restored as `restore` does; None if there is none.

    A run training into the same directory removes old steps as it saves new
    ones (keep_checkpoints), and may remove the newest step between the
    listing and the reading of it. A read that fails is therefore retried
    with the newest step of the directory read again, while that is another
    step (at most RESTORE_ATTEMPTS reads); a step refused as unreadable is
    one still on disk, and still the newest, after its read failed.

    Raises:
      UserError: as `restore`, for the newest step on disk.
    """
    step = self._newest_on_disk()  # not the listing of when it was opened: a live run has saved since
    for _ in range(RESTORE_ATTEMPTS):
      if step is None:
        return None
      try:
        return step, self.restore(step, like)
      except UserError:
        newest = self._newest_on_disk()
        if newest == step and paths.isdir(paths.join(self._directory, str(step))):
          raise
        logging.info("the checkpoint of step %d in %s was replaced while it was read (a live run keeps only the"
                     " newest); reading step %s", step, self._directory, newest)
        step = newest
    raise UserError(f"checkpoint: {self._directory}: each of the {RESTORE_ATTEMPTS} newest checkpoints was removed"
                    " while it was being read (a run training into this workdir keeps only the newest"
                    " keep_checkpoints); run the same command again, or when that run has stopped")

  def _newest_on_disk(self) -> int | None:
    """The newest complete step, from the directory read again."""
    for attempt in range(RESTORE_ATTEMPTS):
      try:
        self._manager.reload()
        break
      except FileNotFoundError:  # a step removed while it was being listed
        if attempt == RESTORE_ATTEMPTS - 1:
          raise
    return self._manager.latest_step()

  def reached_preemption(self, step: int) -> bool:
    """Whether every process of a multi-host run has agreed to save and stop at `step` (orbax, JAX)."""
    return self._manager.reached_preemption(step)

  def close(self) -> None:
    """Waits for the save in flight, then releases the manager.

    Raises:
      DiskFullError: the save in flight ran out of space or quota (as `save`); the manager is released all
        the same.
    """
    try:
      self._join(self._in_flight)
    finally:
      # A failed save's exception is raised once: the manager's own wait in close() returns.
      try:
        self._manager.close()
      except Exception as e:  # pylint: disable=broad-except
        # Only the last save can still be writing when the manager closes: a failure here is that step's.
        error = self._write_failed(e, self._last_started)
        if error is None:
          raise
        raise error from e
      if self._partial_left:
        self._remove_partial_steps()


# What tensorstore and pybind append to an error's words: status payloads ("[source locations='...']",
# "[tensorstore_spec='{...}']", "[os_error_code='28']"), specs, and object reprs
# ("<tensorstore.Spec object at 0x7f...>").
_PAYLOAD = re.compile(r"\s*\[[\w ]+='(?:[^'\\]|\\.)*'\]")
_QUOTED_SPEC = re.compile(r"\s*\btensorstore_spec\s*[=:]\s*(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
_SPEC_LABEL = re.compile(r"\s*\btensorstore_spec\s*[=:]\s*(?=\{)")  # its {...} goes with the braces
_REPR = re.compile(r"<([^<>]*?) at 0x[0-9a-fA-F]+>")
_LIMIT = 300


def _repr_name(match: re.Match) -> str:
  """'Spec' for '<tensorstore.Spec object at 0x7f...>'."""
  name = match.group(1).removesuffix(" object")
  return name if " " in name else name.rsplit(".", 1)[-1]


def _without_braces(text: str) -> str:
  """`text` without its {...} groups (JSON specs, dicts), however nested; an unbalanced '{' ends the text."""
  out, depth = [], 0
  for char in text:
    if char == "{":
      depth += 1
    elif char == "}" and depth:
      depth -= 1
    elif not depth:
      out.append(char)
  return "".join(out)


def _first_line(error: BaseException) -> str:
  """The human part of an error's first line: no status payloads, specs or object reprs, at most _LIMIT long.

  A longer line keeps its first and last clauses (tensorstore's say what failed, then why).
  """
  text = _REPR.sub(_repr_name, str(error))
  text = _without_braces(_SPEC_LABEL.sub("", _QUOTED_SPEC.sub("", _PAYLOAD.sub("", text))))
  lines = [" ".join(line.split()) for line in text.splitlines()]
  line = next((line for line in lines if line), "") or type(error).__name__
  line = line.rstrip(" :;,")
  if len(line) <= _LIMIT:
    return line
  clauses = line.split(": ")
  head, tail = clauses[0], clauses[-1]
  for clause in clauses[1:-1]:
    if len(head) + len(clause) + len(tail) + 9 > _LIMIT:
      break
    head = f"{head}: {clause}"
  if len(clauses) > 2 and len(head) + len(tail) + 7 <= _LIMIT:
    return f"{head}: ...: {tail}"
  return line[:_LIMIT - 3] + "..."
