"""The PyTorch port of the Gated PixelCNN (benchmarks/torch_pixelcnn.py) computes genjax's function: with genjax's
parameters loaded, its logits equal genjax's, so the sampling benchmark times the same net on both sides.

The parameters are genjax's initialisation with every leaf redrawn: biases non-zero and kernels scaled so that
logits vary by order one across positions and examples (genjax's zero biases would let a port that drops a bias,
or a shift that only moves zeros, agree). Small nets and images: the whole module runs in seconds."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import torch_pixelcnn  # noqa: E402
from genjax.nets.pixelcnn import GatedPixelCNN  # noqa: E402

SETTINGS = dict(features=6, num_layers=3, first_kernel_size=5, kernel_size=3, out_features=2, head_features=9)


def _random_params(net, x, seed: int):
  """genjax's parameter tree of `net` for input `x`, every leaf redrawn: kernels N(0, 1) / sqrt(fan-in) * 1.5,
  biases N(0, 0.5)."""
  params = net.init(jax.random.key(seed), x)["params"]
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  new = []
  for key, leaf in zip(keys, leaves):
    if leaf.ndim == 4:
      new.append(1.5 * jax.random.normal(key, leaf.shape) / np.sqrt(np.prod(leaf.shape[:3])))
    else:
      new.append(0.5 * jax.random.normal(key, leaf.shape))
  return jax.tree.unflatten(treedef, new)


CASES = {
    "binary-8x8x1": ((2, 8, 8, 1), {}),
    "float-6x6x3": ((2, 6, 6, 3), {}),
    "per-pixel-6x6x3": ((2, 6, 6, 3), {"per_pixel_features": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_torch_logits_equal_genjax(case):
  shape, extra = CASES[case]
  settings = {**SETTINGS, **extra}
  rng = np.random.default_rng(0)
  x = (rng.random(shape) < 0.5) if shape[-1] == 1 else rng.standard_normal(shape)
  x = x.astype(np.float32)
  net = GatedPixelCNN(**settings)
  params = _random_params(net, jnp.asarray(x), seed=3)
  want = np.asarray(net.apply({"params": params}, jnp.asarray(x)))
  assert want.std() > 0.3, f"logits barely vary ({want.std():.2f}): the check would be weak"

  tnet = torch_pixelcnn.pixelcnn(shape[-1], **settings)
  torch_pixelcnn.load_flax_params(tnet, params)
  with torch.no_grad():
    got = tnet.logits_nhwc(torch.from_numpy(x)).numpy()
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_torch_sampler_draws_binary_images_that_follow_the_canvas():
  """The sampler fills every position with 0 or 1, and a net whose logits are huge and positive everywhere (a
  head bias of 50) draws all ones at any temperature, one of -50 all zeros."""
  net = GatedPixelCNN(**{**SETTINGS, "out_features": 1})
  params = _random_params(net, jnp.zeros((1, 4, 4, 1)), seed=5)
  tnet = torch_pixelcnn.pixelcnn(1, **{**SETTINGS, "out_features": 1})
  torch_pixelcnn.load_flax_params(tnet, params)
  images = torch_pixelcnn.sample_naive(tnet, 3, (4, 4, 1), generator=torch.Generator().manual_seed(0))
  assert images.shape == (3, 1, 4, 4) and set(np.unique(images.numpy())) <= {0.0, 1.0}
  for bias, value in ((50.0, 1.0), (-50.0, 0.0)):
    head = {**params["head_1"], "bias": jnp.full_like(params["head_1"]["bias"], bias),
            "kernel": jnp.zeros_like(params["head_1"]["kernel"])}
    torch_pixelcnn.load_flax_params(tnet, {**params, "head_1": head})
    images = torch_pixelcnn.sample_naive(tnet, 2, (4, 4, 1), temperature=0.5)
    assert (images == value).all()
