"""The diffusion U-Net's training step and DDIM step, per operation: XLA against PyTorch, in one process.

Command: python benchmarks/unet_ops.py [--model=mnist5k --batch=128 --sample_images=256 --sample_steps=10
         --rounds=3 --train_steps=3 --profile_steps=2 --impl=auto --top=15 --trace_dir=DIR --nocheck]
(the flags of benchmarks/diffusion_speed.py that pick the net, the batch and the sampler apply here too;
its --impls, --tf32 and --peak_tflops do not. CPU only.)

The contenders are diffusion_speed.py's: genjax.nets.unet.UNet (--impl, 'auto' by default, which is 'fast'
on a CPU) with its training step (eps-MSE, dropout, Adam, state donated) and DDIM sampler (one compiled scan),
and the same net, step and sampler in PyTorch with genjax's parameters loaded (benchmarks/torch_unet.py),
checked to agree before anything is timed (--nocheck skips that).

Each operation is first timed plainly, in rounds in which the two alternate (benchmarks/speed.py's
`timed_rounds`: --rounds rounds of --train_steps steps, or of one sampler run of --sample_steps DDIM steps),
then profiled:
- XLA: `jax.profiler.trace` around --profile_steps training steps (one sampler run), the `*.xplane.pb` it
  writes read with the XPlane proto TensorFlow ships. A thunk runs from its start to its end, an
  asynchronous one's (XLA's own convolution, on Eigen's threads) being the "end:" event its flow id ties it
  to, not its launch's. XLA runs independent thunks at once, so each stretch of wall-clock time is split
  evenly among the thunks running in it (loops and calls take no share: their bodies' thunks do), and the
  shares are summed per HLO instruction: they add up to the time some thunk was running, the profiled run's
  wall clock less the gaps. Each instruction is put in a category from the ops fused into it
  (`compiled.as_text()`) and their JAX op names: a convolution's window tells a kernel gradient (a window as
  large as the image) from a forward or input-gradient pass (the kernel's window), and 'transpose(' in its
  op name an input gradient from a forward pass; a dot whose op name is an einsum
  right in an attention block is attention's; a fusion mostly of threefry's ops is random numbers (XLA
  fuses the dropout masks' bits into their consumers); and so on (`xla_category`).
- PyTorch: `torch.profiler.profile` (record_shapes) around the same steps; each op's self time goes to the
  category of the first of it and its callers that has one, anything under Optimizer.step to the optimizer
  (`torch_category`). PyTorch's convolution_backward computes the input and the weight gradients in one call,
  so its 3x3 backward is one row, set against the sum of XLA's two.

The table gives milliseconds per training step and per DDIM step (the sampler run over --sample_steps) in
each category, XLA's over PyTorch's, the sums against the wall-clock time of the profiled run and of the plain
rounds (their median). Then the --top instructions and ops of each side.
Where the two lower the net differently (XLA fuses GroupNorm's normalisation into the SiLU that follows,
PyTorch's native_group_norm does both), compare the subtotal of the two categories.
"""

import collections
import dataclasses
import glob
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import diffusion_speed, speed  # noqa: E402  (diffusion_speed's flags are this script's too)

_IMPL = flags.DEFINE_string("impl", "auto", "genjax UNet impl (genjax.nets.unet.IMPLS).")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 2, "Training steps in each profile (the sampler: one run).")
_TOP = flags.DEFINE_integer("top", 15, "Most expensive instructions / ops of each side to list (0: none).")
_TRACE_DIR = flags.DEFINE_string("trace_dir", None, "Keep XLA's traces here (for TensorBoard / xprof); default: a"
                                 " temporary folder, deleted.")
_CHECK = flags.DEFINE_bool("check", True, "Check first that the two nets and samplers agree.")

# A DDIM step's breakdown needs no 50 of them; the plain rounds are then 5 times shorter than diffusion_speed's.
flags.FLAGS.set_default("sample_steps", 10)

