"""genjax's DDPM U-Net (genjax.nets.unet.UNet) written in PyTorch, and genjax's parameters loaded into it.

The net is written the way DDPM's PyTorch ports write it (NCHW, nn.Conv2d,
nn.GroupNorm, 1x1 convolutions for q, k, v and the shortcut), its modules
named after genjax's parameter tree, so that `load_flax_params` copies a
genjax UNet's parameters into it and the two compute the same function. A
benchmark that times genjax's U-Net against PyTorch's (diffusion_speed.py)
builds its contender here. PyTorch is imported by the functions, not by
importing this module.
"""

import math


def torch_name(flax_path: str) -> str:
  """The torch parameter of a genjax leaf, given as 'down_0_block_0.conv1.kernel'."""
  return "m." + flax_path.replace("kernel", "weight").replace("scale", "weight")


def to_torch_layout(value, shape):
  """A genjax leaf (numpy) in torch's layout: HWIO kernels to OIHW, Dense (in, out) kernels to Linear (out, in)
  or 1x1 Conv2d (out, in, 1, 1); `shape` is the torch parameter's."""
  if value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:
    return value.T.reshape(shape)
  return value


def unet(settings: dict, key_bias: bool = True):
  """genjax's U-Net in PyTorch (NCHW), its modules named as genjax's parameters (with or without a bias on the
  attention's keys, as genjax's parameters have it).

  settings: ch, ch_mult, num_res_blocks, attn_resolutions, image_size, channels and dropout, as genjax's UNet
  and its config take them.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  def norm(c):
    return nn.GroupNorm(32, c, eps=1e-6)

  class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, temb_ch, dropout):
      super().__init__()
      self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
      self.temb_proj = nn.Linear(temb_ch, c_out)
      self.norm2, self.dropout, self.conv2 = norm(c_out), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1)
      self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x, temb):
      h = self.conv1(F.silu(self.norm1(x)))
      h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
      h = self.conv2(self.dropout(F.silu(self.norm2(h))))
      return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h

  class AttnBlock(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.norm = norm(c)
      self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1, bias=n != "k" or key_bias)
                                               for n in ("q", "k", "v", "proj_out"))

    def forward(self, x):
      b, c, hh, ww = x.shape
      h = self.norm(x)
      q, k, v = (f(h).reshape(b, c, hh * ww) for f in (self.q, self.k, self.v))
      w = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c**-0.5, dim=2)  # [b, i, j]
      h = torch.bmm(v, w.transpose(1, 2)).reshape(b, c, hh, ww)
      return x + self.proj_out(h)

  class UNet(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, image_size, channels, dropout):
      super().__init__()
      self.ch, self.ch_mult, self.blocks, self.attn = ch, ch_mult, num_res_blocks, attn_resolutions
      m = nn.ModuleDict()
      m["temb_dense0"], m["temb_dense1"] = nn.Linear(ch, 4 * ch), nn.Linear(4 * ch, 4 * ch)
      m["conv_in"] = nn.Conv2d(channels, ch, 3, padding=1)
      widths, res, c = [ch], image_size, ch
      for level, mult in enumerate(ch_mult):
        for block in range(num_res_blocks):
          m[f"down_{level}_block_{block}"] = ResBlock(c, ch * mult, 4 * ch, dropout)
          c = ch * mult
          if res in attn_resolutions:
            m[f"down_{level}_attn_{block}"] = AttnBlock(c)
          widths.append(c)
        if level != len(ch_mult) - 1:
          m[f"down_{level}_downsample"] = nn.Conv2d(c, c, 3, stride=2, padding=1)
          widths.append(c)
          res = (res + 1) // 2
      m["mid_block_1"], m["mid_attn"], m["mid_block_2"] = (ResBlock(c, c, 4 * ch, dropout), AttnBlock(c),
                                                          ResBlock(c, c, 4 * ch, dropout))
      for level in reversed(range(len(ch_mult))):
        for block in range(num_res_blocks + 1):
          m[f"up_{level}_block_{block}"] = ResBlock(c + widths.pop(), ch * ch_mult[level], 4 * ch, dropout)
          c = ch * ch_mult[level]
          if res in attn_resolutions:
            m[f"up_{level}_attn_{block}"] = AttnBlock(c)
        if level != 0:
          m[f"up_{level}_upsample"] = nn.Conv2d(c, c, 3, padding=1)
          res *= 2
      m["norm_out"], m["conv_out"] = norm(c), nn.Conv2d(c, channels, 3, padding=1)
      self.m = m

    def forward(self, x, t):
      m = self.m
      half = self.ch // 2
      freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=x.device) / (half - 1))
      args = t.float()[:, None] * freqs[None]
      temb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
      temb = m["temb_dense1"](F.silu(m["temb_dense0"](temb)))
      hs = [m["conv_in"](x)]
      for level in range(len(self.ch_mult)):
        for block in range(self.blocks):
          h = m[f"down_{level}_block_{block}"](hs[-1], temb)
          if f"down_{level}_attn_{block}" in m:
            h = m[f"down_{level}_attn_{block}"](h)
          hs.append(h)
        if level != len(self.ch_mult) - 1:
          hs.append(m[f"down_{level}_downsample"](hs[-1]))
      h = m["mid_block_2"](m["mid_attn"](m["mid_block_1"](hs[-1], temb)), temb)
      for level in reversed(range(len(self.ch_mult))):
        for block in range(self.blocks + 1):
          h = m[f"up_{level}_block_{block}"](torch.cat([h, hs.pop()], dim=1), temb)
          if f"up_{level}_attn_{block}" in m:
            h = m[f"up_{level}_attn_{block}"](h)
        if level != 0:
          h = m[f"up_{level}_upsample"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
      return m["conv_out"](F.silu(m["norm_out"](h)))

  return UNet(settings["ch"], settings["ch_mult"], settings["num_res_blocks"], settings["attn_resolutions"],
              settings["image_size"], settings["channels"], settings["dropout"])


def load_flax_params(module, params) -> None:
  """Copies genjax's parameter tree into the torch U-Net of `unet`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  def walk(tree, prefix):
    for name, value in tree.items():
      path = f"{prefix}{name}"
      if isinstance(value, dict):
        yield from walk(value, path + ".")
      else:
        yield path, np.asarray(value)

  state = {}
  targets = module.state_dict()
  for path, value in walk(params, ""):
    path = torch_name(path)
    target = targets[path]
    value = to_torch_layout(value, target.shape)
    assert tuple(value.shape) == tuple(target.shape), (path, value.shape, target.shape)
    state[path] = torch.from_numpy(np.array(value, np.float32))
  missing = set(targets) - set(state)
  assert not missing, f"torch parameters genjax lacks: {sorted(missing)}"
  module.load_state_dict(state)
