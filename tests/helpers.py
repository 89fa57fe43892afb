"""Shared by the end-to-end tests: tiny configs and running the CLIs."""

import os
import subprocess
import sys

import jax
import jax.extend
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A conv VAE small enough that a few steps, checkpoints and evaluations take seconds (tiny_config's fields, one
# step a call).
TINY = [
    "--config.batch_size=16", "--config.eval.quality_samples=64", "--config.log_every=2", "--config.checkpoint_every=2",
    "--config.eval_every=4", "--config.eval.num_examples=32", "--config.eval.batch_size=16",
    "--config.model.iwae_k=4", "--config.model.conv_widths=(4, 8)", "--config.model.hidden=(16,)",
    "--config.model.latent_dim=4", "--config.steps_per_call=1",
]


def tiny_config(name="vae_mnist5k", **overrides):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config()
  config.batch_size = 16
  config.log_every = 2
  config.checkpoint_every = 2
  config.eval_every = 4
  config.eval.num_examples = 32
  config.eval.batch_size = 16
  config.eval.quality_samples = 64
  # One step a call, as most configs run: the small MLP configs' ten would compile a scan for a test's few steps
  # (tests/test_lean_steps.py tests several steps a call).
  config.steps_per_call = 1
  if config.family == "vae":
    config.model.conv_widths = (4, 8)
    config.model.hidden = (16,)
    config.model.latent_dim = 4
    config.model.iwae_k = 4
  return set_fields(config, overrides)


def set_fields(config, fields: dict):
  """`config` with each dotted field of `fields` set, locked."""
  for field, value in fields.items():
    node = config
    *path, last = field.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  config.lock()
  return config


def cli_env(cpu_only: bool = True) -> dict:
  """The environment of a CLI subprocess; `cpu_only=False` lets JAX look for every platform, as a user's run does
  (and log what it does not find)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  if cpu_only:
    env["JAX_PLATFORMS"] = "cpu"
  else:
    env.pop("JAX_PLATFORMS", None)
  return env


def run_cli(script, *args, timeout=300, cpu_only=True):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, env=cli_env(cpu_only),
                        capture_output=True, text=True, timeout=timeout)


def restore_state(workdir, step=None):
  """The raw saved state tree of a workdir's checkpoint (latest by default)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step() if step is None else step
  tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return jax.tree.map(np.asarray, tree)


# The layout XLA:CPU's convolution kernels take, as lax's dimension numbers (genjax.nets.convolution).
NHWC = jax.lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def convolution_layouts(jaxpr) -> list:
  """The dimension numbers of every convolution of `jaxpr` and its sub-jaxprs."""
  found = [eqn.params["dimension_numbers"] for eqn in jaxpr.eqns if eqn.primitive.name == "conv_general_dilated"]
  for eqn in jaxpr.eqns:
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(convolution_layouts(sub))
  return found
