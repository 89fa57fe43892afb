"""Errors that the command-line tools turn into a one-line message."""

import errno


class UserError(ValueError):
  """Bad configuration, data or workdir: the CLIs print it and exit with status 2.

  The message is one line and starts with the name of what is wrong
  (a config field such as `optim.learning_rate`, or `--workdir`).
  """


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or infinite loss, or non-finite weights; the run stops there.

  The message is one line with the step, and the step of the last checkpoint,
  which is finite and left intact; the CLI exits 1 (a diverged run, not bad input).
  """


class Preempted(Exception):
  """The run was asked to stop and saved a checkpoint at `step`.

  Not an error. `interrupted` is True for Ctrl-C (SIGINT), and the CLI exits
  130, as a shell expects of an interrupted command, so that
  `train.py && sample.py` stops there; SIGTERM or a multi-host preemption
  notice (a TPU VM maintenance event) exits 0. Either way the same command
  resumes from that step.
  """

  def __init__(self, step: int, interrupted: bool = False, complete: bool = False):
    why = "interrupted at step {} (Ctrl-C)" if interrupted else "stopped at step {} on request (SIGTERM or a preemption notice)"
    # `complete`: stopped during the evaluation of the last step, when there is nothing left to train.
    then = "the training is complete; run the same command to evaluate it" if complete else "run the same command to resume"
    super().__init__(f"{why.format(step)}; checkpoint of step {step} saved; {then}")
    self.step = step
    self.interrupted = interrupted


class CheckpointWriteError(UserError):
  """A checkpoint could not be written (permission, a read-only or lost file system): one line naming the step,
  the OS's words and the last complete checkpoint, which is intact. The CLIs exit 2 at once (orbax's threads
  may still hold the failed save)."""


def chain(error: BaseException | None):
  """`error` and the exceptions of its cause and context chain, each once."""
  seen = set()
  while error is not None and id(error) not in seen:
    yield error
    seen.add(id(error))
    error = error.__cause__ or error.__context__


def os_error_cause(error: BaseException) -> OSError | None:
  """The first OSError with an errno in `error`'s chain (itself first), or None."""
  return next((e for e in chain(error) if isinstance(e, OSError) and e.errno is not None), None)


def os_error_words(error: OSError, words: str | None = None) -> str:
  """'Permission denied (file)': the OS's words (or `words`) and the files it names."""
  import os  # pylint: disable=g-import-not-at-top
  names = [os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)
           for name in (error.filename, error.filename2) if name is not None]
  return f"{words or error.strerror or error}{' (' + ', '.join(names) + ')' if names else ''}"


class DiskFullError(CheckpointWriteError):
  """A checkpoint could not be written for want of space (ENOSPC) or quota (EDQUOT).

  The message is one line: the step that could not be written, where, and the
  last complete checkpoint, which is intact; the half-written step is removed,
  and the same command resumes once space is freed. The CLIs exit 2.
  """


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How the OS's words reach us through tensorstore and orbax, whose errors are ValueErrors that only quote them.
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", f"os_error_code='{errno.ENOSPC}'",
                    f"os_error_code='{errno.EDQUOT}'")


def disk_full_cause(error: BaseException) -> BaseException | None:
  """The exception in `error`'s cause and context chain (itself first) that says the disk or quota is full, or None.

  An OSError with errno ENOSPC or EDQUOT is preferred; else any exception whose message quotes the OS's
  words (tensorstore reports a failed write as a ValueError with the OS's message in it).
  """
  errors = list(chain(error))
  for e in errors:
    if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
      return e
  for e in errors:
    if says_disk_full(str(e)):
      return e
  return None


def disk_full_words(error: OSError) -> str:
  """'no space left on device (file)' or 'disk quota exceeded (file)': the OS's words and the files it names."""
  return os_error_words(error, "disk quota exceeded" if error.errno == errno.EDQUOT else "no space left on device")


def says_disk_full(text: str) -> bool:
  """Whether a message (a log line of orbax's, a tensorstore error) quotes the OS's words for a full disk or quota."""
  return any(words in text for words in _DISK_FULL_TEXTS)
