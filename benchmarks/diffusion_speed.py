"""DDPM U-Net speed: genjax's training step and DDIM sampler against the same net and sampler in PyTorch.

Command: python benchmarks/diffusion_speed.py [--model=mnist5k|cifar10 --rounds=3 --device=cpu
         --impls=fast,reference --peak_tflops=67 --precision=bfloat16 --torch_compile]
(PyTorch: pip install -e '.[bench]', the CPU build; on a GPU, CUDA PyTorch if there is one.)

The net is genjax.nets.unet.UNet, by default the mnist5k model (ch 32, ch_mult
(1, 2, 2), 1 block, attention at 7x7, dropout 0.1, 28x28x1); --model=cifar10 is
DDPM's CIFAR-10 model (ch 128, (1, 2, 2, 2), 2 blocks, attention at 16x16,
32x32x3); --ch, --ch_mult, ... override either. The PyTorch side is the same
net written the way DDPM's PyTorch ports write it (NCHW, nn.Conv2d, nn.GroupNorm,
1x1 convolutions for q, k, v and the shortcut; benchmarks/torch_unet.py), loaded with genjax's
parameters: before anything is timed, the two nets' outputs and parameter
gradients, and the two samplers' images, are checked to agree. genjax runs
each UNet `impl` in --impls ('fast': genjax's default; 'reference': DDPM's
code as written; genjax.nets.unet), side by side.

Two operations, each timed in rounds in which the contenders alternate (after
a second's idle, as benchmarks/speed.py does); the table gives the median:
- train: one step of Ho et al.'s eps-MSE loss on the linear schedule (t
  uniform in 1..1000, the net fed t - 1 as a float), dropout on, Adam 2e-4,
  batch --batch; genjax's step compiled with its state donated, the step's
  key folded in on the device, no metric fetched per step on either side;
- sample: DDIM (eta = 0) over --sample_steps steps respaced evenly from the
  1000 (t - 1 = 0, 20, ..., 980 for 50), --sample_images images; genjax's
  `ddim_sample` (one compiled scan) with the eps net made a denoiser by
  `x_from_eps`, PyTorch the same loop in Python under inference_mode.
FLOPs are XLA's count (on the CPU, of impl='reference': the model's own
arithmetic; 'fast' does fewer in the upsampling) of a train step and of one
net call times the sampler's steps; GFLOP/s divides that count by the time.
On a GPU both sides compute in full float32 unless --tf32 (JAX's default
matmul precision 'highest'; PyTorch's cuDNN and matmul TF32 off).
--precision=bfloat16 runs genjax's net under its bfloat16 policy
(genjax.precision: weights, Adam and everything outside the net in float32) and
PyTorch's net calls under bfloat16 autocast; the peak is then bfloat16's
matmul. --torch_compile adds a PyTorch contender whose net is compiled
(torch.compile's default mode) over channels-last weights and inputs. The
agreement checks compare the float32 nets, eager, before either is timed.
"""

import os
import platform
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed, torch_unet  # noqa: E402

MODELS = {
    # name: (ch, ch_mult, num_res_blocks, attn_resolutions, image_size, channels)
    "mnist5k": (32, (1, 2, 2), 1, (7,), 28, 1),
    "cifar10": (128, (1, 2, 2, 2), 2, (16,), 32, 3),
}
NUM_STEPS = 1000  # the linear schedule's T
LEARNING_RATE = 2e-4  # DDPM's

_MODEL = flags.DEFINE_enum("model", "mnist5k", list(MODELS), "The U-Net and image shape; the flags below override.")
_CH = flags.DEFINE_integer("ch", None, "Base width.")
_CH_MULT = flags.DEFINE_list("ch_mult", None, "Width multiple of each resolution.")
_BLOCKS = flags.DEFINE_integer("num_res_blocks", None, "Residual blocks per resolution.")
_ATTN = flags.DEFINE_list("attn_resolutions", None, "Resolutions with self-attention ('' for none).")
_SIZE = flags.DEFINE_integer("image_size", None, "Image height and width.")
_CHANNELS = flags.DEFINE_integer("channels", None, "Image channels.")
_DROPOUT = flags.DEFINE_float("dropout", 0.1, "Dropout rate in training.")
_BATCH = flags.DEFINE_integer("batch", 128, "Images per training step.")
_SAMPLE_IMAGES = flags.DEFINE_integer("sample_images", 256, "Images per DDIM run.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 50, "DDIM steps, respaced evenly from the 1000.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds of each contender and operation, alternating.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "Training steps per round.")
_OPS = flags.DEFINE_list("ops", ["train", "sample"], "What to time: train, sample.")
_IMPLS = flags.DEFINE_list("impls", ["fast", "reference"], "genjax UNet impl values to time, side by side"
                           " (genjax.nets.unet.IMPLS).")
