"""Fast layers and several steps per call change how a step runs, never what it computes."""

import json
import os
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from genjax import build, host, parallel, train_lib
from genjax import random as grandom
from tests.helpers import restore_state, tiny_config


def _dcgan_config(**overrides):
  # G's hidden layers have 32 and 16 channels: wide enough for the fast transposed convolutions.
  return tiny_config("dcgan_mnist5k", **{"model.g_width": 16, "model.d_width": 8, "model.latent_dim": 8,
                                         **overrides})


def _batches(n, batch_size, shape=(28, 28, 1)):
  rng = np.random.default_rng(0)
  return [{"image": rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8)} for _ in range(n)]


def _run_single_steps(config, batches):
  family = build.family(config)
  par = parallel.DataParallel("jit", 1)
  keys = grandom.streams(config.seed)
  state = par.init(family.init, keys.init)
  first = jax.tree.map(np.asarray, state)
  step_fn, step_key = par.compile_step(family.train_step), par.step_keys(keys.train)
  for s, batch in enumerate(batches):
    state, metrics = step_fn(state, par.put_batch(batch), step_key(s))
  return jax.tree.map(np.asarray, state), jax.tree.map(np.asarray, metrics), first


def _max_relative_difference(a, b) -> float:
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)) if x.size else 0.0,
                       a, b)
  return max(jax.tree.leaves(diffs))


def test_dcgan_step_with_fast_layers_equals_the_step_with_flax_layers():
  batches = _batches(3, 16)
  fast, fast_metrics, initial = _run_single_steps(_dcgan_config(conv_impl="fast"), batches)
  xla, xla_metrics, _ = _run_single_steps(_dcgan_config(conv_impl="xla"), batches)
  # Same tree (a checkpoint of one restores into the other), same numbers after 3 steps of G and D.
  assert jax.tree.structure(fast) == jax.tree.structure(xla)
  assert _max_relative_difference(fast, xla) < 1e-5
  for name in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
    np.testing.assert_allclose(fast_metrics[name], xla_metrics[name], rtol=1e-5)
  assert _max_relative_difference(fast.g_params, initial.g_params) > 1e-3  # the steps did move G and D
  assert _max_relative_difference(fast.d_params, initial.d_params) > 1e-3


def test_several_steps_per_call_equal_single_steps():
  """The DCGAN (BatchNorm statistics and two optimizers in the carry); the VAE runs it in the loop below."""
  config = _dcgan_config()
  batches = _batches(4, 16)
  want, want_metrics, _ = _run_single_steps(config, batches)
  family = build.family(config)
  par = parallel.DataParallel("jit", 1)
  keys = grandom.streams(config.seed)
  state = par.init(family.init, keys.init)
  steps_fn = par.compile_steps(family.train_step)
  train_key = par.replicate(keys.train)
  state, _ = steps_fn(state, par.put_batches(batches[:3]), train_key, par.replicate(np.uint32(0)))
  state, metrics = steps_fn(state, par.put_batches(batches[3:]), train_key, par.replicate(np.uint32(3)))
  got = jax.tree.map(np.asarray, state)
  assert int(got.step) == 4
  assert _max_relative_difference(got, want) < 1e-5
  assert metrics["loss"].shape == (1,)
  np.testing.assert_allclose(metrics["loss"][-1], want_metrics["loss"], rtol=1e-6)


def test_call_plan_cuts_calls_at_every_log_checkpoint_and_eval_step():
  assert list(train_lib.call_plan(0, 10, 4, (5,))) == [(1, 4), (5, 1), (6, 4), (10, 1)]
  assert list(train_lib.call_plan(0, 6, 1, (2, 3))) == [(s, 1) for s in range(1, 7)]
  # Resumed at step 3 (a preemption between checkpoints): the next call ends on the checkpoint at 4.
  assert list(train_lib.call_plan(3, 12, 8, (4, 6))) == [(4, 1), (5, 2), (7, 2), (9, 4)]
  assert not list(train_lib.call_plan(12, 12, 8, (4,)))


def test_prefetch_yields_every_item_in_order_one_ahead():
  pulled = []

  def source():
    for i in range(5):
      pulled.append(i)
      yield i

  it = train_lib.prefetch(source(), 2)
  assert next(it) == 0 and pulled == [0, 1]  # item 1 was prepared before item 0 was handed out
  assert list(it) == [1, 2, 3, 4]