CONV_FWD = "3x3 conv forward"
CONV_DX = "3x3 conv input grad"
CONV_DW = "3x3 conv kernel grad"
CONV_BWD = "3x3 conv backward (both)"
PRODUCTS = "1x1 products (dense, 1x1 conv)"
ATTENTION = "attention (q.k, softmax, .v)"
REDUCTIONS = "GroupNorm & reductions"
ELEMENTWISE = "elementwise (SiLU, adds, ...)"
NORM_ELEMENTWISE = "  subtotal: the two above"
COPIES = "copies, transposes, concat, upsample"
RANDOM = "random numbers"
OPTIMIZER = "optimizer (Adam), glue outside the net"
OTHER = "control flow & other"
ROWS = (CONV_FWD, CONV_DX, CONV_DW, CONV_BWD, PRODUCTS, ATTENTION, REDUCTIONS, ELEMENTWISE, NORM_ELEMENTWISE,
        COPIES, RANDOM, OPTIMIZER, OTHER)
NOTES = {
    CONV_FWD: "the spatial convolutions: 3x3, stride-2 down; XLA's 'fast' upsampling as four 2x2",
    CONV_BWD: "XLA: its two rows above; PyTorch: convolution_backward, both in one call",
    PRODUCTS: "q, k, v, proj_out, shortcut, time embedding; forward and gradients",
    REDUCTIONS: "XLA: fusions with a reduce (GroupNorm's sums, bias gradients); PyTorch: native_group_norm",
    ELEMENTWISE: "XLA: the other fusions (GroupNorm's normalisation among them)",
    OPTIMIZER: "XLA: ops outside the net (Adam, noising, DDIM update); PyTorch: Optimizer.step / zero_grad",
}


# ---------------------------------------------------------------------------------------------- XLA: the HLO


@dataclasses.dataclass
class Instruction:
  name: str
  opcode: str
  text: str
  op_name: str
  called: list[str]  # the computations it calls (fusions, calls, loops)
  users: list[str] = dataclasses.field(default_factory=list)  # the instructions that read its result


_COMPUTATION = re.compile(r"^(?:ENTRY )?%?(?P<name>[^\s(]+) .*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?(?P<name>[^\s=]+) = (?P<shape>.*?) (?P<op>[a-z][\w\-]*)\((?P<rest>.*)$")
_CALLED = re.compile(r"(?:calls|to_apply|body|condition)=%?([^\s,}]+)")
_OPERAND = re.compile(r"%([\w.\-]+)")
_WINDOW = re.compile(r"window=\{size=([\dx]+)")
_MOVES = {"copy", "transpose", "concatenate", "slice", "dynamic-slice", "dynamic-update-slice", "reshape", "bitcast",
          "broadcast", "pad", "reverse", "parameter", "constant", "tuple", "get-tuple-element", "iota"}
_RANDOM_NAMES = ("threefry", "_bernoulli", "_uniform", "_normal", "_randint", "random_bits")
_SOFTMAX = re.compile(r"attn(?:_\d+)?/[^/]+$")  # ops right in an attention block, not in its norm or products
_UPSAMPLE_MOVE = re.compile(r"_upsample/(?:stack|unstack|concatenate|reshape|slice)")
_EINSUM_IN_ATTENTION = re.compile(r"attn(?:_\d+)?/[^/]*->")  # q.k and softmax.v (bic,bjc->bij; bij,bjc->bic)


def parse_hlo(text: str) -> tuple[dict[str, Instruction], dict[str, list[str]]]:
  """Every instruction of a compiled module (names are unique across its computations), and each computation's
  instruction names."""
  instructions, computations, current = {}, {}, None
  for line in text.splitlines():
    if current is None:
      m = _COMPUTATION.match(line)
      if m:
        current = m.group("name")
        computations[current] = []
      continue
    if line.startswith("}"):
      current = None
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    rest = m.group("rest")
    op_name = re.search(r'op_name="([^"]*)"', rest)
    inst = Instruction(m.group("name"), m.group("op"), line, op_name.group(1) if op_name else "",
                       _CALLED.findall(rest))
    instructions[inst.name] = inst
    computations[current].append(inst.name)
  for inst in instructions.values():
    for operand in set(_OPERAND.findall(inst.text.split(" = ", 1)[1].split(", metadata=")[0])):
      if operand in instructions and operand != inst.name:
        instructions[operand].users.append(inst.name)
  return instructions, computations