_DEVICE = flags.DEFINE_enum("device", None, ["cpu", "gpu"], "Where both run (default: JAX's default backend).")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch implementation too.")
_TF32 = flags.DEFINE_bool("tf32", False, "GPU: let both sides use TF32 tensor cores (default: full float32).")
_PEAK = flags.DEFINE_float("peak_tflops", None, "The device's peak TFLOP/s for the 'of peak' column"
                           " (default: the best matmul of --precision measured here).")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "genjax's precision policy;"
                               " PyTorch's net calls under autocast to the same dtype.")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "Also time PyTorch with its net under torch.compile"
                                   " (the default mode), channels-last.")


def model_settings() -> dict:
  ch, mult, blocks, attn, size, channels = MODELS[_MODEL.value]
  pick = lambda flag, default: default if flag.value is None else flag.value  # noqa: E731
  return dict(ch=pick(_CH, ch), ch_mult=tuple(int(m) for m in pick(_CH_MULT, mult)),
              num_res_blocks=pick(_BLOCKS, blocks),
              attn_resolutions=tuple(int(a) for a in pick(_ATTN, attn) if a != ""),
              image_size=pick(_SIZE, size), channels=pick(_CHANNELS, channels), dropout=_DROPOUT.value)


def respaced(sample_steps: int):
  """The 0-based indices t - 1 of DDIM's evenly respaced steps, and the float32 (alpha, sigma) of the 1000."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from genjax.losses import diffusion as dm  # pylint: disable=g-import-not-at-top
  alphas, sigmas = dm.linear_schedule(NUM_STEPS)
  return np.arange(0, NUM_STEPS, NUM_STEPS // sample_steps)[:sample_steps], alphas.astype(np.float32), sigmas.astype(
      np.float32)


# --------------------------------------------------------------------------------------------------- genjax


class Genjax:
  """genjax's UNet, train step and DDIM sampler on one device."""

  def __init__(self, settings: dict, impl: str, device, policy: str = "float32"):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    import optax  # pylint: disable=g-import-not-at-top
    from genjax.losses import diffusion as dm  # pylint: disable=g-import-not-at-top
    from genjax.losses import diffusion_sampling as ds  # pylint: disable=g-import-not-at-top
    from genjax import precision  # pylint: disable=g-import-not-at-top
    from genjax.nets.unet import UNet  # pylint: disable=g-import-not-at-top

    s = settings
    self.net = precision.wrap(UNet(ch=s["ch"], out_ch=s["channels"], ch_mult=s["ch_mult"],
                                   num_res_blocks=s["num_res_blocks"], attn_resolutions=s["attn_resolutions"],
                                   dropout=s["dropout"], impl=impl), policy)
    self.device = device
    self.shape = (s["image_size"], s["image_size"], s["channels"])
    self.tx = optax.adam(LEARNING_RATE)
    seq, alphas, sigmas = respaced(_SAMPLE_STEPS.value)
    alpha_T, sigma_T = jnp.asarray(alphas), jnp.asarray(sigmas)
    net = self.net

    def init(key):
      params = net.init(key, jnp.zeros((1, *self.shape)), jnp.zeros((1,)))["params"]
      return params

    def train_step(state, x, key):
      params, opt_state, step = state
      k_t, k_eps, k_drop = jax.random.split(jax.random.fold_in(key, step), 3)
      b = x.shape[0]
      t = jax.random.randint(k_t, (b,), 1, NUM_STEPS + 1)
      eps = jax.random.normal(k_eps, x.shape)
      z = dm.diffuse(x, alpha_T[t - 1][:, None, None, None], sigma_T[t - 1][:, None, None, None], eps)

      def loss_fn(p):
        eps_hat = net.apply({"params": p}, z, (t - 1).astype(jnp.float32), train=True, rngs={"dropout": k_drop})
        return jnp.mean(dm.eps_mse(eps_hat, eps))

      # As genjax.models.update differentiates: a low-precision net's bias gradients summed in float32.
      loss, grads = precision.sums_in_float32(jax.value_and_grad(loss_fn))(params)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, step + 1), loss

    def denoiser(params):
      def denoise(z, alpha, sigma):
        # The net takes t - 1: the position of this step's alpha in the schedule (exact: the same float32 table).
        t = jnp.argmin(jnp.abs(alpha_T - alpha)).astype(jnp.float32)
        eps_hat = net.apply({"params": params}, z, jnp.full((z.shape[0],), t))
        return dm.x_from_eps(z, eps_hat, alpha, sigma)
      return denoise

    def sample(params, z_T, key):
      return ds.ddim_sample(denoiser(params), z_T, alpha_T[seq], sigma_T[seq], key, 0.0)

    self.init = lambda key: jax.device_put(jax.jit(init)(key), device)  # noqa: E731
    self.train_step = train_step
    self.sample = sample
    self.apply = lambda params, x, t, train=False: net.apply({"params": params}, x, t, train=train)  # noqa: E731


