"""Converts pytorch-fid's Inception-v3 weights into the .npz that genjax's FID network loads.

Once, on a machine with network access and PyTorch (`pip install torch==2.13.0`, or genjax[bench]):

  wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
  python -m genjax.convert_inception --pth=pt_inception-2015-12-05-6726825d.pth --out=fid_inception.npz

then train or sample with `--config.eval.inception_weights=fid_inception.npz`
(train.py) or `--inception_weights=fid_inception.npz` (sample.py), anywhere,
offline. The .pth is pytorch-fid's port of TensorFlow's 2015-12-05 graph, the
network of the original FID (TTUR); the converter checks its sha256 against
the prefix in its published name, reads it without unpickling code
(`torch.load(weights_only=True)`), folds each BatchNorm into its convolution
(`genjax.metrics.features.inception_params_from_torch`) and writes an .npz of
named arrays (no pickle).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from genjax import cli  # noqa: E402

PUBLISHED_SHA256_PREFIX = "6726825d"


def convert(pth: str, out: str, allow_other_weights: bool = False) -> str:
  """Writes `out` from the .pth at `pth`; returns the sha256 of `pth`. UserError for a file it cannot take."""
  from genjax.errors import UserError  # pylint: disable=g-import-not-at-top
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(pth):
    raise UserError(f"--pth: no file {pth!r}; download {features.INCEPTION_SOURCE_URL} on a machine with network")
  digest = features.sha256(pth)
  if not digest.startswith(PUBLISHED_SHA256_PREFIX) and not allow_other_weights:
    raise UserError(f"--pth: {pth!r} has sha256 {digest[:12]}..., not pytorch-fid's published"
                    f" {PUBLISHED_SHA256_PREFIX}...; its FID would not compare with published numbers"
                    " (--allow_other_weights converts it anyway)")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--pth: reading a .pth needs PyTorch: pip install torch==2.13.0 (or genjax[bench])") from None
  try:
    state = torch.load(pth, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"--pth: {pth!r} is not a PyTorch state dict ({type(e).__name__})") from None
  if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    raise UserError(f"--pth: {pth!r} is not a flat PyTorch state dict of tensors (a checkpoint that holds one"
                    " under a key? save its state dict alone)")
  try:
    params = features.inception_params_from_torch({k: v.numpy() for k, v in state.items()})
  except ValueError as e:
    raise UserError(f"--pth: {pth!r}: {e}") from None
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  temporary = f"{out}.{os.getpid()}.tmp"
  features.save_params(temporary, params)
  os.replace(temporary, out)
  return digest


def main(argv):
  del argv
  args = flags.FLAGS
  with cli.user_errors_exit():
    digest = convert(args.pth, args.out, args.allow_other_weights)
  print(f"read {args.pth} (sha256 {digest[:12]}...)")
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  print(f"wrote {args.out} (sha256 {features.sha256(args.out)[:12]}...): pass it as --config.eval.inception_weights"
        " to train.py or --inception_weights to sample.py")


if __name__ == "__main__":
  # Defined here, not at import, so that tests and other tools can import `convert` beside their own flags.
  flags.DEFINE_string("pth", None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth.", required=True)
  flags.DEFINE_string("out", "fid_inception.npz", "Where to write genjax's weights (.npz).")
  flags.DEFINE_boolean("allow_other_weights", False,
                       "Convert a file whose sha256 is not the published one (weights of the same shapes).")
  cli.run(main)