def test_a_run_with_several_steps_per_call_saves_and_logs_what_single_steps_do(tmp_path):
  runs = {}
  for per_call in (1, 3):
    workdir = str(tmp_path / f"per_call_{per_call}")
    config = tiny_config(num_steps=6, log_every=3, checkpoint_every=6, eval_every=6, steps_per_call=per_call)
    train_lib.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      lines = [json.loads(line) for line in f]
    runs[per_call] = restore_state(workdir), [line for line in lines if line.get("split") == "train"]
  (want, want_lines), (got, got_lines) = runs[1], runs[3]
  assert _max_relative_difference(got, want) < 1e-5
  assert [line["step"] for line in got_lines] == [line["step"] for line in want_lines] == [3, 6]
  for a, b in zip(got_lines, want_lines):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)


_REUSE_PROBE = r"""
import ctypes, resource, sys, threading
from genjax import host
arena = host.single_malloc_arena() if sys.argv[1] == "retain_arena" else False
retained = host.retain_host_memory() if sys.argv[1].startswith("retain") else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # over glibc's largest default mmap threshold (32 MiB), like a step's buffers
faults = {}
def reuse(where):
  faults[where] = []
  for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
    faults[where].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
reuse("main")
# Another thread, as XLA's executors are: glibc gives it its own arena, whose heaps hold at most 64 MiB.
worker = threading.Thread(target=reuse, args=("worker",))
worker.start()
worker.join()
print(retained, arena, min(faults["main"][1:]), min(faults["worker"][1:]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_retained_host_memory_is_reused_without_page_faults():
  """A freed 64 MiB buffer comes back without faulting its 16,384 pages in again (each step's buffers): on the
  main thread with retain_host_memory; on another thread (as XLA's) only with single_malloc_arena too."""
  def probe(mode):
    out = subprocess.run([sys.executable, "-c", _REUSE_PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    retained, arena, main, worker = out.stdout.split()
    return retained == "True", arena == "True", int(main), int(worker)

  default = probe("default")  # mmap'd afresh and unmapped each time: 16,384 faults of 4 KiB pages
  retained = probe("retain")
  both = probe("retain_arena")
  assert default[:2] == (False, False) and retained[:2] == (True, False) and both[:2] == (True, True)
  reused, fresh = 100, 10_000
  assert default[2] > fresh and default[3] > fresh, default
  assert retained[2] < reused and retained[3] > fresh, retained  # the worker's own arena still maps it afresh
  assert both[2] < reused and both[3] < reused, both


_DISPATCH_PROBE = r"""
import resource, sys
from absl import flags
from genjax import host
flags.FLAGS(sys.argv)
host.set_up_process()
import jax, jax.numpy as jnp
# The [4096, 6144] product is a temporary of 100 MB, over the 64 MiB an arena of XLA's threads can reuse.
f = jax.jit(lambda a, b: (a @ b).T @ a).lower(jnp.ones((4096, 64)), jnp.ones((64, 6144))).compile()
a, b = jnp.ones((4096, 64)), jnp.ones((64, 6144))
faults = []
for _ in range(4):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(a, b).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(jax.config.values["jax_cpu_enable_async_dispatch"], f.memory_analysis().temp_size_in_bytes >> 20,
      min(faults[1:]), host.inline_cpu_dispatch())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's arenas")
def test_cpu_programs_run_inline_and_reuse_their_temporaries_without_page_faults():
  """The entry points' set-up runs a CPU program in the calling thread, whose 100 MB of temporaries then come
  back from the retained main arena at every call; with --cpu_async_dispatch (JAX's default) XLA's thread maps
  them afresh and faults their 25,600 pages in again. Once the backend runs the setting is left alone."""
  def probe(*argv):
    out = subprocess.run([sys.executable, "-c", _DISPATCH_PROBE, *argv], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    asynchronous, temp_mib, faults, again = out.stdout.split()
    return asynchronous == "True", int(temp_mib), int(faults), again == "True"

  inline, queued = probe(), probe("--cpu_async_dispatch")
  assert inline[:2] == (False, 96) and queued[:2] == (True, 96)
  # Inline, what still faults (under 1,000 pages here) is not the block: a tenth of its pages at most.
  assert inline[2] < 2_560 and queued[2] > 20_000, (inline, queued)
  assert not inline[3] and not queued[3]


_LARGE_PROBE = r"""
import resource, sys
from absl import flags
from genjax import host
flags.FLAGS(sys.argv)
host.set_up_process()
import jax, jax.numpy as jnp
# The [4096, 69632] product is a temporary of 1.06 GiB, as large as a U-Net step's at a batch of 128 or more.
a, b = jnp.ones((4096, 8)), jnp.ones((8, 69632))
f = jax.jit(lambda a, b: (a @ b).T @ a).lower(a, b).compile()
faults = []
for _ in range(5):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(a, b).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(f.memory_analysis().temp_size_in_bytes >> 20, min(faults[-2:]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's heap")
def test_retained_host_memory_serves_temporaries_over_a_gib_again():
  """A program whose temporaries pass 1 GiB reuses them from the retained heap once it has run twice; without
  --retain_host_memory glibc maps them afresh and faults all 278,000 of their pages in at every call. In one
  clean-clone CI run a retained process faulted them all too (not examined; glibc maps a block where its heap
  cannot grow), so the retained case has three processes to show the reuse in."""
  def probe(*argv):
    out = subprocess.run([sys.executable, "-c", _LARGE_PROBE, *argv], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    temp_mib, faults = out.stdout.split()
    return int(temp_mib), int(faults)

  fresh = probe("--noretain_host_memory")
  tries = [probe()]
  while tries[-1][1] >= 27_800 and len(tries) < 3:
    tries.append(probe())
  assert tries[-1][0] == fresh[0] == 1088
  assert tries[-1][1] < 27_800 < 250_000 < fresh[1], (tries, fresh)


_CONV_PROBE = r"""
import sys
import jax, jax.numpy as jnp
from jax import lax
from genjax import host
took = host.own_convolutions() if sys.argv[1] == "own" else False
conv = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
f = jax.jit(lambda x, k, w: (conv(x, k), x.reshape(-1, 64) @ w, jnp.sum(x, axis=(1, 2))))
text = f.lower(jnp.ones((8, 14, 14, 64)), jnp.ones((3, 3, 64, 64)), jnp.ones((64, 64))).compile().as_text()
print(took, text.count("kind=kCustom"), host.own_convolutions())
"""


def test_own_convolutions_takes_convolutions_from_ynnpack_and_leaves_its_dots_and_reductions():
  """jaxlib hands the convolution, the product and the sum to YNNPACK (three library fusions); after
  own_convolutions, XLA runs the convolution itself (two); once a backend runs, it changes nothing."""
  def probe(mode):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", _CONV_PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env)
    took, fusions, again = out.stdout.split()
    return took == "True", int(fusions), again == "True"

  assert probe("default") == (False, 3, False)
  assert probe("own") == (True, 2, False)


def test_a_users_own_ynn_option_is_kept():
  assert host.with_own_convolutions("") == f"--{host.YNN_OPTION}={host.YNN_WITHOUT_CONVOLUTIONS}"
  assert host.with_own_convolutions("--xla_force_host_platform_device_count=8") == (
      f"--xla_force_host_platform_device_count=8 --{host.YNN_OPTION}={host.YNN_WITHOUT_CONVOLUTIONS}")
  mine = f"--{host.YNN_OPTION}= --xla_cpu_multi_thread_eigen=false"
  assert host.with_own_convolutions(mine) == mine


def test_own_convolutions_leaves_a_jaxlib_it_was_not_written_for_alone(monkeypatch):
  """XLA aborts on a flag its jaxlib does not know: outside the known releases nothing is set."""
  from jax._src import xla_bridge
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
  monkeypatch.setattr(host, "_jaxlib_version", lambda: (0, 12))
  assert not host.own_convolutions() and os.environ["XLA_FLAGS"] == ""
  monkeypatch.setattr(host, "_jaxlib_version", lambda: (0, 10))
  assert host.own_convolutions() and os.environ["XLA_FLAGS"] == host.with_own_convolutions("")


_THREEFRY_PROBE = r"""
import sys
import jax, numpy as np
from genjax import host
took = host.unroll_threefry() if sys.argv[1] != "rolled" else False
if sys.argv[1] == "back":
  took = host.unroll_threefry(False)  # JAX's CPU loop again
f = jax.jit(lambda key: jax.random.bits(key, (4096,)))
text = f.lower(jax.random.key(3)).compile().as_text()
print(took, text.count(" while("), "".join(f"{b:08x}" for b in np.asarray(f(jax.random.key(3)))[[0, 1, 4095]]))
"""


def test_unroll_threefry_draws_the_same_bits_without_the_loop():
  """On a CPU JAX lowers threefry's rounds as a loop; unroll_threefry lowers them as JAX does on a GPU: no loop in
  the compiled draw, and the same bits; unroll_threefry(False) puts JAX's loop back."""
  def probe(mode):
    out = subprocess.run([sys.executable, "-c", _THREEFRY_PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    took, loops, bits = out.stdout.split()
    return took == "True", int(loops), bits

  took, loops, bits = probe("rolled")
  assert not took and loops == 1
  assert probe("unrolled") == (True, 0, bits)
  assert probe("back") == (True, 1, bits)
