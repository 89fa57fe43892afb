"""Samples and evaluates the latest checkpoint: python sample.py --workdir=DIR.

Writes DIR/sample/{samples,reconstructions,interpolations}.png from a fixed
key and prints the held-out negative ELBO and IWAE NLL (--iwae_k samples).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from genjax import cli  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by train.py.", required=True)
_IWAE_K = flags.DEFINE_integer("iwae_k", 1000, "Importance samples of the IWAE NLL estimate.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Held-out examples; default: the config's eval.num_examples.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with cli.user_errors_exit():
    from genjax import sample_lib  # pylint: disable=g-import-not-at-top
    result = sample_lib.sample_and_evaluate(_WORKDIR.value, iwae_k=_IWAE_K.value, num_examples=_NUM_EXAMPLES.value)
  print(f"checkpoint step {result['step']}, {result['num_examples']} held-out examples:")
  print(f"  negative ELBO          {result['neg_elbo']:.2f} nats")
  print(f"  IWAE NLL (k={result['iwae_k']})  {result['nll']:.2f} nats")
  for path in result["files"]:
    print(f"  wrote {path}")


if __name__ == "__main__":
  cli.run(main)
