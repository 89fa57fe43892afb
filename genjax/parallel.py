"""Data parallelism without changing the math: jit over a 1-D device mesh, or pmap; multi-host start-up.

Both paths run the families' own `train_step`:

* 'jit' (the primary path): one program over `Mesh(devices, ('data',))`
  spanning every device of every process. The state is replicated, the
  global batch is sharded along its first axis, and XLA inserts the
  collectives. The step sees the global batch as one array, so BatchNorm
  statistics, loss means and random draws are those of a single device.
  Under a low precision policy (bfloat16, float16) on several devices the
  step runs instead in `shard_map` over the mesh and writes its collectives
  itself, as under pmap: XLA's partitioner would sum each weight's gradient
  across devices in the compute dtype, inside the product that makes it,
  before its cast to float32 (float16 on XLA:CPU, which converts bfloat16
  to float32 first; the accelerators' choice for bfloat16 is theirs);
  written out, the per-device gradients are float32 before the sum
  (`DataParallel.explicit_collectives`).
* 'pmap': one program per device, mapped over the axis 'data'. The family
  is built with `axis_name='data'`: it averages gradients and metrics with
  `pmean` (`mean_over`), BatchNorm averages its statistics over the axis, and
  every per-example draw is its row of the global batch's draw
  (`batch_offset`). The state carries a leading device axis.

The canonical state, the one that is initialised, checkpointed and
restored, is the replicated one of the jit path; `to_run` and
`to_canonical` move between it and the pmap layout, so a checkpoint does not
care which path wrote it.

Across processes (multi-host), JAX's own multi-controller runtime does the
work: `initialize` calls `jax.distributed.initialize`, each process reads its
own rows of every global batch, and `put_batch` assembles the global array
with `jax.make_array_from_process_local_data`.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import random as grandom
from genjax.errors import UserError

AXIS = "data"  # the one mesh axis, and pmap's axis name
PATHS = ("jit", "pmap")


# ------------------------------------------------------------------ inside a step


def batch_offset(local_batch: int, axis_name: str | None) -> int | jax.Array:
  """Global index of this program's first example: 0 under jit, device index x local batch under pmap."""
  if axis_name is None:
    return 0
  return jax.lax.axis_index(axis_name) * local_batch


def global_rows(draw, key: jax.Array, local_batch: int, axis_name: str | None) -> jax.Array:
  """This program's rows of `draw(key, global_batch)`, the draw of the whole global batch.

  Example i of the global batch gets row i whatever the number of devices:
  under pmap each device draws the global batch's numbers and keeps its own
  rows (cheap for latent codes and interpolation weights).
  """
  if axis_name is None:
    return draw(key, local_batch)
  whole = draw(key, local_batch * jax.lax.axis_size(axis_name))
  return jax.lax.dynamic_slice_in_dim(whole, batch_offset(local_batch, axis_name), local_batch)


def mean_over(tree, axis_name: str | None):
  """The mean over the devices of the axis (pmap); the tree itself under jit."""
  if axis_name is None:
    return tree
  return jax.lax.pmean(tree, axis_name)


# ------------------------------------------------------------------ processes


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError as e:
    raise UserError(f"{name}: must be an integer, got {value!r}") from e


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
  """Joins a multi-process run with `jax.distributed.initialize`; returns whether it did.

  Call it before anything else touches JAX. It runs when `auto` is set (TPU
  VMs and managed clusters, whose environment JAX detects: no arguments
  needed) or when any of the three settings is given, by argument or by the
  usual environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID. Process 0 serves as the coordinator at `host:port`.
  """
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
  count = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
  index = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if not auto and address is None and count is None and index is None:
    return False
  if not auto and (address is None or count is None or index is None):
    raise UserError("--coordinator_address, --num_processes, --process_id: give all three (or their JAX_*"
                    " environment variables), or --distributed alone where JAX detects the cluster")
  host, _, port = (address or "").rpartition(":")
  if address is not None and not (host and port.isdigit() and 0 < int(port) < 65536):
    raise UserError(f"--coordinator_address: expected HOST:PORT (process 0's), got {address!r}")
  if count is not None and count < 1:
    raise UserError(f"--num_processes: must be >= 1, got {count}")
  if count is not None and index is not None and not 0 <= index < count:
    raise UserError(f"--process_id: must be in [0, {count}), got {index}")
  try:
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
  except ValueError as e:  # what JAX raises when it detects no cluster and was given no coordinator
    if address is not None:
      raise
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"--distributed: JAX detects no cluster here ({first}): it joins TPU VM pods, Slurm and"
                    " other clusters it knows; elsewhere give --coordinator_address, --num_processes and"
                    " --process_id, or leave --distributed out to train on this machine's devices") from e
  return True