def fused(inst: Instruction, instructions: dict, computations: dict) -> list[Instruction]:
  """The instruction and, for a fusion, everything fused into it (nested fusions too)."""
  out, todo = [inst], list(inst.called) if inst.opcode == "fusion" else []
  while todo:
    for name in computations.get(todo.pop(), []):
      out.append(instructions[name])
      if instructions[name].opcode == "fusion":
        todo.extend(instructions[name].called)
  return out


def xla_category(inst: Instruction, instructions: dict, computations: dict) -> str:
  """The category of one thunk's instruction, from the ops fused into it and their JAX op names; first match."""
  ops = fused(inst, instructions, computations)
  names = [o.op_name for o in ops if o.op_name]
  convs = [o for o in ops if o.opcode == "convolution"]
  if convs:
    window = _WINDOW.search(convs[0].text)
    sizes = [int(s) for s in window.group(1).split("x")] if window else []
    if sizes and all(s == 1 for s in sizes):
      return PRODUCTS
    if sizes and all(s > 3 for s in sizes):  # a kernel gradient's window is the image; a pass's, the kernel
      return CONV_DW
    return CONV_DX if any("transpose(" in n for n in names) else CONV_FWD
  dots = [o for o in ops if o.opcode == "dot"]
  if dots:
    # Attention's two einsums sit right in its block; layers.dense's products have batch dimensions too.
    if any(_EINSUM_IN_ATTENTION.search(n) for n in names) or (
        not names and any("lhs_batch_dims" in o.text for o in dots)):
      return ATTENTION
    return PRODUCTS
  body = ops[1:] if inst.opcode == "fusion" else ops
  # XLA fuses threefry's bits into their consumers (the dropout masks into the SiLU's gradient, say): a fusion
  # mostly of threefry's ops is random numbers.
  arithmetic = [o for o in body if o.opcode not in _MOVES]
  random = [o for o in arithmetic if any(r in o.op_name for r in _RANDOM_NAMES)]
  if random and 2 * len(random) >= len(arithmetic) or any(r in inst.op_name for r in _RANDOM_NAMES):
    return RANDOM
  if inst.opcode in ("while", "call", "conditional"):
    return OTHER
  if any(_SOFTMAX.search(n) for n in names) and any(o.opcode in ("reduce", "exponential") for o in ops):
    return ATTENTION
  if all(o.opcode in _MOVES for o in body):
    if inst.text.split(" = ", 1)[1].startswith("u32["):
      return RANDOM  # threefry's state, copied from round to round: JAX rolls its rounds in a loop on a CPU
    users = [instructions[u] for u in inst.users]
    if users and all(xla_category(u, instructions, computations) == CONV_DW for u in users):
      return CONV_DW  # the layout XLA's own kernel gradient reads (oneDNN's reorders are in its call too)
    return COPIES
  if names and not any(k in n for n in names for k in ("UNet", "jvp(", "transpose(")):
    return OPTIMIZER  # Adam's update, and the few ops of the step before the net (the noised images)
  if any(o.opcode in ("reduce", "reduce-window") for o in ops):
    return REDUCTIONS
  if any(_UPSAMPLE_MOVE.search(n) for n in names) and all("_upsample/" in o.op_name for o in arithmetic):
    return COPIES  # the 'fast' upsampling's interleave of its four phases (with its bias, not fused into more)
  return ELEMENTWISE


def _short(op_name: str, width: int = 60) -> str:
  """An op name without the jit of the step, cut to its last `width` characters."""
  name = re.sub(r"^jit\((train_step|sample)\)/", "", op_name)
  return name if len(name) <= width else "..." + name[-(width - 3):]


def describe(inst: Instruction, instructions: dict, computations: dict) -> str:
  """A short label: a convolution's output shape, window and layer, or the first op name fused."""
  ops = fused(inst, instructions, computations)
  names = [o.op_name for o in ops if o.op_name]
  for o in ops:
    if o.opcode == "convolution":
      shape = _INSTRUCTION.match(o.text).group("shape").split("{")[0]
      window = _WINDOW.search(o.text)
      layer = next((n for n in [o.op_name] + names if "UNet" in n), "")
      layer = re.sub(r"^.*UNet\)*/", "", layer).replace("/conv_general_dilated", "")
      return f"conv -> {shape} window {window.group(1) if window else '?'} {layer}".rstrip()
  if names:
    return _short(names[0])
  return f"{inst.opcode} -> {_INSTRUCTION.match(inst.text).group('shape').split('{')[0]}"