def genjax_contenders(g: "Genjax", params, images, z_T, name: str, flops: dict) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  put = lambda a: jax.device_put(a, g.device)  # noqa: E731
  box = {}
  images, z_T = put(images), put(z_T)
  train_key, sample_key = put(jax.random.key(1)), put(jax.random.key(2))
  contenders = {}

  def train_start():
    state = (params, g.tx.init(params), jnp.zeros((), jnp.int32))
    state = put(jax.tree.map(jnp.copy, state))  # donated below: not the caller's params
    t0 = time.perf_counter()
    # Donated: the step rewrites the state in place of the old one, as train.py compiles it.
    box["train"] = jax.jit(g.train_step, donate_argnums=0).lower(state, images, train_key).compile()
    contenders["train"].compile_s = time.perf_counter() - t0
    box["state"] = state
    train_run(1)

  def train_run(n):
    state = box["state"]
    for _ in range(n):
      state, loss = box["train"](state, images, train_key)
    jax.block_until_ready((state, loss))
    box["state"] = state

  def sample_start():
    t0 = time.perf_counter()
    box["sample"] = jax.jit(g.sample).lower(params, z_T, sample_key).compile()
    contenders["sample"].compile_s = time.perf_counter() - t0
    sample_run(1)

  def sample_run(n):
    for _ in range(n):
      out = box["sample"](params, z_T, sample_key)
    jax.block_until_ready(out)

  contenders["train"] = speed.Contender(name, train_start, train_run, flops.get("train"))
  contenders["sample"] = speed.Contender(name, sample_start, sample_run, flops.get("sample"))
  return contenders


