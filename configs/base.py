"""Fields shared by every experiment. Experiment files override a few of them.

Every field is typed: `--config.FIELD=VALUE` on the command line must parse as
the field's type, and an unknown field is refused (the dict is locked).
"""

import ml_collections
from ml_collections import config_dict

from genjax import models  # noqa: F401  pylint: disable=unused-import  (registers the families)
from genjax.models import family as family_lib


def get_config(family: str = "vae") -> ml_collections.ConfigDict:
  """The shared fields, and the blocks of `family` (a name in genjax.models.family's registry)."""
  c = ml_collections.ConfigDict()

  c.family = family  # model family, fixed by the config file: 'vae', 'gan' or 'diffusion' (get_config's argument)
  c.seed = 0  # int: root of every PRNG stream (init, data, train, sample, eval)

  c.dataset = ml_collections.ConfigDict()
  # 'mnist5k' (embedded, offline: 4,500 train / 500 held-out real MNIST digits),
  # a TFDS name: 'mnist', 'fashion_mnist', 'binarized_mnist', 'cifar10', 'celeb_a',
  # or a 2-D Gaussian mixture (gan and diffusion, points instead of images): 'ring8', 'grid25'.
  c.dataset.name = "mnist5k"
  c.dataset.data_dir = config_dict.placeholder(str)  # TFDS data directory; None: TFDS's default (~/tensorflow_datasets)
  c.dataset.download = True  # bool: let TFDS download and prepare a missing dataset

  # The family's own fields, with their comments, come from its model module (config_blocks):
  # 'model' (and the GAN's 'gan'); a config holds the blocks of its family only.
  for block, fields in family_lib.get(family).config_blocks().items():
    c[block] = fields

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3  # float > 0: Adam step size (gan: the generator's)
  # gan: the discriminator's step size (TTUR); None: learning_rate
  c.optim.d_learning_rate = config_dict.placeholder(float)
  c.optim.schedule = "constant"  # 'constant' or 'cosine' (decays to 0 at num_steps)
  c.optim.b1 = 0.9  # float in [0, 1): Adam first-moment decay
  c.optim.b2 = 0.999  # float in [0, 1): Adam second-moment decay
  c.optim.grad_clip_norm = config_dict.placeholder(float)  # float > 0: clip the global gradient norm; None: no clipping

  # How the global batch is spread over devices; neither changes the numbers (genjax.parallel):
  c.parallel = "jit"  # 'jit' (one program over a 1-D device mesh) or 'pmap' (one program per device)
  c.num_devices = config_dict.placeholder(int)  # int > 0: the first devices of jax.devices(); None: all of them
  # How conv nets run their stride-2 layers (genjax.nets.layers); the parameters and numbers are the same:
  # 'auto' ('fast' on CPU, 'xla' on GPU/TPU), 'fast' (stride-1 sub-pixel/space-to-depth forms) or 'xla' (native).
  c.conv_impl = "auto"
  # int > 0: training steps per compiled call (a lax.scan over that many batches; the same numbers as 1).
  # Calls stop at every log, checkpoint and eval step, and SIGTERM waits for the call in flight.
  c.steps_per_call = 1

  c.batch_size = 128  # int > 0: global batch, examples per step (divisible by the device count)
  c.num_steps = 3000  # int > 0: training steps (one batch each)
  c.log_every = 100  # int > 0: steps between metric lines (JSONL, TensorBoard, progress)
  c.eval_every = 1000  # int > 0: steps between held-out evaluations and sample grids (and at the end)
  c.checkpoint_every = 500  # int > 0: steps between checkpoints (and at the end)
  c.keep_checkpoints = 3  # int > 0: newest checkpoints kept

  c.eval = ml_collections.ConfigDict()
  c.eval.num_examples = 500  # int > 0: held-out examples evaluated (first ones of the test split)
  c.eval.batch_size = 100  # int > 0: held-out examples per evaluation call
  # int >= 0: samples whose FID and KID every evaluation measures (genjax.quality); 0: none
  c.eval.quality_samples = 5000
  # str: FID Inception-v3 weights (.npz from `python -m genjax.convert_inception`), the features of FID/KID on
  # any image dataset; None: the shipped digit classifier on digit datasets, no numbers on others
  c.eval.inception_weights = config_dict.placeholder(str)
  return c