# ---------------------------------------------------------------------------------------------- XLA: the trace


def xplane_pb2():
  """The XPlane proto module: tsl's, or TensorFlow's copy loaded from its file (importing all of TensorFlow
  takes seconds and memory), or through TensorFlow."""
  try:
    from tsl.profiler.protobuf import xplane_pb2 as module  # pylint: disable=g-import-not-at-top
    return module
  except ImportError:
    pass
  spec = importlib.util.find_spec("tensorflow")
  if spec is not None and spec.origin:
    path = os.path.join(os.path.dirname(spec.origin), "tsl", "profiler", "protobuf", "xplane_pb2.py")
    if os.path.exists(path):
      file_spec = importlib.util.spec_from_file_location("xplane_pb2", path)
      module = importlib.util.module_from_spec(file_spec)
      file_spec.loader.exec_module(module)
      return module
  from tensorflow.tsl.profiler.protobuf import xplane_pb2 as module  # pylint: disable=g-import-not-at-top
  return module


@dataclasses.dataclass
class XlaProfile:
  self_ps: dict[str, int]  # per HLO instruction: its thunks' share of the wall clock, summed
  count: dict[str, int]
  busy_ps: int  # the union of all the thunks' intervals (= the sum of the shares)


def read_xla_trace(trace_dir: str, module_name: str, containers: frozenset = frozenset()) -> XlaProfile:
  """The thunk events of `module_name` in the trace that jax.profiler.trace wrote under `trace_dir`.

  XLA runs independent thunks at once, on several threads, so a thunk's own duration counts the cores it
  shared: each stretch of time is split evenly among the thunks running in it. The thunks of `containers`
  (loops, calls: their bodies' thunks are timed themselves) are counted but take no share.
  """
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}")
  space = xplane_pb2().XSpace()
  with open(files[-1], "rb") as f:
    space.ParseFromString(f.read())
  count, edges = collections.Counter(), []
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
    # An asynchronous thunk (XLA's own convolution, run on Eigen's pool) returns when it has launched its work;
    # the executor records "end: NAME" when that work is done, tied to the start by a flow id (_p = _c).
    ends = {}
    for line in plane.lines:
      for e in line.events:
        if plane.event_metadata[e.metadata_id].name.startswith("end: "):
          for s in e.stats:
            if stat_names.get(s.metadata_id) == "_c":
              ends[s.uint64_value or s.int64_value] = line.timestamp_ns * 1000 + e.offset_ps
    for line in plane.lines:
      for e in line.events:
        stats = {stat_names.get(s.metadata_id): s for s in e.stats}
        module = stats.get("hlo_module")
        if "hlo_op" not in stats or module is None or stat_names.get(module.ref_value) != module_name:
          continue
        name = plane.event_metadata[e.metadata_id].name
        count[name] += 1
        if name in containers:
          continue
        start = line.timestamp_ns * 1000 + e.offset_ps
        flow = stats.get("_p")
        end = max(start + e.duration_ps, ends.get(flow.uint64_value or flow.int64_value, 0) if flow else 0)
        edges += [(start, 1, name), (end, -1, name)]
  share, running, busy, last = collections.Counter(), collections.Counter(), 0, None
  for t, step, name in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts at a tie
    n = sum(running.values())
    if n and t > last:
      for other, k in running.items():
        share[other] += (t - last) * k / n
      busy += t - last
    running[name] += step
    if not running[name]:
      del running[name]
    last = t
  return XlaProfile({k: round(v) for k, v in share.items()}, dict(count), busy)


def profile_xla(run, n: int, module_name: str, trace_dir: str | None,
                containers: frozenset = frozenset()) -> tuple[XlaProfile, float]:
  """run(n) under jax.profiler.trace: the profile and the run's wall-clock seconds."""
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(trace_dir, module_name) if trace_dir else tmp
    with jax.profiler.trace(folder):
      t0 = time.perf_counter()
      run(n)
      wall = time.perf_counter() - t0
    return read_xla_trace(folder, module_name, containers), wall