def count_flops(g: "Genjax", params, images, z_T) -> dict:
  """XLA's FLOPs of one train step and one sampler run (its net calls; the update arithmetic is negligible)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda p: (p, g.tx.init(p), jnp.zeros((), jnp.int32)), params)
  train = speed.xla_flops(g.train_step, shapes, images, jax.random.key(1))
  call = speed.xla_flops(lambda p, x, t: g.apply(p, x, t), jax.eval_shape(lambda p: p, params), z_T,
                         jnp.zeros((z_T.shape[0],)))
  return {"train": train, "sample": call * _SAMPLE_STEPS.value}


# ---------------------------------------------------------------------------------------------------- torch


class Torch:
  """The torch U-Net with genjax's parameters, its train step and DDIM loop: its net calls under `precision`'s
  autocast, the net compiled where `compiled` (speed.torch_options)."""

  def __init__(self, settings: dict, params, device: str, precision: str = "float32", compiled: bool = False):
    import numpy as np  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    self.torch = torch
    self.dev = torch.device("cuda" if device == "gpu" else "cpu")
    self.module = torch_unet.unet(settings, key_bias="bias" in params["mid_attn"]["k"])
    self.params = params
    torch_unet.load_flax_params(self.module, params)
    self.module.to(self.dev)
    self.prepare, self.autocast = speed.torch_options(self.dev, precision, compiled)
    self.net = self.prepare(self.module)  # the module itself unless compiled
    seq, alphas, sigmas = respaced(_SAMPLE_STEPS.value)
    self.seq = [int(i) for i in seq]
    self.alpha_T = torch.from_numpy(alphas).to(self.dev)
    self.sigma_T = torch.from_numpy(sigmas).to(self.dev)
    # Python floats of the float32 table, as the loop below takes them.
    self.alphas, self.sigmas = [float(a) for a in alphas], [float(s) for s in sigmas]
    self.np = np

  def nchw(self, x):
    return self.torch.from_numpy(self.np.ascontiguousarray(self.np.asarray(x).transpose(0, 3, 1, 2))).to(self.dev)

  def sample(self, z):
    torch = self.torch
    seq, alphas, sigmas = self.seq, self.alphas, self.sigmas
    self.net.eval()
    with torch.inference_mode():
      for i in reversed(range(len(seq))):
        alpha_t, sigma_t = alphas[seq[i]], sigmas[seq[i]]
        with self.autocast():
          eps_hat = self.net(z, torch.full((z.shape[0],), float(seq[i]), device=self.dev))
        eps_hat = eps_hat.float()  # the sampler's arithmetic in float32, as genjax's
        x_hat = (z - sigma_t * eps_hat) / alpha_t
        if i == 0:
          return x_hat
        eps_hat = (z - alpha_t * x_hat) / sigma_t  # as genjax's ddim_sample recovers it from x_hat
        z = alphas[seq[i - 1]] * x_hat + sigmas[seq[i - 1]] * eps_hat
    return z

  def contenders(self, images, z_T, name: str) -> dict:
    torch = self.torch
    net, dev = self.net, self.dev
    x, z = self.prepare(self.nchw(images)), self.prepare(self.nchw(z_T))
    opt = torch.optim.Adam(self.module.parameters(), lr=LEARNING_RATE)
    alpha_T, sigma_T = self.alpha_T, self.sigma_T

    def step():
      net.train()
      b = x.shape[0]
      t = torch.randint(1, NUM_STEPS + 1, (b,), device=dev)
      eps = torch.randn_like(x)
      zt = alpha_T[t - 1][:, None, None, None] * x + sigma_T[t - 1][:, None, None, None] * eps
      opt.zero_grad(set_to_none=True)
      with self.autocast():
        eps_hat = net(zt, (t - 1).float())
      loss = torch.mean((eps_hat.float() - eps) ** 2)
      loss.backward()
      opt.step()
      return loss

    def sync():
      if dev.type == "cuda":
        torch.cuda.synchronize()

    def train_run(n):
      for _ in range(n):
        loss = step()
      sync()
      del loss

    def sample_run(n):
      for _ in range(n):
        out = self.sample(z)
      sync()
      del out

    def sample_start():
      # genjax samples with these: undo the training rounds' steps.
      torch_unet.load_flax_params(self.module, self.params)
      sample_run(1)

    return {"train": speed.Contender(name, lambda: train_run(1), train_run),
            "sample": speed.Contender(name, sample_start, sample_run)}


# ------------------------------------------------------------------------------------------ agreement checks


def relative_error(a, b) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def check_same_net(g: "Genjax", tm: "Torch", params, device) -> None:
  """The two nets agree (outputs, and every parameter's gradient of a loss, dropout off), and so do the samplers."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  torch = tm.torch
  rng = np.random.default_rng(3)
  n = 4
  x = rng.standard_normal((n, *g.shape)).astype(np.float32)
  t = np.array([0.0, 17.0, 500.0, 999.0], np.float32)
  w = rng.standard_normal((n, *g.shape)).astype(np.float32)

  @jax.jit
  def outputs_and_gradients(p, x, t, w):
    return g.apply(p, x, t), jax.grad(lambda p: jnp.vdot(g.apply(p, x, t), w))(p)

  put = lambda a: jax.device_put(a, device)  # noqa: E731
  y, grads = outputs_and_gradients(params, put(x), put(t), put(w))
  tm.net.eval()
  tm.net.zero_grad(set_to_none=True)
  ty = tm.net(tm.nchw(x), torch.from_numpy(t).to(tm.dev))
  (ty * tm.nchw(w)).sum().backward()
  y_err = relative_error(ty.detach().cpu().numpy().transpose(0, 2, 3, 1), y)
  torch_grads = {k: v.grad.cpu().numpy() for k, v in tm.net.named_parameters()}
  # Each leaf against its own largest entry, or a thousandth of the largest gradient where that is larger: the
  # bias of a conv before a GroupNorm of one-channel groups has a gradient of zero in exact arithmetic.
  leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
  floor = 1e-3 * max(float(np.abs(np.asarray(leaf)).max()) for _, leaf in leaves)
  g_err = 0.0
  for path, leaf in leaves:
    name = torch_unet.torch_name(".".join(p.key for p in path))
    want = torch_unet.to_torch_layout(np.asarray(leaf, np.float64), torch_grads[name].shape)
    g_err = max(g_err, float(np.abs(torch_grads[name] - want).max()) / max(float(np.abs(want).max()), floor))
  tm.net.zero_grad(set_to_none=True)
  # The samplers, on a few images, all the steps.
  z_T = rng.standard_normal((n, *g.shape)).astype(np.float32)
  xs = jax.jit(g.sample)(params, put(z_T), put(jax.random.key(2)))
  txs = tm.sample(tm.nchw(z_T)).cpu().numpy().transpose(0, 2, 3, 1)
  s_err = relative_error(txs, xs)
  print(f"same net: max |genjax - torch| / max |genjax|: outputs {y_err:.1e}, parameter gradients {g_err:.1e},"
        f" DDIM images after {_SAMPLE_STEPS.value} steps {s_err:.1e}", flush=True)
  tolerance = 1e-4 if device.platform == "cpu" or not _TF32.value else 2e-2
  assert y_err < tolerance, f"outputs differ: {y_err:.1e}"
  assert g_err < 10 * tolerance, f"gradients differ: {g_err:.1e}"
  assert s_err < 10 * tolerance, f"DDIM images differ: {s_err:.1e}"


# ------------------------------------------------------------------------------------------------ the table


def machine(device: str) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or "?"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  line = (f"CPU {cpu}, {os.cpu_count()} cores; JAX {jax.__version__}, backend {jax.default_backend()}"
          f" ({jax.devices(device)[0].device_kind})")
  try:
    import torch  # pylint: disable=g-import-not-at-top
    line += f"; PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
      line += f", CUDA {torch.version.cuda} ({torch.cuda.get_device_name(0)})"
  except ImportError:
    line += "; no PyTorch"
  return line


def report(op: str, per_op: int, contenders: list, rates: dict, peak_gflops: float | None, reference: str | None):
  """Median seconds and images/s per contender, the ratio to PyTorch's median (and of the best rounds, which
  other processes on the machine disturb least), GFLOP/s and the fraction of the peak."""
  print(f"\n{op}")
  width = max(26, *(len(c.name) for c in contenders))
  print(f"{'':{width}s} {'s/op':>8s} {'images/s':>9s} {'(min-max)':>13s} {'x torch':>8s} {'(best)':>7s} {'GFLOP/s':>8s}"
        f" {'of peak':>8s} {'compile':>8s}")
  ref = rates[reference] if reference else None
  for c in contenders:
    v = rates[c.name]
    med = statistics.median(v)
    line = f"{c.name:{width}s} {per_op / med:8.3f} {med:9.1f} {min(v):6.1f}-{max(v):<6.1f}"
    line += f" {med / statistics.median(ref):8.2f} {max(v) / max(ref):7.2f}" if ref else f" {'':8s} {'':7s}"
    if c.flops_per_step:
      gflops = c.flops_per_step * med / per_op / 1e9
      line += f" {gflops:8.1f}" + (f" {gflops / peak_gflops:8.1%}" if peak_gflops else f" {'':8s}")
    else:
      line += f" {'':8s} {'':8s}"
    line += f" {c.compile_s:7.1f}s" if c.compile_s is not None else ""
    print(line)
  if ref:
    print(f"(x torch: over {reference}'s)")


def main(argv):
  del argv
  if not _IMPLS.value:
    raise app.UsageError("--impls: name at least one genjax impl (its initial weights are both sides')")
  from genjax import host  # pylint: disable=g-import-not-at-top
  retained = host.set_up_process()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  device_kind = _DEVICE.value or ("cpu" if jax.default_backend() == "cpu" else "gpu")
  device = jax.devices(device_kind)[0]
  if device_kind == "gpu" and not _TF32.value:
    jax.config.update("jax_default_matmul_precision", "highest")
  settings = model_settings()
  print(machine(device_kind), flush=True)
  print(f"U-Net {settings}; freed host memory {'retained' if retained else 'returned'} (--retain_host_memory)",
        flush=True)
  with_torch = _TORCH.value
  if with_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      print("PyTorch is not installed: genjax alone.")
      with_torch = False
  if with_torch:
    torch.set_num_threads(os.cpu_count())
    if device_kind == "gpu":
      if not torch.cuda.is_available():
        print("PyTorch here has no CUDA: genjax alone.")
        with_torch = False
      else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = _TF32.value

  shape = (settings["image_size"], settings["image_size"], settings["channels"])
  rng = np.random.default_rng(0)
  images = (speed.synthetic_images(_BATCH.value, shape).astype(np.float32) / 127.5 - 1.0)
  z_T = rng.standard_normal((_SAMPLE_IMAGES.value, *shape)).astype(np.float32)
  policy = _PRECISION.value
  models = {impl: Genjax(settings, impl, device, policy) for impl in _IMPLS.value}
  first = models[_IMPLS.value[0]]
  params = first.init(jax.random.key(0))  # float32 under any policy
  print(f"{sum(p.size for p in jax.tree.leaves(params)):,} parameters", flush=True)
  flops = count_flops(Genjax(settings, "reference", jax.devices("cpu")[0]), params, images, z_T)
  ops = {op: [] for op in _OPS.value}
  for impl, g in models.items():
    for op, c in genjax_contenders(g, params, images, z_T, speed.named(f"genjax impl={impl}", policy), flops).items():
      if op in ops:
        ops[op].append(c)
  reference = None
  if with_torch:
    # The first impl against PyTorch, both float32 and eager; tests/test_unet.py proves the impls equal to one
    # another, tests/test_precision.py the policy to track float32.
    check_same_net(Genjax(settings, _IMPLS.value[0], device), Torch(settings, params, device_kind), params, device)
    reference = speed.torch_name(policy, compiled=False)
    for compiled in [False, True] if _TORCH_COMPILE.value else [False]:
      tm = Torch(settings, params, device_kind, policy, compiled)
      for op, c in tm.contenders(images, z_T, speed.torch_name(policy, compiled)).items():
        c.flops_per_step = flops[op]  # the same model: its FLOP/s and share of the peak too
        if op in ops:
          ops[op].append(c)
  if _PEAK.value:
    peak, peak_note = 1e3 * _PEAK.value, f"peak {_PEAK.value:g} TFLOP/s (given)"
  else:
    measured = speed.matmul_peak(device_kind, dtype=policy)
    peak = max(measured.values())
    peak_note = (f"peak: best {policy} matmul measured, {', '.join(f'{k} {v:.0f}' for k, v in measured.items())}"
                 " GFLOP/s")
  per_op = {"train": _BATCH.value, "sample": _SAMPLE_IMAGES.value}
  steps = {"train": _TRAIN_STEPS.value, "sample": 1}
  results = {}
  for op, contenders in ops.items():
    # Other processes on the machine slow PyTorch's thread team far more than XLA's: the load says when.
    print(f"{op}: load average {os.getloadavg()[0]:.1f}", flush=True)
    results[op] = speed.timed_rounds(contenders, _ROUNDS.value, steps[op], per_op[op])
    print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
  precision = ("float32" if device_kind == "cpu" or not _TF32.value else "TF32 allowed") + (
      "" if policy == "float32" else f"; the nets in {policy}")
  print(f"\n{machine(device_kind)}\nmedian of {_ROUNDS.value} alternating rounds; {precision};"
        f" FLOPs: XLA's count of the model; {peak_note}")
  titles = {"train": f"train step (batch {_BATCH.value}, eps-MSE, dropout {settings['dropout']}, Adam;"
                     f" {flops['train'] / 1e9:.1f} GFLOP)",
            "sample": f"DDIM sampling ({_SAMPLE_IMAGES.value} images, {_SAMPLE_STEPS.value} steps, eta 0;"
                      f" {flops['sample'] / 1e9:.1f} GFLOP)"}
  for op, contenders in ops.items():
    report(titles[op], per_op[op], contenders, results[op], peak, reference)


if __name__ == "__main__":
  app.run(main)
