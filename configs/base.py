"""Fields shared by every experiment, and the chosen family's. Experiment files override a few of them.

Every field is declared once, with its default, allowed values and comment:
the shared ones in `genjax.build.SHARED`, a family's in its model module
(`genjax/models/vae.py`, `gan.py`, `diffusion.py`); docs/options.md lists
them all. Every field is typed: `--config.FIELD=VALUE` on the command line
must parse as the field's type, and an unknown field is refused (the dict is
locked).
"""

import ml_collections

from genjax import build, options


def get_config(family: str = "vae") -> ml_collections.ConfigDict:
  """The shared fields, and the blocks of `family` (a name in genjax.models.family's registry)."""
  c = ml_collections.ConfigDict()
  for block_name, block in build.blocks_of(family).items():
    fields = options.config_block(block)
    if block_name:
      c[block_name] = fields
    else:
      c.update(fields)
  c.family = family
  return c
