"""The reference protocol: the authors' published setup, reproduced to the digit, beside the corrected one.

The paper's numbers (*Fast & Fair*, Minch, Vu, Warren, arXiv:2401.02012) come from its authors' code
(github elizabethnewman/fast-n-fair). That code makes choices fastfair's own protocol does not: Unfair2D drawn
with torch's generator and 200 training points out of 500, Adult read with its first records eaten and its
label inverted, an initialisation whose fan-in is read as 1, a batch-mean objective for its PGD, and its own TRS.
To tell implementation, setup and chance apart, this package replays that setup exactly -- same generator,
same sequence of random draws, same splits, initialisation, batch order, optimiser and loss reduction -- with
fastfair's own code (nothing of the reference is imported or copied), and then measures what each difference
from fastfair's protocol changes:

* :mod:`~fastfair.reference.data` -- the reference's Unfair2D draw and Adult records, labels and splits;
* :mod:`~fastfair.reference.model` -- its affine layer, initialisation and loss;
* :mod:`~fastfair.reference.protocol` -- one cell, step for step: :func:`run_reference_cell`;
* :mod:`~fastfair.reference.ablation` -- one difference at a time, and the spread over seeds;
* :mod:`~fastfair.reference.figure` -- the seed-spread figure, the published value marked;
* :mod:`~fastfair.reference.reproduce` -- the rows beside the published numbers, and the written outputs.

The corrected protocol (:mod:`fastfair.experiments.paper_protocol`) stays the default everywhere; this one is
chosen explicitly.
"""

from __future__ import annotations

from .ablation import ABLATIONS, ablation_runs, ablation_table, holm, seed_spread, seed_spread_summary
from .data import ReferenceData, draw_unfair2d, reference_adult, reference_unfair2d
from .figure import seed_spread_figure
from .model import ReferenceAffine, our_init, reference_init, reference_loss
from .protocol import CELL_SOLVERS, ReferenceCell, evaluate_reference, run_reference_cell, train_reference
from .reproduce import (
    PUBLISHED,
    ReferenceOutputs,
    check_reference_out,
    is_reference_run,
    reference_rows,
    run_reference_protocol,
    write_reference_files,
    write_reference_outputs,
)

__all__ = [
    "ABLATIONS",
    "CELL_SOLVERS",
    "PUBLISHED",
    "ReferenceAffine",
    "ReferenceCell",
    "ReferenceData",
    "ReferenceOutputs",
    "ablation_runs",
    "ablation_table",
    "check_reference_out",
    "draw_unfair2d",
    "evaluate_reference",
    "holm",
    "is_reference_run",
    "our_init",
    "reference_adult",
    "reference_init",
    "reference_loss",
    "reference_rows",
    "reference_unfair2d",
    "run_reference_cell",
    "run_reference_protocol",
    "seed_spread",
    "seed_spread_figure",
    "seed_spread_summary",
    "train_reference",
    "write_reference_files",
    "write_reference_outputs",
]
