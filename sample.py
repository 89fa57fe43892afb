"""Samples and evaluates the latest checkpoint: python sample.py --workdir=DIR.

Writes DIR/sample/*.png from the run's fixed sample key and DIR/sample/eval.json:
  VAE: samples, reconstructions, interpolations; prints the held-out negative
       ELBO and IWAE NLL (--iwae_k samples).
  GAN: samples and spherical interpolations of the EMA generator (with
       BatchNorm statistics of its own), or with --weights=raw of the raw
       generator (into DIR/sample_raw), and with --truncation=T a grid from
       the prior truncated to [-T, T].
  Diffusion: samples, the denoising trajectory of 8 samples and the
       predictions of the data along it, from the EMA weights (or with
       --weights=raw the trained ones, into DIR/sample_raw); prints the
       variational bound in bits/dim of the held-out examples.
  Image datasets: FID, KID, precision/recall and density/coverage of
  --quality_samples samples. On a 2-D mixture (any family that samples
  points): a scatter picture and the mode coverage of 2,500 samples.
"""

import math
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow logs (before absl's logging starts, so past TF_CPP_MIN_LOG_LEVEL) that its oneDNN kernels are on;
# it only decodes and batches images here, where they change no number.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# Ctrl-C while Python is still importing (seconds: JAX, TensorFlow): nothing has been read or written yet, so
# exit at once in one line; cli.run hands Ctrl-C back to Python's KeyboardInterrupt once the imports are done.
if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
  signal.signal(signal.SIGINT, lambda signum, frame: (
      print("error: interrupted (Ctrl-C) while starting; nothing was written", file=sys.stderr, flush=True),
      os._exit(130)))  # pylint: disable=protected-access
# SIGTERM (a scheduler, a TPU VM's maintenance) is a request to stop, never an error: exit 0, as the loop does.
signal.signal(signal.SIGTERM, lambda signum, frame: (
    print("stopped on request (SIGTERM) while starting; nothing was written", file=sys.stderr, flush=True),
    os._exit(0)))  # pylint: disable=protected-access

from absl import flags  # noqa: E402

from genjax import cli, config_flag  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by train.py.", required=True)
_IWAE_K = flags.DEFINE_integer("iwae_k", None, "VAE: importance samples of the IWAE NLL estimate; default 1000.")
_TRUNCATION = flags.DEFINE_float("truncation", None, "GAN: also write a grid with each latent coordinate in [-T, T].")
_QUALITY_SAMPLES = flags.DEFINE_integer(
    "quality_samples", 5000, "Samples of FID, KID, precision/recall, density/coverage; 0: none.")
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    "inception_weights", None, "FID Inception-v3 weights (python -m genjax.convert_inception); default: the run's"
    " eval.inception_weights, else the digit classifier on digit datasets.")
_WEIGHTS = flags.DEFINE_string(
    "weights", None, "'ema' or 'raw' for a family that keeps an EMA (GAN, diffusion; default 'ema'), 'raw' otherwise;"
    " pictures of non-default weights go to DIR/sample_<weights>.")
_SET = flags.DEFINE_multi_string(
    "set", [], "FIELD=VALUE, repeatable: a sampling or evaluation option of the run's family, e.g."
    " --set=diffusion.sampler=heun --set=diffusion.sample_steps=18 (a diffusion model's sampler, steps, eta,"
    " churn, levels); the options a resume may change, listed when one is refused.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Held-out examples; default: the config's eval.num_examples.")
_LABEL = flags.DEFINE_integer("label", None, "A conditional model: also write 64 samples of this class.")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Conditional diffusion: classifier-free guidance scale s (1: the"
                               " conditional model, 0: the unconditional; Ho & Salimans' w is s - 1).")
_GUIDANCE_LO = flags.DEFINE_float("guidance_lo", None, "Conditional diffusion: guide only at sigma / alpha above this.")
_GUIDANCE_HI = flags.DEFINE_float("guidance_hi", None, "Conditional diffusion: ... and at or below this.")
_INPAINT = flags.DEFINE_string("inpaint", None, "A family that inpaints (diffusion, PixelCNN): also write held-out"
                               " images inpainted where this mask hides them: lower_half, centre_box or random_pixels"
                               " (the method: --set=diffusion.inpaint_method=...).")


def main(argv):
  del argv  # cli.run refuses extra arguments
  with cli.user_errors_exit():
    cli.start_jax()
    from genjax import sample_lib  # pylint: disable=g-import-not-at-top
    result = sample_lib.sample_and_evaluate(cli.workdir_flag(_WORKDIR.value), iwae_k=_IWAE_K.value, num_examples=_NUM_EXAMPLES.value,
                                            truncation=_TRUNCATION.value, quality_samples=_QUALITY_SAMPLES.value,
                                            inception_weights=_INCEPTION_WEIGHTS.value, weights=_WEIGHTS.value,
                                            options=config_flag.field_values("--set", _SET.value),
                                            flag_values={"guidance": _GUIDANCE.value, "guidance_lo": _GUIDANCE_LO.value,
                                                         "guidance_hi": _GUIDANCE_HI.value},
                                            label=_LABEL.value, inpaint=_INPAINT.value)
  report = result["report"]
  print(f"checkpoint step {result['step']}, {result['weights']} weights:")
  if report["held_out"]:
    print(f"  on {result['num_examples']} held-out examples:")
    for label, unit, value in report["held_out"]:
      print(f"    {label:24s} {value:.2f} {unit}")
  if report["points"]:
    print(f"  on {report['num_points']:,} samples of the 2-D mixture:")
    for label, unit, value in report["points"]:
      # The reverse KL of samples none of which is near a mode is infinite: a result, said in words.
      shown = f"{value:.4g} {unit}" if math.isfinite(value) else "infinite: no sample is near a mode"
      print(f"    {label:24s} {shown}".rstrip())
  if report["quality"]:
    print(f"  on {report['quality_protocol']}:")
    for name, value in report["quality"]:
      print(f"    {name:24s} {value:.4g}")
  for path in result["files"]:
    print(f"  wrote {path}")


if __name__ == "__main__":
  cli.run(main)
