"""Fields shared by every experiment. Experiment files override a few of them.

Every field is typed: `--config.FIELD=VALUE` on the command line must parse as
the field's type, and an unknown field is refused (the dict is locked).
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  c.family = "vae"  # model family: 'vae' or 'gan'
  c.seed = 0  # int: root of every PRNG stream (init, data, train, sample, eval)

  c.dataset = ml_collections.ConfigDict()
  # 'mnist5k' (embedded, offline: 4,500 train / 500 held-out real MNIST digits),
  # a TFDS name: 'mnist', 'fashion_mnist', 'binarized_mnist', 'cifar10', 'celeb_a',
  # or a 2-D Gaussian mixture (gan only, points instead of images): 'ring8', 'grid25'.
  c.dataset.name = "mnist5k"
  c.dataset.data_dir = config_dict.placeholder(str)  # TFDS data directory; None: TFDS's default (~/tensorflow_datasets)
  c.dataset.download = True  # bool: let TFDS download and prepare a missing dataset

  c.model = ml_collections.ConfigDict()
  # vae: 'conv' (stride-2 conv encoder, mirrored decoder) or 'mlp' (the Flax VAE example's);
  # gan: 'dcgan' (images) or 'mlp' (2-D points).
  c.model.arch = "conv"
  c.model.latent_dim = 20  # int > 0: Z, size of the latent code
  c.model.conv_widths = (32, 64)  # conv only: channels of each stride-2 layer; image size must divide by 2**len
  c.model.hidden = (256,)  # widths of the dense layers between features and latent (mlp: the hidden layers)
  c.model.likelihood = "bernoulli"  # 'bernoulli' (logits; binarised or [0,1] data) or 'gaussian'
  c.model.binarize = True  # bool: dynamic binarisation of the inputs (needs likelihood='bernoulli')
  c.model.obs_logvar = 0.0  # gaussian only: log-variance of every pixel of p(x|z), x in [0, 1]
  c.model.beta = 1.0  # float >= 0: weight of the KL term in the training loss (1 = the ELBO)
  c.model.g_width = 64  # gan dcgan: ngf, channels of G's last hidden layer (earlier layers double it)
  c.model.d_width = 64  # gan dcgan: ndf, channels of D's first layer (later layers double it)
  c.model.d_norm = "batch"  # gan dcgan: D's normalisation, 'batch', 'layer' or 'none' (penalties need 'layer'/'none')
  c.model.g_hidden = (128, 128, 128)  # gan mlp: widths of G's hidden layers
  c.model.d_hidden = (128, 128, 128)  # gan mlp: widths of D's hidden layers
  c.model.g_batchnorm = False  # gan mlp: BatchNorm after each of G's hidden layers
  c.model.pack = 1  # gan: int > 0, PacGAN's m: examples D scores together (must divide batch_size)

  c.gan = ml_collections.ConfigDict()
  # 'minimax', 'non_saturating', 'hinge', 'wasserstein' or 'least_squares' (genjax.losses.gan.LOSSES)
  c.gan.loss = "non_saturating"
  c.gan.d_steps = 1  # int > 0: discriminator updates per generator update (n_critic)
  c.gan.gp_weight = 0.0  # float >= 0: lambda of the WGAN-GP penalty on interpolates (10 in the paper)
  c.gan.r1_gamma = 0.0  # float >= 0: gamma of the R1 penalty on real data, added as gamma/2 * R1
  c.gan.r2_gamma = 0.0  # float >= 0: gamma of the R2 penalty on generated data, added as gamma/2 * R2
  c.gan.ema_decay = 0.999  # float in [0, 1): decay of the EMA of G's weights, which sampling uses (0: no EMA)

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
  c.eval.iwae_k = 64  # vae, int > 0: importance samples of the periodic held-out evaluation (sample.py: --iwae_k)
  return c
