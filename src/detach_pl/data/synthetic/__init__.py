"""The built-in synthetic kitchen: its generator's public names (`world`) and its DataModule.

`detach_pl.data.synthetic.SyntheticKitchenDataModule` is the class path of the configs and of
saved checkpoints; the world's names (`generate_run`, `SyntheticKitchenConfig`, `CLASS_NAMES`, …)
are importable from here as from `detach_pl.data.synthetic.world`.
"""

from detach_pl.data.synthetic.datamodule import SyntheticKitchenDataModule
from detach_pl.data.synthetic.world import *  # noqa: F403 - the world's public names, listed in its __all__
from detach_pl.data.synthetic.world import __all__ as _world_names

__all__ = ["SyntheticKitchenDataModule", *_world_names]
