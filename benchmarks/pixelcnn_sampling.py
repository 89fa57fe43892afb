"""PixelCNN sampling speed: genjax's naive and cached samplers against the naive sampler in PyTorch, one net.

Command: python benchmarks/pixelcnn_sampling.py [--rounds=3 --n=64 --features=16 --num_layers=4 --workdir=DIR]
(PyTorch: pip install -e '.[bench]', the CPU build.)

The net is configs/pixelcnn_mnist5k.py's Gated PixelCNN (28x28x1 binarised digits; --features and --num_layers
override it), with genjax's random initial parameters, or the latest checkpoint of a pixelcnn run's --workdir
(its own config then; the two flags are ignored). The PyTorch side is the same net written in PyTorch
(benchmarks/torch_pixelcnn.py) with the same parameters loaded; before anything is timed, the two nets' logits
on one batch of binary digits are checked to agree.

Contenders, each drawing --n digits:
- genjax naive: `sample_naive`, one compiled fori_loop over the 784 positions, each iteration running the whole
  net on the canvas;
- genjax cached: `sample`, the same loop computing only what each new position changes (the same digits);
- PyTorch naive: the same loop in Python under no_grad, the whole net per position, torch's RNG.
Each is run once first (genjax's compile timed apart from that run; both in their own columns), then in
--rounds rounds in which the contenders alternate after a second's idle (benchmarks/speed.py); the table gives the
median seconds per --n digits and its ratios to genjax naive and to PyTorch naive. JAX runs on its default backend;
PyTorch on CUDA when JAX's backend is a GPU and this PyTorch has CUDA, else on the CPU with all its threads.
"""

import os
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed, torch_pixelcnn  # noqa: E402

_FEATURES = flags.DEFINE_integer("features", None, "F, each stack's width (default: the config's).")
_LAYERS = flags.DEFINE_integer("num_layers", None, "Gated layers (default: the config's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A pixelcnn run whose latest checkpoint's net and parameters to use.")
_N = flags.DEFINE_integer("n", 64, "Digits per sampler run.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds of each contender, alternating.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch naive sampler too.")


def model_and_params():
  """The pixelcnn family (a genjax PixelCNN) and its parameters: a checkpoint's, or random from the config's init."""
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import build  # pylint: disable=g-import-not-at-top
  from genjax import random as grandom  # pylint: disable=g-import-not-at-top
  if _WORKDIR.value:
    from genjax import checkpoint, paths  # pylint: disable=g-import-not-at-top
    from genjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    config = workdir_lib.load_config(paths.resolve(_WORKDIR.value))
    assert config.family == "pixelcnn", f"--workdir holds a {config.family}, not a pixelcnn"
    model = build.family(config)
    ckpt = checkpoint.Checkpointer(paths.join(_WORKDIR.value, "checkpoints"), config.keep_checkpoints,
                                   read_only=True)
    try:
      latest = ckpt.restore_latest(jax.jit(model.init)(grandom.streams(config.seed).init))
    finally:
      ckpt.close()
    assert latest is not None, f"--workdir: {_WORKDIR.value!r} holds no checkpoint"
    step, state = latest
    return model, model.eval_params(state, None), f"checkpoint step {step} of {_WORKDIR.value}"
  from configs import pixelcnn_mnist5k  # pylint: disable=g-import-not-at-top
  config = pixelcnn_mnist5k.get_config()
  if _FEATURES.value is not None:
    config.model.features = _FEATURES.value
  if _LAYERS.value is not None:
    config.model.num_layers = _LAYERS.value
  build.validate(config)
  model = build.family(config)
  return model, jax.jit(model.init)(jax.random.key(0)).params, "random initial parameters"


def torch_net(model, params, device):
  """The PyTorch copy of `model.net` (a GatedPixelCNN) with `params` loaded."""
  net = model.net
  tnet = torch_pixelcnn.pixelcnn(model.image_shape[-1], features=net.features, num_layers=net.num_layers,
                                 first_kernel_size=net.first_kernel_size, kernel_size=net.kernel_size,
                                 out_features=net.out_features, head_features=net.head_features,
                                 per_pixel_features=net.per_pixel_features)
  torch_pixelcnn.load_flax_params(tnet, params)
  return tnet.to(device).eval()


