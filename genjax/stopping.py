"""How the training loop stops when asked: SIGTERM (a TPU VM's maintenance event), Ctrl-C, or orbax's preemption
sync point across processes (`StopRequest`)."""

import contextlib
import os
import signal
import sys
import threading
from typing import Any

import jax

from genjax import checkpoint


class Abort(BaseException):
  """Raised by the signal handler inside `StopRequest.abortable()`: the work there can be dropped.

  A BaseException, so that no `except Exception` on the way out (orbax's, TensorFlow's) swallows it.
  """


class StopRequest:
  """Notices a request to stop: SIGTERM or Ctrl-C in a one-process run, orbax's preemption sync point across processes.

  A TPU VM maintenance event sends SIGTERM, and Ctrl-C sends SIGINT. With one
  process either handler only sets a flag, and the loop saves and stops after
  the step in flight; a second Ctrl-C exits at once (status 130), which loses
  at most the save in flight (orbax renames a step's directory only when it is
  complete). Inside `abortable()` (an evaluation: nothing of it is needed to
  resume) the handler also stops that work at once (`Abort`), and the loop
  saves what is unsaved and stops. With several processes, JAX's distributed
  runtime owns SIGTERM and agrees with every process on the step at which all
  of them save (`reached_preemption`); Ctrl-C there stops the process without a save.
  """

  def __init__(self, ckpt: checkpoint.Checkpointer):
    self._ckpt = ckpt
    self._signal: int | None = None
    self._previous: dict[int, Any] = {}
    self._abortable = False
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        # A process started with SIGINT ignored (a background job of a script) keeps ignoring it.
        if signal.getsignal(signum) is not signal.SIG_IGN:
          self._previous[signum] = signal.signal(signum, self._on_signal)

  def _on_signal(self, signum, frame) -> None:
    del frame
    if signum == signal.SIGINT and self._signal == signal.SIGINT:
      print("error: interrupted again (Ctrl-C): exiting at once; the last complete checkpoint is kept",
            file=sys.stderr, flush=True)
      os._exit(130)  # pylint: disable=protected-access
    if signum == signal.SIGINT:
      what = ("stopping the evaluation, then exiting" if self._abortable
              else "saving a checkpoint of the step in flight, then stopping")
      print(f"interrupt: {what} (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
    self._signal = self._signal or signum
    if self._abortable:
      self._abortable = False
      raise Abort()

  @contextlib.contextmanager
  def abortable(self):
    """Work that a stop request ends at once (`Abort`); a request that came before it ends it as it starts."""
    if self._signal is not None and jax.process_count() == 1:
      raise Abort()
    self._abortable = self._previous != {}
    try:
      yield
    finally:
      self._abortable = False

  @property
  def interrupted(self) -> bool:
    return self._signal == signal.SIGINT

  def requested(self, steps: range) -> bool:
    """Whether to save and stop after the compiled call that trained `steps`. Across processes JAX's sync point
    is one step number, which each step must be asked about: a call of several steps asks for each of them (in
    order, every one), or it would step over the sync point and never stop."""
    if jax.process_count() > 1:
      return any([self._ckpt.reached_preemption(s) for s in steps])
    return self._signal is not None

  def close(self) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