# ---------------------------------------------------------------------------------------------------- PyTorch


_TORCH_RULES = (  # (category, substrings of the lower-cased op name); the first that matches
    (PRODUCTS, ("addmm", "aten::mm", "mmbackward", "aten::linear", "aten::matmul")),
    (ATTENTION, ("bmm", "softmax")),
    (RANDOM, ("bernoulli", "normal_", "randn", "randint", "random_", "uniform_")),
    (REDUCTIONS, ("group_norm", "groupnorm", "aten::sum", "aten::mean", "sumbackward", "meanbackward")),
    (COPIES, ("copy", "aten::cat", "catbackward", "upsample", "clone", "contiguous", "narrow", "slice_backward")),
    (ELEMENTWISE, ("silu", "add", "mul", "sub", "div", "pow", "exp", "sin", "cos", "neg", "sqrt", "mse", "lerp",
                   "where", "fill", "zero", "dropout", "sigmoid", "clamp")),
)


def _conv_weight_shape(event):
  """The weight's shape of a convolution event, or of the first convolution called under it."""
  name = event.name
  shapes = event.input_shapes or []
  if name in ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution") and len(
      shapes) > 1:
    return shapes[1]
  if name == "aten::convolution_backward" and len(shapes) > 2:
    return shapes[2]
  for child in event.cpu_children:
    shape = _conv_weight_shape(child)
    if shape:
      return shape
  return None


def _conv_shapes(event) -> str:
  """' input [...] weight [...]' for a convolution's own event (its shapes set its rows apart), else ''."""
  shapes = event.input_shapes or []
  if event.name == "aten::mkldnn_convolution" and len(shapes) > 1:
    return f" input {shapes[0]} weight {shapes[1]}"
  if event.name == "aten::convolution_backward" and len(shapes) > 2:
    return f" input {shapes[1]} weight {shapes[2]}"
  return ""


def _torch_op_category(event) -> str | None:
  name = event.name.lower()
  if "conv" in name:
    shape = _conv_weight_shape(event)
    if shape and len(shape) == 4 and shape[2] * shape[3] == 1:
      return PRODUCTS
    return CONV_BWD if "backward" in name else CONV_FWD
  for category, keys in _TORCH_RULES:
    if any(k in name for k in keys):
      return category
  return None


def torch_category(event) -> str:
  """An op's category: the optimizer's anything under Optimizer.step or zero_grad, else that of the first of
  the op and its callers that has one."""
  chain, e = [], event
  while e is not None:
    chain.append(e)
    e = e.cpu_parent
  if any(e.name.startswith("Optimizer.") for e in chain):
    return OPTIMIZER
  for e in chain:
    category = _torch_op_category(e)
    if category:
      return category
  return OTHER


def profile_torch(run, n: int):
  """run(n) under torch.profiler: (category, op name) -> [self microseconds, calls], and the wall-clock seconds.

  A convolution's shapes are part of its name: which layer shapes take the time."""
  from torch.profiler import profile, ProfilerActivity  # pylint: disable=g-import-not-at-top
  with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    t0 = time.perf_counter()
    run(n)
    wall = time.perf_counter() - t0
  ops = collections.defaultdict(lambda: [0.0, 0])
  for event in prof.events():
    if event.self_cpu_time_total > 0:
      key = (torch_category(event), event.name + _conv_shapes(event))
      ops[key][0] += event.self_cpu_time_total
      ops[key][1] += 1
  return dict(ops), wall


# ------------------------------------------------------------------------------------------------- the tables