def check_same_net(model, params, tnet, device) -> None:
  """genjax's logits and the torch net's agree on 8 random binary digits."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  x = (np.random.default_rng(0).random((8, *model.image_shape)) < 0.3).astype(np.float32)
  want = np.asarray(model.logits(params, jnp.asarray(x)))
  with torch.no_grad():
    got = tnet.logits_nhwc(torch.from_numpy(x).to(device))[..., 0].cpu().numpy()
  err = float(np.abs(got - want).max())
  print(f"same net: max |genjax - torch| logit {err:.1e} (logits' std {want.std():.2f})", flush=True)
  assert err < 1e-4 * max(1.0, float(np.abs(want).max())), f"the torch net's logits differ from genjax's by {err:.1e}"


class Contender:
  """A sampler: `compile()` prepares it (genjax: lowers and compiles, returning the seconds it took; PyTorch:
  nothing, None), `run()` draws one batch and returns it once it is done (on the host)."""

  def __init__(self, name: str, compile_fn, run_fn):
    self.name, self.compile, self.run = name, compile_fn, run_fn
    self.compile_s = self.first_s = self.last = None


def genjax_contender(name: str, fn, *args) -> Contender:
  """`fn` (jitted) on `args`."""
  import jax  # pylint: disable=g-import-not-at-top
  box = {}

  def compile_fn():
    t0 = time.perf_counter()
    box["fn"] = fn.lower(*args).compile()
    return time.perf_counter() - t0

  return Contender(name, compile_fn, lambda: jax.device_get(box["fn"](*args)))


def torch_contender(name: str, tnet, n: int, image_shape, temperature: float, device) -> Contender:
  import torch  # pylint: disable=g-import-not-at-top
  generator = torch.Generator(device=device).manual_seed(0)

  def run():
    out = torch_pixelcnn.sample_naive(tnet, n, image_shape, temperature, generator=generator, device=device)
    return out.permute(0, 2, 3, 1).cpu().numpy()  # NHWC, as genjax's; .cpu() waits for a GPU

  return Contender(name, lambda: None, run)


def timed_rounds(contenders: list[Contender], rounds: int) -> dict[str, list[float]]:
  """Seconds of each contender's runs: a compile and a first run each, then `rounds` rounds alternating them.

  Every timed call starts after `speed.SETTLE_S` of idle, the first runs too (speed.timed_rounds starts its
  contenders back to back): once, without it, PyTorch's first run right after genjax's took 55 s where it takes
  1 s (4 digits, F=4, on the 2-core CPU that another process was loading), presumably its OpenMP team waiting
  for cores still held by XLA's spinning threads."""
  for c in contenders:
    time.sleep(speed.SETTLE_S)
    c.compile_s = c.compile()
    time.sleep(speed.SETTLE_S)
    t0 = time.perf_counter()
    c.last = c.run()
    c.first_s = time.perf_counter() - t0
    print(f"  {c.name}: " + (f"compile {c.compile_s:.1f} s, " if c.compile_s is not None else "")
          + f"first run {c.first_s:.1f} s", flush=True)
  seconds = {c.name: [] for c in contenders}
  for r in range(rounds):
    for c in contenders:
      time.sleep(speed.SETTLE_S)
      t0 = time.perf_counter()
      c.last = c.run()
      seconds[c.name].append(time.perf_counter() - t0)
    print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()), flush=True)
  return seconds


def main(argv):
  del argv
  from genjax import host  # pylint: disable=g-import-not-at-top
  host.set_up_process()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  model, params, source = model_and_params()
  n = _N.value
  net = model.net
  print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} CPU"
        f" threads; Gated PixelCNN F={net.features}, L={net.num_layers}, kernels {net.first_kernel_size}/"
        f"{net.kernel_size}, {sum(p.size for p in jax.tree.leaves(params)):,} parameters ({source});"
        f" {n} images {model.image_shape}, T={model.temperature}", flush=True)
  key = jax.random.key(1)
  # n closed over, not passed: a compiled function takes only its traced arguments.
  contenders = [genjax_contender("genjax naive", jax.jit(lambda p, k: model.sample_naive(p, k, n)), params, key),
                genjax_contender("genjax cached", jax.jit(lambda p, k: model.sample(p, k, n)), params, key)]
  with_torch = _TORCH.value
  if with_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      print("PyTorch is not installed: genjax alone.")
      with_torch = False
  if with_torch:
    gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if not gpu:
      torch.set_num_threads(os.cpu_count())
    print(f"PyTorch {torch.__version__} on {device}, {torch.get_num_threads()} threads", flush=True)
    tnet = torch_net(model, params, device)
    check_same_net(model, params, tnet, device)
    contenders.append(torch_contender("PyTorch naive", tnet, n, model.image_shape, model.temperature, device))

  print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
  seconds = timed_rounds(contenders, _ROUNDS.value)
  print(f"load average {os.getloadavg()[0]:.1f}", flush=True)

  med = {name: statistics.median(v) for name, v in seconds.items()}
  refs = [r for r in ("genjax naive", "PyTorch naive") if r in med]
  print(f"\nsampling {n} binary {model.image_shape[0]}x{model.image_shape[1]} digits; median of {_ROUNDS.value}"
        " alternating rounds; 'x' columns: the reference's seconds over the contender's (> 1: faster)")
  print(f"{'':16s} {'s/' + str(n):>8s} {'(min-max)':>15s} " + " ".join(f"{'x ' + r:>16s}" for r in refs)
        + f" {'compile':>8s} {'first run':>9s} {'mean ink':>9s}")
  for c in contenders:
    v = seconds[c.name]
    line = f"{c.name:16s} {med[c.name]:8.2f} {min(v):7.2f}-{max(v):<7.2f} "
    line += " ".join(f"{med[r] / med[c.name]:16.2f}" for r in refs)
    line += f" {c.compile_s:7.1f}s" if c.compile_s is not None else f" {'':8s}"
    line += f" {c.first_s:8.2f}s {float(np.mean(c.last)):9.3f}"
    print(line)
  names = [c.name for c in contenders]
  if "genjax cached" in names:
    same = np.array_equal(contenders[0].last, contenders[1].last)
    print(f"genjax cached and genjax naive draw {'the same' if same else 'different'} digits from the same key")


if __name__ == "__main__":
  app.run(main)
