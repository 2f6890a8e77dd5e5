"""Packed training: many small runs that share a shape and settings, trained as one computation.

:func:`train_pack` trains M runs (their own seeds, shuffling, data and radii) with stacked weights and returns one
:class:`~fastfair.training.TrainResult` per run; :mod:`.models` holds the packed models and :mod:`.inner` what
the inner solvers need to run on a packed batch. The sweep planner (:mod:`fastfair.experiments.packs`) groups a
grid's cells into packs.
"""

from .models import PackedAffine, PackedMLP, PackedModel, pack_models, packable_model
from .train import PACKABLE_SOLVERS, PackTiming, pack_key, train_pack, unpackable_reason

__all__ = [
    "PACKABLE_SOLVERS",
    "PackTiming",
    "PackedAffine",
    "PackedMLP",
    "PackedModel",
    "pack_key",
    "pack_models",
    "packable_model",
    "train_pack",
    "unpackable_reason",
]
