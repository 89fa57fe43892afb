"""genjax's FID Inception-v3 equals pytorch-fid's, run from pytorch-fid's own code on the same random weights.

pytorch-fid builds its network from torchvision's Inception-v3 and patches the
blocks where TensorFlow's graph differs (`pytorch_fid.inception`); its
`load_state_dict_from_url` is the one place it would download, and here it
hands over random weights instead. Those weights go through genjax's converter
(BatchNorm folded into the convolutions) into the Flax network.
"""

import os

import jax
import numpy as np
import pytest
import torch

from genjax import convert_inception, data, quality
from genjax.errors import UserError
from genjax.metrics import features
from genjax.nets import inception
from tests.torch_fid import import_pytorch_fid, random_state_dict


@pytest.fixture(scope="module")
def networks():
  """(a maker of pytorch-fid's InceptionV3 on random weights, those weights converted for genjax, the state dict)."""
  pt = import_pytorch_fid()
  # torchvision's Inception-v3 with FID's 1,008 classes has the names and shapes of pytorch-fid's state dict
  # (its FID blocks subclass torchvision's and add no parameters).
  state = random_state_dict(pt._inception_v3(num_classes=1008, aux_logits=False, weights=None), seed=0)
  original = pt.load_state_dict_from_url
  pt.load_state_dict_from_url = lambda url, progress=True: state  # its one download, answered locally

  def torch_net(**kwargs):
    return pt.InceptionV3(**kwargs).eval()

  yield torch_net, features.inception_params_from_torch({k: v.numpy() for k, v in state.items()}), state
  pt.load_state_dict_from_url = original


def _torch_blocks(net, x_NCHW: np.ndarray) -> list[np.ndarray]:
  with torch.no_grad():
    return [y.numpy() for y in net(torch.from_numpy(x_NCHW))]


def test_every_block_equals_pytorch_fids_on_the_same_random_weights(networks):
  torch_net, params, _ = networks
  x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 107, 93)).astype(np.float32)  # odd sizes: every pool's edge
  want = _torch_blocks(torch_net(output_blocks=[0, 1, 2, 3], resize_input=False, normalize_input=False), x)
  got = jax.jit(inception.FIDInceptionV3().apply)({"params": params}, x.transpose(0, 2, 3, 1))
  for block, (w, g) in enumerate(zip(want, got, strict=True)):
    g = np.asarray(g)
    g = g.transpose(0, 3, 1, 2) if g.ndim == 4 else g[:, :, None, None]
    assert g.shape == w.shape, block
    scale = np.abs(w).max()
    assert 0.1 < scale < 100, (block, scale)  # activations of order one: a tolerance of 1e-4 means something
    np.testing.assert_allclose(g / scale, w / scale, atol=1e-4, err_msg=f"block {block}")


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3), (1, 340, 310, 3)],
                         ids=["grey28", "rgb32", "rgb340x310-down"])
def test_the_resize_rule_is_pytorch_fids(networks, shape):
  """uint8 images through fid_input and block 0 equal pytorch-fid's F.interpolate (bilinear, no antialias) path."""
  torch_net, params, _ = networks
  images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  rgb = np.repeat(images, 3, axis=-1) if shape[-1] == 1 else images  # pytorch-fid reads PNGs with .convert('RGB')
  want = _torch_blocks(torch_net(output_blocks=[0]), (rgb.transpose(0, 3, 1, 2) / 255.0).astype(np.float32))[0]
  x = inception.fid_input(images)
  assert x.shape == (shape[0], 299, 299, 3)
  got = np.asarray(inception.FIDInceptionV3(last_block=0).apply(
      {"params": {k: v for k, v in params.items() if k.startswith("Conv2d_")}}, x)[0]).transpose(0, 3, 1, 2)
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, atol=1e-4)