def is_chief() -> bool:
  """Whether this process writes logs, metrics and pictures (process 0)."""
  return jax.process_index() == 0


def from_chief(flag: bool) -> bool:
  """Process 0's `flag` on every process (what only it can know, such as what metrics.jsonl holds)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


# ------------------------------------------------------------------ placement


class DataParallel:
  """Places states and batches for one path and compiles a family's step for it.

  Args:
    path: 'jit' or 'pmap'.
    num_devices: devices to spread the batch over, the first ones of
      `jax.devices()`; None: all of them (required when several processes run).
    precision: the config's precision policy; under a low one on several devices the jit path's step is
      written per device (`explicit_collectives`), and the family must be built with this object's `axis_name`.
  """

  def __init__(self, path: str = "jit", num_devices: int | None = None, precision: str = "float32"):
    if path not in PATHS:
      raise UserError(f"parallel: unknown {path!r}; allowed: {', '.join(PATHS)}")
    devices = jax.devices()
    if num_devices is not None:
      if isinstance(num_devices, bool) or not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
        raise UserError(f"num_devices: must be an integer in [1, {len(devices)}] (the devices here) or None,"
                        f" got {num_devices!r}")
      if num_devices != len(devices) and jax.process_count() > 1:
        raise UserError(f"num_devices: a run of {jax.process_count()} processes uses all {len(devices)} devices;"
                        f" allowed: None or {len(devices)}")
      devices = devices[:num_devices]
    self.path = path
    self.precision = precision
    self.devices = list(devices)
    # Whether the step is one device's program that writes its own collectives (the module's docstring).
    self.explicit_collectives = path == "pmap" or (precision != "float32" and len(self.devices) > 1)
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P(AXIS))  # batch rows along the first axis
    self._steps_sharded = NamedSharding(self.mesh, P(None, AXIS))  # [steps, rows, ...]
    self._local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    # pmap's arrays carry a leading axis of this process's devices (pmap gives every process its own).
    self._pmap_sharding = NamedSharding(Mesh(np.asarray(self._local_devices), (AXIS,)), P(AXIS))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def describe(self) -> dict:
    """What the run trains on: platform, device count and kind, processes and the path (logged and recorded,
    so that a run on an accelerator machine that silently fell back to its CPU shows it)."""
    kinds = sorted({d.device_kind for d in self.devices})
    return {"platform": self.devices[0].platform, "devices": len(self.devices), "device_kind": ", ".join(kinds),
            "processes": jax.process_count(), "parallel": self.path}

  @property
  def num_local_devices(self) -> int:
    return len(self._local_devices)

  def memory_available(self) -> tuple[int | None, bool]:
    """(bytes one device can hold, whether the devices share the host's memory); None where unknown.

    An accelerator reports its own limit; CPU devices share the host's
    memory, of which Linux says how much is available (MemAvailable).
    """
    stats = self._local_devices[0].memory_stats() if self._local_devices else None
    if stats and stats.get("bytes_limit"):
      return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), False
    try:
      with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
          if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024, True
    except OSError:
      pass
    return None, True

  @property
  def axis_name(self) -> str | None:
    """The axis name the family must be built with: AXIS where the step writes its own collectives, else None."""
    return AXIS if self.explicit_collectives else None

  @property
  def program_copies(self) -> int:
    """How many copies of a compiled step's program run: one per device where it is one device's (pmap,
    shard_map), whose cost analysis counts one device's share of the batch; else one, over every device."""
    return self.num_devices if self.explicit_collectives else 1

  def _check_family(self, train_step) -> None:
    """Refuses the step of a family built for another axis (`genjax.build.family(config)` without this object,
    where the step is written per device): its gradients would not be averaged over the devices."""
    built_for = getattr(getattr(train_step, "__self__", None), "axis_name", self.axis_name)
    if built_for != self.axis_name:
      raise UserError(f"parallel: the family was built for the axis {built_for!r}, this {self.path} step runs over"
                      f" {self.axis_name!r}; build it with genjax.build.family(config, par)")

  def _mapped(self, fn, batch_spec, num_args: int):
    """`fn(state, batch, ...)` of `num_args` arguments as the jit path (only) compiles it: itself, or under a
    low precision on several devices in `shard_map` (the batch split by `batch_spec`, every other argument
    replicated, the outputs replicated: the family averaged them over the axis).

    With pmap's semantics (`check_vma=False`): each device's gradient is of its own rows, summed by the
    family's `pmean` in float32. Tracked instead, the gradient of a replicated weight would be summed where
    its low-precision copy meets the device's rows, in the compute dtype.
    """
    if not self.explicit_collectives:
      return fn
    return jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), batch_spec, *[P()] * (num_args - 2)),
                         out_specs=(P(), P()), check_vma=False)

  def check_batch(self, batch_size: int, pack: int = 1) -> None:
    """Refuses, before anything compiles, a global batch the devices or processes cannot share."""
    n, processes = self.num_devices, jax.process_count()
    if batch_size % n:
      raise UserError(f"batch_size: the global batch {batch_size} does not divide among {n} devices;"
                      f" allowed: multiples of {n}")
    if batch_size % processes:
      raise UserError(f"batch_size: the global batch {batch_size} does not divide among {processes} processes")
    if self.explicit_collectives and (batch_size // n) % pack:  # each device packs its own rows
      where = "pmap path" if self.path == "pmap" else f"jit path under {self.precision}"
      raise UserError(f"model.pack: {pack} must divide the per-device batch {batch_size // n} of the {where};"
                      f" allowed: divisors of {batch_size // n}")

  # A state has the canonical layout (replicated, what checkpoints hold) or the run layout of the path.

  def init(self, init_fn, key: jax.Array):
    """`init_fn(key)` computed once and placed replicated on every device: the canonical state."""
    return jax.jit(init_fn, out_shardings=self.replicated)(key)

  def abstract_state(self, init_fn, key: jax.Array):
    """Shapes, dtypes and placement of the run-layout state of `init_fn(key)`, without computing it."""
    shapes = jax.eval_shape(init_fn, key)
    if self.path == "pmap":
      n = len(self._local_devices)
      return jax.tree.map(lambda s: jax.ShapeDtypeStruct((n, *s.shape), s.dtype), shapes)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

  def to_run(self, state):
    """The canonical state in this path's layout (pmap: a leading axis, one copy per local device)."""
    if self.path != "pmap":
      return state

    def stack(x):
      shards = [shard.data[None] for shard in x.addressable_shards]
      return jax.make_array_from_single_device_arrays((len(shards), *x.shape), self._pmap_sharding, shards)

    return jax.tree.map(stack, state)

  def to_canonical(self, state):
    """A state of this path's layout as the canonical, replicated one (for checkpoints)."""
    if self.path != "pmap":
      return state

    def unstack(x):
      # After pmean every device holds the same values: each becomes its device's copy.
      shards = [shard.data.reshape(x.shape[1:]) for shard in x.addressable_shards]
      return jax.make_array_from_single_device_arrays(x.shape[1:], self.replicated, shards)

    return jax.tree.map(unstack, state)

  def local_copy(self, state):
    """A state of this path's layout on one local device (no copy under jit): for evaluation and sampling."""
    if self.path == "pmap":
      return jax.tree.map(lambda x: x.addressable_data(0).reshape(x.shape[1:]), state)
    return jax.tree.map(lambda x: x.addressable_data(0), state)

  def fetch(self, metrics) -> dict:
    """Host values of a step's metrics (identical on every device)."""
    return jax.tree.map(lambda m: np.asarray(self.local_copy(m)), metrics)

  def put_batch(self, local_batch: dict) -> dict:
    """This process's rows of a global batch -> the global batch, sharded over the devices.

    Under pmap the rows of each device become one slice of a leading device axis.
    """
    per_device = len(self._local_devices)

    def put(x):
      x = np.asarray(x)
      if self.path == "pmap":
        return jax.device_put(x.reshape(per_device, x.shape[0] // per_device, *x.shape[1:]), self._pmap_sharding)
      return jax.make_array_from_process_local_data(self.sharded, x)

    return jax.tree.map(put, local_batch)

  def put_batches(self, local_batches: list[dict]) -> dict:
    """Several steps' batches for `compile_steps`: stacked on a leading step axis (pmap: after the device axis)."""
    per_device = len(self._local_devices)
    n = len(local_batches)

    def put(*xs):
      x = np.stack([np.asarray(x) for x in xs])  # [n, rows, ...]
      if self.path == "pmap":
        x = x.reshape(n, per_device, x.shape[1] // per_device, *x.shape[2:]).swapaxes(0, 1)
        return jax.device_put(x, self._pmap_sharding)
      return jax.make_array_from_process_local_data(self._steps_sharded, x)

    return jax.tree.map(put, *local_batches)

  def replicate(self, tree):
    """Host values that are the same in every process (a key, a seed) -> arrays replicated on every device."""
    def put(x):
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = self.replicate(np.asarray(jax.random.key_data(x)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
      return jax.make_array_from_process_local_data(self.replicated, np.asarray(x))
    return jax.tree.map(put, tree)

  def step_keys(self, train_key: jax.Array):
    """`s -> fold_in(train_key, s)`, the key of step s, where the compiled step wants it.

    Under jit the key is folded on the devices from a replicated train key, so
    no process has to move a key onto devices of other processes and the host
    never waits for it.
    """
    if self.path == "pmap":
      return lambda s: grandom.step_key(train_key, s)
    placed = self.replicate(train_key)
    fold = jax.jit(grandom.step_key, out_shardings=self.replicated)
    return lambda s: fold(placed, np.uint32(s))

  def compile_step(self, train_step):
    """`train_step(state, batch, key)` compiled for this path; the state (run layout) is donated.

    Donating the state lets XLA update parameters and moments in place.
    """
    self._check_family(train_step)
    if self.path == "pmap":
      return jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None), devices=self.devices, donate_argnums=0)
    return jax.jit(self._mapped(train_step, P(AXIS), 3),
                   in_shardings=(self.replicated, self.sharded, self.replicated),
                   out_shardings=(self.replicated, self.replicated), donate_argnums=0)

  def compile_steps(self, train_step):
    """`(state, batches, train_key, first) -> (state, metrics)`: one call runs len(batches) steps.

    `batches` come from `put_batches`; step `first + i` trains on batch i with
    the key `fold_in(train_key, first + i)`, as `compile_step` would one call at
    a time, inside one `lax.scan` (no return to Python between the steps).
    Metrics gain a leading axis, one row a step.
    """
    self._check_family(train_step)

    def steps(state, batches, train_key, first):
      n = jax.tree.leaves(batches)[0].shape[0]

      def one(state, batch_and_index):
        batch, i = batch_and_index
        return train_step(state, batch, grandom.step_key(train_key, first + i))

      return jax.lax.scan(one, state, (batches, jnp.arange(n, dtype=jnp.uint32)))

    if self.path == "pmap":
      return jax.pmap(steps, axis_name=AXIS, in_axes=(0, 0, None, None), devices=self.devices, donate_argnums=0)
    return jax.jit(self._mapped(steps, P(None, AXIS), 4),
                   in_shardings=(self.replicated, self._steps_sharded, self.replicated, self.replicated),
                   out_shardings=(self.replicated, self.replicated), donate_argnums=0)