def print_table(title: str, xla_ms: dict, torch_ms: dict, walls: dict) -> None:
  xla_ms, torch_ms = dict(xla_ms), dict(torch_ms)
  xla_ms[CONV_BWD] = xla_ms.get(CONV_DX, 0.0) + xla_ms.get(CONV_DW, 0.0)
  xla_ms[NORM_ELEMENTWISE] = xla_ms.get(REDUCTIONS, 0.0) + xla_ms.get(ELEMENTWISE, 0.0)
  torch_ms[NORM_ELEMENTWISE] = torch_ms.get(REDUCTIONS, 0.0) + torch_ms.get(ELEMENTWISE, 0.0)
  print(f"\n{title}")
  print(f"{'category':38s} {'XLA ms':>9s} {'torch ms':>9s} {'XLA/torch':>9s}  note")
  total = {"XLA": 0.0, "torch": 0.0}

  def row(label, x, t, note=""):
    ratio = f"{x / t:9.2f}" if x is not None and t else f"{'':9s}"
    xs = f"{x:9.1f}" if x is not None else f"{'-':>9s}"
    ts = f"{t:9.1f}" if t is not None else f"{'-':>9s}"
    print(f"{label:38s} {xs} {ts} {ratio}  {note}".rstrip())

  for category in ROWS:
    x = xla_ms.get(category, 0.0)
    t = None if category in (CONV_DX, CONV_DW) else torch_ms.get(category, 0.0)
    if category not in (CONV_BWD, NORM_ELEMENTWISE):  # XLA's backward is its two rows above
      total["XLA"] += x
    if category != NORM_ELEMENTWISE:  # PyTorch's backward is only the one row
      total["torch"] += t or 0.0
    if x or t:  # the sampler has no gradients, no optimizer
      row(category, x, t, NOTES.get(category, ""))
  print("-" * 60)
  row("sum of the ops", total["XLA"], total["torch"])
  row("wall-clock, the profiled run", walls["xla_profiled"], walls["torch_profiled"])
  row("wall-clock, plain rounds (median)", walls["xla"], walls["torch"])


def print_top(title: str, xla_rows: list, torch_rows: list, n: int) -> None:
  if n <= 0:
    return
  print(f"\n{title}: the {n} most expensive XLA instructions (ms per step, thunks per step)")
  for ms, per_step, category, name, label in xla_rows[:n]:
    print(f"  {ms:8.2f} {per_step:6.1f}  {category:36s} {name:28s} {label}")
  print(f"{title}: the {n} most expensive PyTorch ops (self ms per step, calls per step)")
  for ms, per_step, category, name in torch_rows[:n]:
    print(f"  {ms:8.2f} {per_step:6.1f}  {category:36s} {name}")


# ----------------------------------------------------------------------------------------------------- main


