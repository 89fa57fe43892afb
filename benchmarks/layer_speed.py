"""Per layer: XLA's own strided and transposed convolutions, genjax's 'fast' forms and PyTorch's, in one run.

Command: python benchmarks/layer_speed.py [--rounds=5 --calls=3 --impls=xla,fast,products,torch --device=cpu]
(PyTorch: pip install -e '.[bench]', the CPU build.)

Each stride-2 layer of the DCGAN (64x64, batch 64, ngf = ndf = 64) and of the
conv VAE (28x28, batch 128), timed as a training step uses it: the forward
pass and the gradients with respect to the input and the kernel, one
compiled call (PyTorch: `conv2d` or `conv_transpose2d` in NCHW, as the DCGAN
example runs it, then `autograd.grad` of both). The contenders alternate,
round by round; the table gives the median milliseconds of each, XLA's over
'fast' (what `genjax.nets.layers.resolve_impl`'s per-backend choice rests
on) and PyTorch's over 'fast' (above 1: genjax's form is the faster). The
rows marked * are layers the 'fast' form leaves to XLA's own op (few output
channels), so its two genjax columns are the same computation. The process
is set up as train.py's is (genjax.host.set_up_process).
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed  # noqa: E402

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds of each form, alternating.")
_CALLS = flags.DEFINE_integer("calls", 3, "Calls per round.")
_DEVICE = flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where the layers run.")
_IMPLS = flags.DEFINE_list("impls", ["xla", "fast", "products", "torch"],
                           "Contenders: genjax conv_impl values and 'torch'.")

# (model, kind, batch, input size, C_in, C_out, padding): the layers whose form conv_impl picks.
_DCGAN_T = ((2, 2), (2, 2))  # PyTorch ConvTranspose2d(4, 2, 1)
_DCGAN_C = ((1, 1), (1, 1))  # PyTorch Conv2d(4, 2, 1)
LAYERS = (
    ("DCGAN G", "transposed", 64, 4, 512, 256, _DCGAN_T),
    ("DCGAN G", "transposed", 64, 8, 256, 128, _DCGAN_T),
    ("DCGAN G", "transposed", 64, 16, 128, 64, _DCGAN_T),
    ("DCGAN G*", "transposed", 64, 32, 64, 3, _DCGAN_T),
    ("DCGAN D", "strided", 64, 64, 3, 64, _DCGAN_C),
    ("DCGAN D", "strided", 64, 32, 64, 128, _DCGAN_C),
    ("DCGAN D", "strided", 64, 16, 128, 256, _DCGAN_C),
    ("DCGAN D", "strided", 64, 8, 256, 512, _DCGAN_C),
    ("VAE enc", "strided", 128, 28, 1, 32, "SAME"),
    ("VAE enc", "strided", 128, 14, 32, 64, "SAME"),
    ("VAE dec", "transposed", 128, 7, 64, 32, "SAME"),
)


def layer_step(kind: str, padding, impl: str):
  """fwd + d/dx + d/dkernel of one layer, as a training step computes them.

  The step returns the layer's output beside the two gradients: the gradients of a linear layer do not need
  its output, so a step returning them alone would be compiled without the forward pass that PyTorch's runs.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from genjax.nets import layers  # pylint: disable=g-import-not-at-top
  function = layers.conv_transpose if kind == "transposed" else layers.conv

  def step(x, kernel, cotangent):
    y, vjp = jax.vjp(lambda x, kernel: function(x, kernel, (2, 2), padding, impl=impl), x, kernel)
    return y, vjp(cotangent)

  return jax.jit(step)