def test_features_of_uint8_images_are_the_final_pool(networks):
  torch_net, params, _ = networks
  images = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  want = _torch_blocks(torch_net(), (np.repeat(images, 3, -1).transpose(0, 3, 1, 2) / 255.0).astype(np.float32))
  got = np.asarray(features.inception_features(params, images))
  assert got.shape == (2, inception.FEATURES)
  np.testing.assert_allclose(got, want[0][:, :, 0, 0], rtol=1e-4, atol=1e-4 * np.abs(want[0]).max())


def test_the_converter_reads_a_pth_and_writes_weights_that_load_equal(networks, tmp_path):
  _, params, state = networks
  pth, out = str(tmp_path / "random.pth"), str(tmp_path / "fid.npz")
  torch.save(state, pth)
  with pytest.raises(UserError, match=r"^--pth: .*random.pth' has sha256 \w{12}\.\.\., not pytorch-fid's published"
                                       r" 6726825d\.\.\.; its FID would not compare"):
    convert_inception.convert(pth, out)
  assert not os.path.exists(out)
  convert_inception.convert(pth, out, allow_other_weights=True)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(features.load_inception(out)), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(UserError, match=r"^--pth: no file '.*missing.pth'; download https://github.com/mseitzer"):
    convert_inception.convert(str(tmp_path / "missing.pth"), out)
  torch.save({"state_dict": state}, str(tmp_path / "nested.pth"))
  with pytest.raises(UserError, match=r"^--pth: .*nested.pth' is not a flat PyTorch state dict of tensors"):
    convert_inception.convert(str(tmp_path / "nested.pth"), out, allow_other_weights=True)
  torch.save({"fc.weight": torch.zeros(3)}, str(tmp_path / "other.pth"))
  with pytest.raises(UserError, match=r"the state dict has no Conv2d_1a_3x3.conv.weight: not pytorch-fid's"):
    convert_inception.convert(str(tmp_path / "other.pth"), out, allow_other_weights=True)


def test_quality_measures_with_inception_when_given_its_weights(networks, tmp_path, monkeypatch):
  """Inception replaces the digit classifier, its cache is its own; the reference itself scores 0, noise does not."""
  _, params, _ = networks
  weights = str(tmp_path / "fid.npz")
  features.save_params(weights, params)
  monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "cache"))
  held_out = data.load_mnist5k("test")["image"]
  # A 32-image training split keeps the reference at seconds (Inception sees 299x299 images).
  monkeypatch.setattr(quality.data, "load_mnist5k", lambda split: {"image": held_out[:32]})

  def sampler(offset):  # real digits in [0, 1], as a VAE's sample gives them
    def sample(params, key, n):
      del params, key
      return held_out[offset:offset + n].astype(np.float32) / 255.0
    return sample

  def noise(params, key, n):
    del params
    return jax.random.uniform(key, (n, 28, 28, 1))

  unscale = lambda x: np.round(np.asarray(x) * 255).astype(np.uint8)  # noqa: E731
  net = quality.network("mnist5k", weights)
  assert net.name == "FID Inception-v3" and net.tag.startswith("fid_inception-")
  assert quality.network("cifar10") is None and quality.network("cifar10", weights) is net
  same = quality.measure(sampler(0), unscale, None, jax.random.key(0), "mnist5k", 32, inception_weights=weights)
  bad = quality.measure(noise, unscale, None, jax.random.key(0), "mnist5k", 32, inception_weights=weights)
  assert os.listdir(tmp_path / "cache") == [f"mnist5k_train_{net.tag}.npz"]
  # Identical sets: FID 0 up to rounding; the unbiased KID then is -2/n (mean self-kernel - mean cross-kernel) < 0.
  assert abs(same["fid"]) < 1e-5 * bad["fid"] and -0.05 * bad["kid"] < same["kid"] < 0, (same, bad)
  assert bad["fid"] > 1 and bad["kid"] > 0, bad
  assert quality.describe("mnist5k", 48, 7, weights) == (
      f"48 samples (seed 7) against the train split of mnist5k, features of FID Inception-v3 ({net.tag})")
