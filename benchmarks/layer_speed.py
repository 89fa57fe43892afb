"""Per layer: XLA's own strided and transposed convolutions against genjax's 'fast' forms, in one run.

Command: python benchmarks/layer_speed.py [--rounds=5 --calls=3 --device=cpu]

Each stride-2 layer of the DCGAN (64x64, batch 64, ngf = ndf = 64) and of the
conv VAE (28x28, batch 128) that `conv_impl` switches, timed as a training
step uses it: the forward pass and the gradients with respect to the input
and the kernel, one compiled call. The two forms alternate, round by round;
the table gives the median milliseconds of each and the ratio. This is what
`genjax.nets.layers.resolve_impl`'s per-backend choice rests on.
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds of each form, alternating.")
_CALLS = flags.DEFINE_integer("calls", 3, "Calls per round.")
_DEVICE = flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where the layers run.")

# (model, kind, batch, input size, C_in, C_out, padding): the layers whose form conv_impl picks.
_DCGAN_T = ((2, 2), (2, 2))  # PyTorch ConvTranspose2d(4, 2, 1)
_DCGAN_C = ((1, 1), (1, 1))  # PyTorch Conv2d(4, 2, 1)
LAYERS = (
    ("DCGAN G", "transposed", 64, 4, 512, 256, _DCGAN_T),
    ("DCGAN G", "transposed", 64, 8, 256, 128, _DCGAN_T),
    ("DCGAN G", "transposed", 64, 16, 128, 64, _DCGAN_T),
    ("DCGAN D", "strided", 64, 64, 3, 64, _DCGAN_C),
    ("DCGAN D", "strided", 64, 32, 64, 128, _DCGAN_C),
    ("DCGAN D", "strided", 64, 16, 128, 256, _DCGAN_C),
    ("DCGAN D", "strided", 64, 8, 256, 512, _DCGAN_C),
    ("VAE enc", "strided", 128, 28, 1, 32, "SAME"),
    ("VAE enc", "strided", 128, 14, 32, 64, "SAME"),
    ("VAE dec", "transposed", 128, 7, 64, 32, "SAME"),
)


def layer_step(kind: str, padding, impl: str):
  """fwd + d/dx + d/dkernel of one layer, as a training step computes them."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from genjax.nets import layers  # pylint: disable=g-import-not-at-top
  function = layers.conv_transpose if kind == "transposed" else layers.conv

  def loss(x, kernel, cotangent):
    return jnp.vdot(function(x, kernel, (2, 2), padding, impl=impl), cotangent)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from genjax.nets import layers  # pylint: disable=g-import-not-at-top
  device = jax.devices(_DEVICE.value)[0]
  print(f"JAX {jax.__version__} on {device.device_kind}; median of {_ROUNDS.value} rounds of {_CALLS.value} calls")
  print(f"{'layer':10s} {'kind':10s} {'batch':>5s} {'size':>5s} {'C_in':>5s} {'C_out':>5s}"
        f" {'xla ms':>8s} {'fast ms':>8s} {'xla/fast':>8s}")
  for model, kind, batch, size, c_in, c_out, padding in LAYERS:
    key_x, key_k = jax.random.split(jax.random.key(0))
    x = jax.device_put(jax.random.normal(key_x, (batch, size, size, c_in)), device)
    kernel = jax.device_put(0.02 * jax.random.normal(key_k, (4, 4, c_in, c_out)), device)
    fn = {impl: layer_step(kind, padding, impl) for impl in ("xla", "fast")}
    function = layers.conv_transpose if kind == "transposed" else layers.conv
    y = jax.eval_shape(lambda x, k: function(x, k, (2, 2), padding, impl="xla"), x, kernel)  # noqa: E731
    cotangent = jax.device_put(jnp.ones(y.shape, y.dtype), device)
    times = {impl: [] for impl in fn}
    for f in fn.values():
      jax.block_until_ready(f(x, kernel, cotangent))
    for _ in range(_ROUNDS.value):
      for impl, f in fn.items():
        t0 = time.perf_counter()
        for _ in range(_CALLS.value):
          grads = f(x, kernel, cotangent)
        jax.block_until_ready(grads)
        times[impl].append((time.perf_counter() - t0) / _CALLS.value * 1e3)
    xla, fast = statistics.median(times["xla"]), statistics.median(times["fast"])
    print(f"{model:10s} {kind:10s} {batch:5d} {size:5d} {c_in:5d} {c_out:5d} {xla:8.2f} {fast:8.2f} {xla / fast:8.2f}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