def torch_layer_step(kind: str, batch: int, size: int, c_in: int, c_out: int, device: str):
  """The same layer in PyTorch (kernel 4, stride 2, padding 1: every row's padding), fwd + both gradients.

  Returns the step (a function of nothing) and its output's spatial size, to check against genjax's.
  """
  import torch  # pylint: disable=g-import-not-at-top
  fn = torch.nn.functional
  dev = torch.device("cuda" if device == "gpu" else "cpu")
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(batch, c_in, size, size, generator=gen).to(dev).requires_grad_()
  op, shape = (fn.conv_transpose2d, (c_in, c_out, 4, 4)) if kind == "transposed" else (fn.conv2d, (c_out, c_in, 4, 4))
  kernel = (0.02 * torch.randn(*shape, generator=gen)).to(dev).requires_grad_()
  y_size = op(x, kernel, stride=2, padding=1).shape[-1]
  cotangent = torch.ones(batch, c_out, y_size, y_size, device=dev)

  def step():
    grads = torch.autograd.grad(op(x, kernel, stride=2, padding=1), (x, kernel), cotangent)
    if dev.type == "cuda":
      torch.cuda.synchronize()
    return grads

  return step, y_size


def main(argv):
  del argv
  from genjax import host  # pylint: disable=g-import-not-at-top
  host.set_up_process()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from genjax.nets import layers  # pylint: disable=g-import-not-at-top
  impls = _IMPLS.value
  if "fast" not in impls or not set(impls) <= {"xla", "fast", "products", "torch"}:
    raise app.UsageError(f"--impls: 'fast' and any of 'xla', 'products', 'torch', got {impls}")
  device = jax.devices(_DEVICE.value)[0]
  versions = f"JAX {jax.__version__} on {device.device_kind}"
  if "torch" in impls:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())  # XLA's pool has a thread per logical CPU; PyTorch's default is per core
    versions += f", PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
  print(f"{versions}; median of {_ROUNDS.value} rounds of {_CALLS.value} calls")
  ratios = [f"{impl}/fast" for impl in impls if impl != "fast"]
  print(f"{'layer':10s} {'kind':10s} {'batch':>5s} {'size':>5s} {'C_in':>5s} {'C_out':>5s}"
        + "".join(f" {impl + ' ms':>9s}" for impl in impls) + "".join(f" {r:>10s}" for r in ratios))
  for model, kind, batch, size, c_in, c_out, padding in LAYERS:
    key_x, key_k = jax.random.split(jax.random.key(0))
    x = jax.device_put(jax.random.normal(key_x, (batch, size, size, c_in)), device)
    kernel = jax.device_put(0.02 * jax.random.normal(key_k, (4, 4, c_in, c_out)), device)
    function = layers.conv_transpose if kind == "transposed" else layers.conv
    y = jax.eval_shape(lambda x, k: function(x, k, (2, 2), padding, impl="xla"), x, kernel)  # noqa: E731
    cotangent = jax.device_put(jnp.ones(y.shape, y.dtype), device)
    steps = {}
    for impl in impls:
      if impl == "torch":
        steps[impl], y_size = torch_layer_step(kind, batch, size, c_in, c_out, _DEVICE.value)
        if y_size != y.shape[1]:
          raise AssertionError(f"{model} {kind} {size}: PyTorch's output is {y_size} wide, genjax's {y.shape[1]}")
      else:
        f = layer_step(kind, padding, impl)
        steps[impl] = lambda f=f: jax.block_until_ready(f(x, kernel, cotangent))
    times = {impl: [] for impl in steps}
    for step in steps.values():
      step()
    for _ in range(_ROUNDS.value):
      for impl, step in steps.items():
        time.sleep(speed.SETTLE_S)  # each contender starts from idle thread pools (benchmarks/speed.py)
        t0 = time.perf_counter()
        for _ in range(_CALLS.value):
          step()
        times[impl].append((time.perf_counter() - t0) / _CALLS.value * 1e3)
    ms = {impl: statistics.median(t) for impl, t in times.items()}
    print(f"{model:10s} {kind:10s} {batch:5d} {size:5d} {c_in:5d} {c_out:5d}"
          + "".join(f" {ms[impl]:9.2f}" for impl in impls)
          + "".join(f" {ms[impl] / ms['fast']:10.2f}" for impl in impls if impl != "fast"), flush=True)


if __name__ == "__main__":
  app.run(main)
