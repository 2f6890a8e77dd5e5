"""Per-group robustness of each method's selected model, from the models its cells stored (nothing is trained).

For every dataset and method, the selected knob (:func:`fastfair.compare.analysis.selected_model`, chosen on
validation) picks one cell per seed; its stored model is rebuilt and :func:`fastfair.robustness.group_robustness`
measures, on the test split, per group and for all points, the share of predictions that flip under the worst
perturbation of each radius (exact for the affine model; an attack, a lower bound, otherwise) and the robust
accuracy. For ExponentiatedGradient's mixture both numbers are its expectation over the mixture,
Σ_k w_k · (value of predictor k): the probability that the predictor drawn for a point flips (is robustly
correct). A constant predictor (which Fairlearn's oracle returns when the reweighted labels hold one class) never
flips. ThresholdOptimizer is left out: its thresholds depend on the group, so a perturbation of x alone does not
describe it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..experiments.cell import load_dataset, single_thread
from .analysis import points, selected_model
from .cell import ROBUSTNESS, CompareCell

#: Columns of the robustness table (``robustness.csv``).
COLUMNS = ("dataset", "method", "knob", "seed", "cell_id", "radius", "group", "n", "flip_rate", "robust_accuracy",
           "clean_accuracy", "how")  # fmt: skip


def _rebuild(cell: CompareCell, state: dict[str, Any], d: int) -> Any:
    import torch

    from ..models import build_model
    from ..training import DTYPES

    model = build_model(cell.model, d, hidden=cell.hidden, activation=cell.activation, seed=cell.seed)
    dtype = DTYPES[cell.dtype]
    model.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in state.items()})
    return model.to(dtype=dtype).eval()


def _constant_rows(y: np.ndarray, groups: np.ndarray, label: int, radii: Sequence[float]) -> pd.DataFrame:
    rows = []
    for radius in radii:
        for name in [*sorted(set(groups.tolist())), "all"]:
            mask = np.ones(len(y), dtype=bool) if name == "all" else groups == name
            correct = float(np.mean(y[mask] == label)) if mask.any() else float("nan")
            rows.append({"radius": float(radius), "group": name, "n": int(mask.sum()), "flip_rate": 0.0,
                         "robust_accuracy": correct, "clean_accuracy": correct, "method": "exact"})  # fmt: skip
    return pd.DataFrame(rows)


def cell_robustness(cell: CompareCell, record: dict[str, Any], radii: Sequence[float]) -> pd.DataFrame | None:
    """The per-group robustness of one stored cell on its test split (None for a method without models)."""
    models = record.get("models") or []
    if not models or not radii:
        return None
    from ..robustness import group_robustness

    data = load_dataset(cell.data, cell.seed)
    test = data.split("test")
    groups = np.asarray(test.group_names, dtype=object)[test.s]
    total = sum(float(m["weight"]) for m in models)
    frames = []
    with single_thread():
        for entry in models:
            if entry.get("state") is None:
                frame = _constant_rows(test.y, groups, int(entry["constant"]), radii)
            else:
                model = _rebuild(cell, entry["state"], test.X.shape[1])
                frame = group_robustness(model, test.X, test.y, groups, list(radii), seed=cell.seed)
            frames.append((float(entry["weight"]) / total, frame.reset_index(drop=True)))
    out = frames[0][1].copy()
    if len(frames) > 1:
        for col in ("flip_rate", "robust_accuracy", "clean_accuracy"):
            out[col] = sum(w * f[col].to_numpy(dtype=float) for w, f in frames)
        hows = sorted({str(v) for _, f in frames for v in f["method"]})
        out["method"] = "+".join(hows) + f" (expectation over a mixture of {len(frames)})"
    return out.rename(columns={"method": "how"})


def selected_robustness(
    cells: Sequence[CompareCell],
    records: dict[str, dict[str, Any]],
    results: pd.DataFrame,
    radii: dict[str, Sequence[float]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The robustness table of every method's selected model (one cell per seed), and ``results`` with those
    cells marked ``selected`` and the :data:`fastfair.compare.cell.ROBUSTNESS` summary on their test rows (at
    the first radius of ``radii[dataset]``)."""
    results = results.copy()
    if results.empty:
        return pd.DataFrame(columns=list(COLUMNS)), results
    pts = points(results)
    parts = []
    for cell in cells:
        record = records.get(cell.cell_id)
        dataset_radii = tuple(radii.get(cell.dataset, ()))
        if record is None or not dataset_radii:
            continue
        knob = selected_model(pts, cell.dataset, cell.method)
        if (knob is None) != (cell.knob is None) or (knob is not None and not np.isclose(knob, cell.knob)):
            continue
        rows = results["cell_id"] == cell.cell_id
        results.loc[rows, "selected"] = True
        frame = cell_robustness(cell, record, dataset_radii)
        if frame is None:
            continue
        keys = {"dataset": cell.dataset, "method": cell.method, "knob": cell.knob, "seed": cell.seed,
                "cell_id": cell.cell_id}  # fmt: skip
        parts.append(frame.assign(**keys))
        at = frame[np.isclose(frame["radius"].astype(float), dataset_radii[0])]
        each = at[at["group"].astype(str) != "all"]
        overall = at[at["group"].astype(str) == "all"].iloc[0]
        summary = {
            "robustness_radius": float(dataset_radii[0]),
            "flip_rate": float(overall["flip_rate"]),
            "flip_rate_gap": float(each["flip_rate"].max() - each["flip_rate"].min()),
            "robust_accuracy": float(overall["robust_accuracy"]),
            "robust_accuracy_gap": float(each["robust_accuracy"].max() - each["robust_accuracy"].min()),
        }
        test_row = rows & (results["split"] == "test")
        for col in ROBUSTNESS:
            results.loc[test_row, col] = summary[col]
    table = pd.concat(parts, ignore_index=True)[list(COLUMNS)] if parts else pd.DataFrame(columns=list(COLUMNS))
    return table, results
