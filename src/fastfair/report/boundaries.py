"""Unfair2D decision boundaries, non-robust vs TRS: the report trains the two models itself.

The settings come from the results store (:func:`boundary_settings`): the first Unfair2D cell (an affine one
if
there is any) gives the seed, model, epochs, batch size and learning rate. Both models start from the same
seed,
so the same data and the same initial weights; only the solver differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figures import boundary_figure
from .tables import normalise

DATASET = "unfair2d"
RADIUS = 0.18


@dataclass(frozen=True)
class BoundarySettings:
    seed: int
    model: str
    epochs: int
    batch_size: int
    lr: float
    radius: float = RADIUS

    def describe(self) -> str:
        return (
            f"{self.model} model, seed {self.seed}, {self.epochs} epochs, batch size {self.batch_size}, "
            f"lr {self.lr:g}, TRS radius {self.radius:g}"
        )


def boundary_settings(
    results: pd.DataFrame, dataset: str = DATASET, radius: float = RADIUS
) -> BoundarySettings | None:
    """Training settings for the boundary figure, taken from ``results``; None if ``dataset`` is absent."""
    df = normalise(results)
    d = df[df["dataset"] == dataset]
    if d.empty:
        return None
    affine = d[d["model"] == "affine"]
    first = (affine if not affine.empty else d).iloc[0]
    return BoundarySettings(
        seed=int(first["seed"]),
        model=str(first["model"]),
        epochs=int(first["epochs"]),
        batch_size=int(first["batch_size"]),
        lr=float(first["lr"]),
        radius=radius,
    )


def train_boundary_models(settings: BoundarySettings, dataset: str = DATASET):
    """Load the dataset, train the non-robust and the TRS model; return ``(data, [(label, result), ...])``."""
    import torch

    from .. import datasets, training

    data = datasets.load(dataset, seed=settings.seed)
    out = []
    # Tiny batches (the paper's 5 points of 2 features) are all per-op overhead: intra-op threads only add
    # synchronisation, and on a busy machine they make training an order of magnitude slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for solver, label in (("none", "non-robust"), ("trs", f"TRS, r={settings.radius:g}")):
            config = training.TrainConfig(
                model=settings.model,
                solver=solver,
                radius=settings.radius,
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                lr=settings.lr,
                seed=settings.seed,
            )
            out.append((label, training.train(data, config)))
    finally:
        torch.set_num_threads(threads)
    return data, out


def unfair2d_boundary_figure(settings: BoundarySettings, dataset: str = DATASET) -> tuple[Figure, str]:
    """The figure and a one-line caption with the training accuracy of both models."""
    data, models = train_boundary_models(settings, dataset)
    X, y, s = np.asarray(data.train.X), np.asarray(data.train.y), np.asarray(data.train.s)
    names = getattr(data.train, "group_names", None)
    parts = []
    for label, result in models:
        acc = float(np.mean(result.predict(X) == y.astype(np.int64)))
        parts.append(f"{label}: train accuracy {100 * acc:.1f}%")
    fig = boundary_figure(
        X,
        y,
        s,
        [(label, result.decision_function) for label, result in models],
        group_names=list(names) if names is not None else None,
        title=f"{dataset}: decision boundaries over the training data ({len(X)} points)",
    )
    caption = f"{dataset} decision boundaries ({settings.describe()}); " + "; ".join(parts) + "."
    return fig, caption
