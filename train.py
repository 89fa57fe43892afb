"""Trains a genjax model: python train.py [--config=configs/x.py] [--workdir=DIR].

With no flags it trains the conv VAE on the embedded offline MNIST digits
into runs/vae_mnist5k. Running the same command again resumes from the last
checkpoint. Override any field: --config.batch_size=256. SIGTERM saves a
checkpoint of the current step and exits 0; Ctrl-C does the same and exits
130 (a second Ctrl-C exits at once). Bad input of any kind is one line
`error: ...` and exit status 2; a diverged run, 1.

The config file is Python and is executed as it is read: use only files you
trust, as you would a script.

Several processes (multi-host): on TPU VMs, the same command on every host
with --distributed; elsewhere, on each process,
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID). The workdir must be one directory that all of them share: a shared
filesystem's, or a bucket's (gs://BUCKET/PATH, with pip install 'genjax[gcs]').
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only feeds data; keep it quiet
# TensorFlow logs (before absl's logging starts, so past TF_CPP_MIN_LOG_LEVEL) that its oneDNN kernels are on;
# it only decodes and batches images here, where they change no number.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# Ctrl-C while Python is still importing (seconds: JAX, TensorFlow): nothing has been read or written yet, so
# exit at once in one line; cli.run hands Ctrl-C back to Python's KeyboardInterrupt once the imports are done.
if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
  signal.signal(signal.SIGINT, lambda signum, frame: (
      print("error: interrupted (Ctrl-C) while starting; nothing was written", file=sys.stderr, flush=True),
      os._exit(130)))  # pylint: disable=protected-access
# SIGTERM (a scheduler, a TPU VM's maintenance) is a request to stop, never an error: exit 0, as the loop does.
signal.signal(signal.SIGTERM, lambda signum, frame: (
    print("stopped on request (SIGTERM) while starting; nothing was written", file=sys.stderr, flush=True),
    os._exit(0)))  # pylint: disable=protected-access

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from genjax import cli, config_flag  # noqa: E402
from genjax.errors import UserError  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
# The config file is Python, run as it is read: use only files you trust.
_CONFIG = cli.define_config(os.path.join(_HERE, "configs", "vae_mnist5k.py"),
                            "Experiment config file (Python, executed: use only files you trust).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory, local or gs://BUCKET/PATH; default: runs/<config file name>.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join a multi-process run JAX detects (TPU VM pods, Slurm).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process: HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: how many processes take part.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index, 0 .. N-1.")


def main(argv):
  del argv  # cli.run refuses extra arguments
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  config_name = os.path.splitext(os.path.basename(config_file))[0]
  with cli.user_errors_exit():
    workdir = cli.workdir_flag(_WORKDIR.value) or os.path.join("runs", config_name)
    if "family" in config_flag.overridden_fields(sys.argv):
      raise UserError("--config.family: a config file fixes its family (its fields are the family's); allowed: a"
                      " config file of the family you want, e.g. --config=configs/gan_ring8.py")
    if "family" not in _CONFIG.value:
      raise UserError(f"--config: {config_file} sets no family; allowed: a config of configs/ (a family's"
                      " get_config in configs/base.py)")
    from configs import base  # pylint: disable=g-import-not-at-top
    # A field the file sets that no config has would be saved and never read: refused as an override is.
    config_flag.check_fields(_CONFIG.value, base.get_config(_CONFIG.value.family), config_file)
    from genjax import parallel, train_lib  # pylint: disable=g-import-not-at-top
    # Before anything else touches JAX: the distributed runtime must start first.
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value)
    cli.start_jax()
    result = train_lib.train_and_evaluate(_CONFIG.value, workdir)
    if not parallel.is_chief():
      return
  if not result:  # a complete run whose last step was never evaluated (a stop request during its evaluation)
    print(f"done: {workdir}  (no evaluation of the last step on record)")
  else:
    print(f"done: {workdir}  " + "  ".join(f"{k} {v:.2f}" for k, v in result.items()))
    print(f"  sample grids: {os.path.join(workdir, 'samples')}/*.png   metrics: {os.path.join(workdir, 'metrics.jsonl')}")
  print(f"  pictures and held-out numbers of the last checkpoint: python sample.py --workdir={workdir}")


if __name__ == "__main__":
  cli.run(main)
