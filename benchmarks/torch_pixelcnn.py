"""genjax's Gated PixelCNN (genjax.nets.pixelcnn.GatedPixelCNN) written in PyTorch, genjax's parameters loaded into
it, and the naive sampler of binary images.

The net is written the way PyTorch ports of the Gated PixelCNN write it (NCHW, nn.Conv2d, the masks multiplied
into the kernels at each call, the down shift a pad and a crop), its modules named after genjax's parameter tree
(v_conv_0, h_conv_0, v_to_h_0, h_out_0, ..., head_0, head_1), so that `load_flax_params` copies a genjax
GatedPixelCNN's parameters into it and the two compute the same function. The masks are built by genjax's own
`channel_groups` and `group_mask`, so the port cannot drift from genjax's masking; everything else (the padding,
the shift, the gates, the residuals, the head) is written out again here, which is what the test checks.
A benchmark that times genjax's PixelCNN sampling against PyTorch's (pixelcnn_sampling.py) builds its contender
here. PyTorch is imported by the functions, not by importing this module.

Left out: the conditioning input (GatedPixelCNN's cond_BxE and its cond_v_*, cond_h_* projections); the
benchmarked model is unconditional. `load_flax_params` refuses a parameter tree that has them.
"""

import numpy as np

from genjax.nets.pixelcnn import channel_groups, group_mask


def torch_name(flax_path: str) -> str:
  """The torch parameter of a genjax leaf, given as 'v_conv_0.kernel'."""
  return "m." + flax_path.replace("kernel", "weight")


