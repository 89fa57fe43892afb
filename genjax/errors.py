"""Errors that the command-line tools turn into a one-line message."""


class UserError(ValueError):
  """Bad configuration, data or workdir: the CLIs print it and exit with status 2.

  The message is one line and starts with the name of what is wrong
  (a config field such as `optim.learning_rate`, or `--workdir`).
  """


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or infinite loss; the run stops there."""
