"""Errors that the command-line tools turn into a one-line message."""


class UserError(ValueError):
  """Bad configuration, data or workdir: the CLIs print it and exit with status 2.

  The message is one line and starts with the name of what is wrong
  (a config field such as `optim.learning_rate`, or `--workdir`).
  """


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or infinite loss; the run stops there."""


class Preempted(Exception):
  """The run was asked to stop (SIGTERM, or a multi-host preemption notice) and saved a checkpoint at `step`.

  Not an error: the CLI exits 0, and the same command resumes from that step.
  """

  def __init__(self, step: int):
    super().__init__(f"stopped at step {step} on request (SIGTERM or a preemption notice); checkpoint of step"
                     f" {step} saved; run the same command to resume")
    self.step = step