def pixelcnn(channels: int, features: int = 64, num_layers: int = 8, first_kernel_size: int = 7,
             kernel_size: int = 3, out_features: int = 256, head_features: int | None = None,
             per_pixel_features: bool = False):
  """genjax's GatedPixelCNN in PyTorch for `channels`-channel images (genjax infers C from its input; a torch
  module needs it to size its first kernels). The other arguments are GatedPixelCNN's attributes.

  forward(x_NCHW) gives the head's output [N, C * out_features, H, W] (channel c's logits in block c, as genjax's
  reshape reads them; [N, out_features, H, W] with per_pixel_features); `logits_nhwc` gives genjax's layout.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  groups = 1 if per_pixel_features else channels
  f, hf = features, head_features or features
  for name, k in (("first_kernel_size", first_kernel_size), ("kernel_size", kernel_size)):
    if k < 1 or k % 2 == 0:
      raise ValueError(f"pixelcnn: {name} must be odd and positive, got {k}")
  if f % groups or hf % groups:
    raise ValueError(f"pixelcnn: features ({f}) and head_features ({hf}) must be multiples of {groups} groups")

  class MaskedConv2d(nn.Conv2d):
    """nn.Conv2d whose kernel is multiplied by a fixed 0/1 mask (genjax's nn.Conv `mask`, given in HWIO) at each
    call, after padding (left, right, top, bottom) as genjax's explicit, asymmetric padding does."""

    def __init__(self, c_in, c_out, kernel, pad=(0, 0, 0, 0), mask_hwio=None):
      super().__init__(c_in, c_out, kernel)
      self.pad = pad
      mask = None if mask_hwio is None else torch.from_numpy(np.ascontiguousarray(mask_hwio.transpose(3, 2, 0, 1)))
      self.register_buffer("mask", mask, persistent=False)  # not in state_dict: not a parameter of genjax's

    def forward(self, x):
      weight = self.weight if self.mask is None else self.weight * self.mask
      return F.conv2d(F.pad(x, self.pad) if any(self.pad) else x, weight, self.bias)

  def gate(y):
    a, b = torch.chunk(y, 2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)

  def down_shift(x):
    """Row i holds row i - 1 of the input (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]

  class GatedPixelCNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.channels, self.out_features, self.per_pixel_features = channels, out_features, per_pixel_features
      feature_groups = channel_groups(f, groups)
      gate_groups = np.tile(feature_groups, 2)  # the a and b halves of a gate in the same group
      residual_mask = group_mask(feature_groups, feature_groups, include_own=True)[None, None]
      m = nn.ModuleDict()
      c_in, h_groups = channels, channel_groups(channels, groups)
      for layer in range(num_layers):
        k = first_kernel_size if layer == 0 else kernel_size
        r = k // 2
        m[f"v_conv_{layer}"] = MaskedConv2d(c_in, 2 * f, (r + 1, k), pad=(r, r, r, 0))
        h_mask = np.ones((1, r + 1, c_in, 2 * f), np.float32)
        h_mask[0, r] = group_mask(h_groups, gate_groups, include_own=layer > 0)  # the current pixel's tap
        m[f"h_conv_{layer}"] = MaskedConv2d(c_in, 2 * f, (1, r + 1), pad=(r, 0, 0, 0), mask_hwio=h_mask)
        m[f"v_to_h_{layer}"] = MaskedConv2d(2 * f, 2 * f, 1)
        m[f"h_out_{layer}"] = MaskedConv2d(f, f, 1, mask_hwio=residual_mask)
        c_in, h_groups = f, feature_groups
      head_groups = channel_groups(hf, groups)
      n_out = out_features * (1 if per_pixel_features else channels)
      out_groups = channel_groups(n_out, groups)  # channel c's out_features logits in group c
      m["head_0"] = MaskedConv2d(f, hf, 1, mask_hwio=group_mask(feature_groups, head_groups, True)[None, None])
      m["head_1"] = MaskedConv2d(hf, n_out, 1, mask_hwio=group_mask(head_groups, out_groups, True)[None, None])
      self.m, self.num_layers = m, num_layers

    def forward(self, x):
      m = self.m
      v = h = x
      for layer in range(self.num_layers):
        v_pre = m[f"v_conv_{layer}"](v)
        h_pre = m[f"h_conv_{layer}"](h) + m[f"v_to_h_{layer}"](down_shift(v_pre))
        v = gate(v_pre)
        h_new = m[f"h_out_{layer}"](gate(h_pre))
        h = h_new if layer == 0 else h + h_new
      return m["head_1"](F.relu(m["head_0"](F.relu(h))))

    def logits_nhwc(self, x_NHWC):
      """genjax's call: [N, H, W, C] in, [N, H, W, C, out_features] out ([N, H, W, out_features] per pixel)."""
      y = self(x_NHWC.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
      return y if self.per_pixel_features else y.reshape(*y.shape[:3], self.channels, self.out_features)

  return GatedPixelCNN()


def load_flax_params(module, params) -> None:
  """Copies a genjax GatedPixelCNN's parameter tree (flax's {'v_conv_0': {'kernel', 'bias'}, ...}) into the torch
  net of `pixelcnn`, refusing any leaf it has no place for or any torch parameter left unset."""
  import torch  # pylint: disable=g-import-not-at-top

  targets = module.state_dict()
  state = {}
  for layer, leaves in params.items():
    for leaf, value in leaves.items():
      path = torch_name(f"{layer}.{leaf}")
      assert path in targets, f"a genjax parameter the torch net has no place for (cond is left out): {layer}.{leaf}"
      value = np.asarray(value, np.float32)
      if value.ndim == 4:  # HWIO -> OIHW
        value = value.transpose(3, 2, 0, 1)
      assert tuple(value.shape) == tuple(targets[path].shape), (path, value.shape, targets[path].shape)
      state[path] = torch.from_numpy(np.array(value, np.float32))  # a copy: jax arrays read as read-only
  missing = set(targets) - set(state)
  assert not missing, f"torch parameters genjax lacks: {sorted(missing)}"
  module.load_state_dict(state)


def sample_naive(net, n: int, image_shape, temperature: float = 1.0, generator=None, device=None):
  """n binary images [n, C, H, W] (float32 0/1) drawn as genjax's PixelCNN.complete draws them from a zero canvas:
  for each position (i, j, c) in raster, then channel, order, the whole net runs on the canvas so far and the
  position is set to u < sigmoid(logit / T), u uniform (torch's RNG, `generator` if given). The net must have
  out_features=1 and per-channel logits (not per_pixel_features)."""
  import torch  # pylint: disable=g-import-not-at-top

  height, width, channels = image_shape
  assert net.out_features == 1 and not net.per_pixel_features, "a Bernoulli per position: out_features=1, per channel"
  canvas = torch.zeros(n, channels, height, width, device=device)
  with torch.no_grad():
    for i in range(height):
      for j in range(width):
        for c in range(channels):
          logit = net(canvas)[:, c, i, j]
          u = torch.rand(n, generator=generator, device=device)
          canvas[:, c, i, j] = (u < torch.sigmoid(logit / temperature)).float()
  return canvas
