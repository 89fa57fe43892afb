"""The precision policy: what dtype the nets compute in, one shared option (`precision`) for every family.

    net = precision.wrap(net, "bfloat16")     # in a family's from_config; float32 returns the net itself
    optimizer = precision.loss_scaled(adam)   # float16 only: genjax.build wraps every optimizer

* 'float32': everything in float32 (the nets as written, bit for bit).
* 'bfloat16' (how TPUs train): parameters, optimizer state, BatchNorm statistics and the EMA stay float32,
  so checkpoints hold float32 whatever the policy; each net call (`Cast.apply`) casts the parameters and the
  floating inputs to bfloat16, so products and convolutions run in it, and casts what the net returns back to
  float32. Losses, log-densities, the diffusion preconditioning and the samplers (outside the nets) are
  float32; inside them the normalisations' statistics (Flax's BatchNorm and GroupNorm, the U-Net's
  GroupNorm), attention's softmax and the denoisers' sinusoidal embeddings are computed in float32. The inputs
  a net names in `float32_inputs` (the denoisers' noise level) reach it uncast: bfloat16 holds the integers
  only to 256 exactly, so the step indices 0..999 would become 507 distinct levels (999 and 1000 one), and
  EDM's 250 ln(sigma) would move sigma by up to 1.6%.
* 'float16' (GPUs without bfloat16): the same in float16, whose range (largest 65,504, smallest normal 6e-5)
  needs dynamic loss scaling: the loss is multiplied by a scale S before differentiation, every gradient
  leaf of every optimizer (a GAN's two) is divided by S before the update, and a step whose gradients are not
  all finite is skipped (weights, optimizer state, BatchNorm statistics and EMA untouched:
  `genjax.models.update.unless_skipped`) and halves S; S doubles after
  `GROWTH_INTERVAL` finite steps in a row (Micikevicius et al. 2018).

The gradients are float32 (the transpose of a cast is a cast back), so the optimizer never sees low precision;
every family's update differentiates through `sums_in_float32`, so a weight's gradient summed over the
positions it is broadcast to (a bias) accumulates in float32 too.
"""

import contextlib
import dataclasses
import inspect
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import options

POLICIES = ("float32", "bfloat16", "float16")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
ADDED = 4  # the config version that added `precision`: runs before computed in float32

INITIAL_SCALE = 2.0**15  # Micikevicius et al.'s and PyTorch's GradScaler's (2^16) order of magnitude
GROWTH_INTERVAL = 2000  # finite steps in a row before the scale doubles (GradScaler's default)


def option() -> options.Option:
  """The shared `precision` field."""
  return options.choice("float32", POLICIES, "what the nets compute in: 'float32'; 'bfloat16' (weights, optimizer"
                        " state, statistics, EMA and losses stay float32; products in bfloat16); 'float16' (the"
                        " same, with dynamic loss scaling) (genjax.precision)", added=(ADDED, "float32"))


def _recast(tree, source, target):
  """`tree` with every array leaf of dtype `source` cast to `target` (integers, keys and the rest unchanged)."""
  return jax.tree.map(lambda x: x.astype(target) if hasattr(x, "dtype") and x.dtype == source else x, tree)


def to_float32(tree, dtype) -> Any:
  """What a net computing in `dtype` returned, its floating leaves as float32."""
  return _recast(tree, jnp.dtype(dtype), jnp.float32)


_APPLY_KEYWORDS = ("rngs", "mutable", "capture_intermediates", "method")


@dataclasses.dataclass(frozen=True)
class Cast:
  """A Flax module whose `apply` computes in `dtype`: parameters and floating inputs cast to it, floating
  outputs (and mutated collections) cast back to float32, except the inputs the module names in its class
  attribute `float32_inputs` (argument names of its `__call__`; not for another `method`), which it gets as
  they are. `init` is the module's own, so parameters are created in float32 and the parameter tree is the
  module's; any other attribute is the module's."""

  module: nn.Module
  dtype: Any

  def init(self, *args, **kwargs):
    return self.module.init(*args, **kwargs)

  def apply(self, variables, *args, **kwargs):
    variables = dict(variables)
    if "params" in variables:
      variables["params"] = _recast(variables["params"], jnp.float32, self.dtype)
    # Module.apply's own keywords (rngs for dropout, mutable for BatchNorm) are not the call's inputs.
    own = {name: kwargs.pop(name) for name in _APPLY_KEYWORDS if name in kwargs}
    keep = () if "method" in own else getattr(self.module, "float32_inputs", ())
    if keep:
      bound = inspect.signature(self.module.__call__).bind(*args, **kwargs)
      kept = {name: bound.arguments.pop(name) for name in keep if name in bound.arguments}
      bound.arguments.update(_recast(dict(bound.arguments), jnp.float32, self.dtype) | kept)
      args, kwargs = bound.args, bound.kwargs
    else:
      args, kwargs = _recast((args, kwargs), jnp.float32, self.dtype)
    return to_float32(self.module.apply(variables, *args, **kwargs, **own), self.dtype)

  def clone(self, **kwargs) -> "Cast":
    return Cast(self.module.clone(**kwargs), self.dtype)

  def __getattr__(self, name: str):
    if name.startswith("__"):
      raise AttributeError(name)
    return getattr(self.module, name)


def compute_dtype(module) -> Any:
  """The dtype `module`'s apply computes in: a `Cast`'s, else float32 (for code that runs a net's parameters
  itself, as the PixelCNN's cached sampler does)."""
  return module.dtype if isinstance(module, Cast) else jnp.float32


