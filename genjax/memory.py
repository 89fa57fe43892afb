"""Memory of compiled programs: steps compiled ahead of time (`AheadOfTime`), whose needs, read from XLA before
the state is allocated or anything written, are refused in one line when the devices lack them."""

from typing import Any

import jax

from genjax import parallel
from genjax.errors import UserError


class AheadOfTime:
  """A jitted (or pmapped) step compiled ahead of time, once per shape of its batch argument.

  Compiling before the first call lets the loop read the step's memory needs
  (`memory_analysis`) before it allocates the state or writes anything; the
  compiled executable is the one every call then runs.
  """

  def __init__(self, fn):
    self._fn = fn
    self._lowered: dict[tuple, Any] = {}
    self._compiled: dict[tuple, Any] = {}

  @staticmethod
  def _signature(args) -> tuple:
    return tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(args[1]))

  def lower(self, *args):
    """The program before compilation (its cost analysis counts the step's FLOPs: genjax.utilization)."""
    signature = self._signature(args)
    if signature not in self._lowered:
      self._lowered[signature] = self._fn.lower(*args)
    return self._lowered[signature]

  def compile(self, *args):
    signature = self._signature(args)
    if signature not in self._compiled:
      self._compiled[signature] = self.lower(*args).compile()
    return self._compiled[signature]

  def __call__(self, *args):
    return self.compile(*args)(*args)


_GiB = float(1 << 30)


def _needs(compiled) -> tuple[int, int] | None:
  """(bytes of its arguments, bytes of its outputs and temporaries) of a compiled program, from XLA; None if unknown."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return (stats.argument_size_in_bytes,
          stats.output_size_in_bytes - stats.alias_size_in_bytes + stats.temp_size_in_bytes)


def check_memory(compiled, par: parallel.DataParallel, batch_size: int) -> None:
  """Refuses a step whose compiled program needs more memory than its devices have (an estimate from XLA)."""
  needs, (available, shared) = _needs(compiled), par.memory_available()
  if needs is None or available is None:
    return
  state, work = needs
  # Devices that share the host's memory (CPU devices) need it all at once.
  copies = par.num_local_devices if shared else 1
  if (state + work) * copies > available:
    where = f"{par.num_local_devices} CPU devices together" if shared and copies > 1 else "each device"
    raise UserError(
        f"model: one training step needs {(state + work) * copies / _GiB:.1f} GiB on {where} (state and batch"
        f" {state * copies / _GiB:.1f} GiB, activations and temporaries {work * copies / _GiB:.1f} GiB),"
        f" {available / _GiB:.1f} GiB are available; allowed: a smaller model.* width or batch_size"
        f" {batch_size}")


def check_evaluation_memory(programs: dict[str, Any], state_bytes: int, par: parallel.DataParallel) -> None:
  """Refuses an evaluation whose compiled programs, beside the train state, need more memory than a device has.

  `programs` maps (the field a user would change, what the program does, what is allowed) to a compiled program
  of the evaluation; each runs on one local device while the train state stays on every device.
  """
  available, shared = par.memory_available()
  if available is None:
    return
  copies = par.num_local_devices if shared else 1
  for (field, what, allowed), compiled in programs.items():
    needs = _needs(compiled)
    if needs is None:
      continue
    inputs, work = needs
    need = state_bytes * copies + inputs + work
    if need > available:
      raise UserError(
          f"{field}: {what} needs {need / _GiB:.1f} GiB with the train state ({inputs / _GiB:.1f} GiB of inputs,"
          f" {work / _GiB:.1f} GiB of outputs and temporaries, the state {state_bytes * copies / _GiB:.1f} GiB),"
          f" {available / _GiB:.1f} GiB are available; allowed: {allowed}")