def main(argv):
  del argv
  from genjax import host  # pylint: disable=g-import-not-at-top
  host.set_up_process()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from genjax.nets import unet  # pylint: disable=g-import-not-at-top

  if (flags.FLAGS.device or jax.default_backend()) != "cpu":
    raise app.UsageError("unet_ops.py reads XLA:CPU's thunk events: CPU only (--device=cpu)")
  device = jax.devices("cpu")[0]
  impl = unet.resolve_impl(_IMPL.value)
  torch.set_num_threads(os.cpu_count())
  settings = diffusion_speed.model_settings()
  batch = flags.FLAGS.batch
  sample_images = flags.FLAGS.sample_images
  sample_steps = flags.FLAGS.sample_steps
  rounds = flags.FLAGS.rounds
  train_steps = flags.FLAGS.train_steps
  ops = flags.FLAGS.ops
  print(diffusion_speed.machine("cpu"), flush=True)
  print(f"U-Net {settings}, impl={_IMPL.value!r} ({impl})", flush=True)

  shape = (settings["image_size"], settings["image_size"], settings["channels"])
  images = speed.synthetic_images(batch, shape).astype(np.float32) / 127.5 - 1.0
  z_T = np.random.default_rng(0).standard_normal((sample_images, *shape)).astype(np.float32)
  g = diffusion_speed.Genjax(settings, _IMPL.value, device)
  params = g.init(jax.random.key(0))
  tm = diffusion_speed.Torch(settings, params, "cpu")
  if _CHECK.value:
    diffusion_speed.check_same_net(g, tm, params, device)
  torch_contenders = tm.contenders(images, z_T, f"PyTorch {torch.__version__}")

  # genjax's step and sampler compiled here (as diffusion_speed.genjax_contenders compiles them), so that the
  # profile's instruction names can be read in the executable's HLO.
  put = lambda a: jax.device_put(a, device)  # noqa: E731
  x, z = put(images), put(z_T)
  train_key, sample_key = put(jax.random.key(1)), put(jax.random.key(2))
  state = put(jax.tree.map(jnp.copy, (params, g.tx.init(params), jnp.zeros((), jnp.int32))))
  box = {"state": state}
  compiled = {}

  def train_run(n):
    state = box["state"]
    for _ in range(n):
      state, loss = compiled["train"](state, x, train_key)
    jax.block_until_ready((state, loss))
    box["state"] = state

  def sample_run(n):
    for _ in range(n):
      out = compiled["sample"](params, z, sample_key)
    jax.block_until_ready(out)

  xla_runs = {"train": train_run, "sample": sample_run}
  xla_contenders = {}
  for op in ops:
    t0 = time.perf_counter()
    if op == "train":
      compiled[op] = jax.jit(g.train_step, donate_argnums=0).lower(box["state"], x, train_key).compile()
    else:
      compiled[op] = jax.jit(g.sample).lower(params, z, sample_key).compile()
    print(f"XLA {op}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
    xla_contenders[op] = speed.Contender(f"XLA {op}", (lambda r: lambda: r(1))(xla_runs[op]), xla_runs[op])

  per_op = {"train": batch, "sample": sample_images}
  steps = {"train": train_steps, "sample": 1}
  per_step = {"train": 1, "sample": sample_steps}  # the sampler's run is sample_steps DDIM steps
  titles = {"train": f"training step (batch {batch}, eps-MSE, dropout {settings['dropout']}, Adam), ms per step",
            "sample": f"DDIM step ({sample_images} images; a run of {sample_steps} steps / {sample_steps}),"
                      " ms per step"}
  for op in ops:
    print(f"\n{op}: plain rounds; load average {os.getloadavg()[0]:.1f}", flush=True)
    xla_c, torch_c = xla_contenders[op], torch_contenders[op]
    rates = speed.timed_rounds([xla_c, torch_c], rounds, steps[op], per_op[op])
    # images/s -> ms per step (per DDIM step for the sampler)
    wall_ms = {side: 1e3 * per_op[op] / statistics.median(rates[c.name]) / per_step[op]
               for side, c in (("xla", xla_c), ("torch", torch_c))}
    n = _PROFILE_STEPS.value if op == "train" else 1
    units = n * per_step[op]
    module_name = compiled[op].as_text().split("\n", 1)[0].split()[1].rstrip(",")
    instructions, computations = parse_hlo(compiled[op].as_text())
    containers = frozenset(k for k, inst in instructions.items() if inst.opcode in ("while", "call", "conditional"))
    time.sleep(speed.SETTLE_S)
    xla_profile, xla_wall = profile_xla(xla_runs[op], n, module_name, _TRACE_DIR.value, containers)
    time.sleep(speed.SETTLE_S)
    torch_ops, torch_wall = profile_torch(torch_c.run, n)
    print(f"  profiled: load average {os.getloadavg()[0]:.1f}; {sum(xla_profile.count.values())} XLA thunks",
          flush=True)
    if not xla_profile.self_ps:
      print(f"  no XLA thunk events of {module_name} in the trace: this jaxlib's profile has none to break down")
    xla_ms, xla_rows = collections.Counter(), []
    for name, ps in xla_profile.self_ps.items():
      inst = instructions.get(name)
      category = xla_category(inst, instructions, computations) if inst else OTHER
      ms = ps / 1e9 / units
      xla_ms[category] += ms
      label = describe(inst, instructions, computations) if inst else "(not in the HLO)"
      xla_rows.append((ms, xla_profile.count[name] / units, category, name, label))
    torch_ms, torch_rows = collections.Counter(), []
    for (category, name), (us, calls) in torch_ops.items():
      torch_ms[category] += us / 1e3 / units
      torch_rows.append((us / 1e3 / units, calls / units, category, name))
    walls = dict(wall_ms, xla_profiled=1e3 * xla_wall / units, torch_profiled=1e3 * torch_wall / units)
    print_table(titles[op], xla_ms, torch_ms, walls)
    print_top(op, sorted(xla_rows, reverse=True), sorted(torch_rows, reverse=True), _TOP.value)


if __name__ == "__main__":
  app.run(main)
