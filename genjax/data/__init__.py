"""genjax's data room: seeded, sharded, resumable image batches.

    from genjax import data
    it = data.train_iterator('mnist5k', batch_size=128, seed=0)
    batch = next(it)  # {'image': uint8 [128, 28, 28, 1], 'label': int32 [128]}

Datasets: `mnist5k` (5,000 real MNIST digits shipped inside genjax:
offline, numpy only) and the TFDS datasets mnist, fashion_mnist,
binarized_mnist, cifar10 and celeb_a (64x64 centre crops); and the 2-D
Gaussian mixtures ring8 and grid25 (`toy2d`), whose examples are points. Importing this
package has no side effects and does not import TensorFlow or TFDS; the
functions that read a TFDS dataset import them, with the accelerators hidden.
"""

from genjax.data.mnist5k import NUM_TRAIN as MNIST5K_TRAIN
from genjax.data.mnist5k import load_mnist5k
from genjax.data.pipeline import eval_examples, eval_image_chunks, eval_images, split_size, train_iterator, version
from genjax.data.registry import DATASETS, POINT_DATASETS, DatasetUnavailableError, image_shape, num_classes

__all__ = [
    "DATASETS",
    "DatasetUnavailableError",
    "eval_examples",
    "POINT_DATASETS",
    "eval_image_chunks",
    "eval_images",
    "image_shape",
    "load_mnist5k",
    "MNIST5K_TRAIN",
    "num_classes",
    "split_size",
    "train_iterator",
    "version",
]
