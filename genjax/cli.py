"""What train.py and sample.py share: logging set-up and the exit status of user errors."""

import contextlib
import sys

from absl import app, logging

from genjax.errors import NonFiniteLossError, Preempted, UserError


@contextlib.contextmanager
def user_errors_exit():
  """Prints bad input as one line `error: ...` and exits 2 (1 for a diverged run, 0 when preempted)."""
  from genjax.data import DatasetUnavailableError  # pylint: disable=g-import-not-at-top
  try:
    yield
  except (UserError, DatasetUnavailableError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(0)


def run(main) -> None:
  """absl's app.run, with INFO logs on stderr (progress lines) by default."""
  def _main(argv):
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    # Orbax reports every save and restore at INFO; keep its warnings only.
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= logging.converter.STANDARD_WARNING or "/orbax/" not in record.pathname)
    return main(argv)
  app.run(_main)
