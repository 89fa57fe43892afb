"""Errors that the command-line tools turn into a one-line message."""


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

  def __init__(self, step: int, interrupted: bool = False):
    why = "interrupted at step {} (Ctrl-C)" if interrupted else "stopped at step {} on request (SIGTERM or a preemption notice)"
    super().__init__(f"{why.format(step)}; checkpoint of step {step} saved; run the same command to resume")
    self.step = step
    self.interrupted = interrupted