def wrap(module: nn.Module, precision: str):
  """`module` computing under `precision`: the module itself for 'float32', else a `Cast` of it."""
  if precision not in POLICIES:
    raise ValueError(f"precision: unknown {precision!r}; allowed: {', '.join(POLICIES)}")
  return module if precision == "float32" else Cast(module, DTYPES[precision])


# ------------------------------------------------------------------ sums in float32

LOW = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _has_low_sum(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive is jax.lax.reduce_sum_p and eqn.invars[0].aval.dtype in LOW:
      return True
    if any(_has_low_sum(sub) for sub in jax.extend.core.jaxprs_in_params(eqn.params)):
      return True
  return False


def _evaluate(jaxpr, consts, args) -> list:
  """`jaxpr` on `args`, each sum over a bfloat16 or float16 array taken in float32 (and its jit calls' too)."""
  env = {}

  def read(v):
    return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    sub = eqn.params.get("jaxpr")
    # Each equation keeps its scope's names (profiles read them, and the augmentations' float32 geometry is
    # found by them), a jit call's name too, and its context.
    with contextlib.ExitStack() as scope:
      if str(eqn.source_info.name_stack):
        scope.enter_context(jax.named_scope(str(eqn.source_info.name_stack)))
      if eqn.primitive is jax.lax.reduce_sum_p and values[0].dtype in LOW:
        out = [jax.lax.reduce_sum_p.bind(values[0].astype(jnp.float32), **eqn.params).astype(values[0].dtype)]
      elif eqn.primitive.name in ("pjit", "jit") and isinstance(sub, jax.extend.core.ClosedJaxpr):
        with jax.named_scope(eqn.params.get("name") or "jit"):
          out = _evaluate(sub.jaxpr, sub.consts, values)
      else:
        with eqn.ctx.manager:
          out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
        out = out if eqn.primitive.multiple_results else [out]
    env.update(zip(eqn.outvars, out))
  return [read(v) for v in jaxpr.outvars]


def sums_in_float32(fun):
  """`fun` whose sums over a bfloat16 or float16 array accumulate in float32, then round once.

  Differentiation writes the gradient of a weight broadcast over positions (a bias, a normalisation's scale)
  as a sum of the cotangent, in the net's compute dtype, and XLA:CPU accumulates such a sum in that dtype: a
  bfloat16 sum of 12,544 terms of about 0.02 stops growing at 16 (the conv VAE's output bias: 16 where
  float32 says 291).

  The sums rewritten are those of `fun`'s own program and of the jit calls in it, which it then evaluates
  equation by equation with the jit calls inlined (XLA may then round a low-precision product or two
  differently from the program as traced). Sums inside the bodies of scan, cond, while, remat or shard_map
  keep their dtype; no family's loss has one. A function without such sums runs as traced, once. Arguments
  that are not arrays (Python numbers, flags) pass through as they are, as `jax.value_and_grad`'s do.
  """

  def wrapped(*args, **kwargs):
    leaves, tree = jax.tree.flatten((args, kwargs))
    traced = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray, np.generic))]

    def on_arrays(*arrays):
      given = list(leaves)
      for i, array in zip(traced, arrays):
        given[i] = array
      args, kwargs = jax.tree.unflatten(tree, given)
      return fun(*args, **kwargs)

    arrays = [leaves[i] for i in traced]
    closed, shape = jax.make_jaxpr(on_arrays, return_shape=True)(*arrays)
    if _has_low_sum(closed.jaxpr):
      out = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(arrays))
    else:
      out = jax.extend.core.jaxpr_as_fun(closed)(*jax.tree.leaves(arrays))
    return jax.tree.unflatten(jax.tree.structure(shape), out)

  return wrapped


# ------------------------------------------------------------------ dynamic loss scaling (float16)


class LossScaleState(NamedTuple):
  """A loss-scaled optimizer's state: the scale, the finite steps in a row since it last changed, the inner
  optimizer's state."""

  scale: jax.Array  # float32
  good_steps: jax.Array  # int32
  inner: Any


def loss_scaled(inner: optax.GradientTransformation, initial_scale: float = INITIAL_SCALE,
                growth_interval: int = GROWTH_INTERVAL) -> optax.GradientTransformation:
  """`inner` taking the gradients of the loss times the state's scale (`genjax.models.update.apply_gradients`
  multiplies the loss by `scale_of(opt_state)`): it divides every leaf by the scale, and updates only when all
  are finite; otherwise the update is zero (the weights stay exactly as they were), `inner`'s state stays and
  the scale halves (never below 1). After `growth_interval` finite steps in a row the scale doubles."""

  def init(params):
    return LossScaleState(jnp.float32(initial_scale), jnp.int32(0), inner.init(params))

  def update(grads, state, params=None):
    grads = jax.tree.map(lambda g: g / state.scale, grads)
    finite = all_finite(grads)
    updates, inner_state = inner.update(grads, state.inner, params)
    updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
    inner_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner_state, state.inner)
    good = jnp.where(finite, state.good_steps + 1, 0)
    grow = good >= growth_interval
    scale = jnp.where(finite, jnp.where(grow, state.scale * 2.0, state.scale), jnp.maximum(state.scale / 2.0, 1.0))
    return updates, LossScaleState(scale, jnp.where(grow, 0, good).astype(jnp.int32), inner_state)

  return optax.GradientTransformation(init, update)


def all_finite(tree) -> jax.Array:
  """Whether every entry of every leaf of `tree` is finite (a traced bool)."""
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def scale_of(opt_state) -> jax.Array | None:
  """The loss scale of a `loss_scaled` optimizer's state; None for any other optimizer."""
  return opt_state.scale if isinstance(opt_state, LossScaleState) else None
