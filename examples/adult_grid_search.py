"""Robust training in plain scikit-learn: grid search over the radius on Adult, then a fairness/accuracy plot.

What it does
------------
1. Loads the bundled Adult data **unscaled** (``fastfair.datasets.load("adult", standardize=False)``): the
   pipeline below does the scaling, fitted inside each cross-validation fold.
2. Grid-searches ``Pipeline([StandardScaler, RobustFairClassifier])`` with ``GridSearchCV`` over the inner
   solver and the perturbation radius, scored by accuracy: ``none`` (ordinary training), ``trs`` (the exact
   worst case) and ``random`` (a random perturbation of the same size, the cheap baseline). ``pgd`` is left
   out on purpose: for the affine model the loss grows monotonically along ±w, so PGD walks to the very point
   ``trs`` computes in closed form and its row would repeat the ``trs`` row at ten times the cost.
3. Refits every grid point on the whole training split, predicts the official Adult test split and hands the
   predictions straight to Fairlearn's ``MetricFrame`` (per-group accuracy, selection rate, TPR, FPR).
4. Writes, under the output directory:

   * ``adult_grid_search_cv.csv`` -- ``GridSearchCV.cv_results_`` (one row per grid point);
   * ``adult_tradeoff.csv`` -- per grid point: test accuracy, the demographic-parity and equalized-odds
     differences (max minus min over groups) and each group's selection rate;
   * ``adult_tradeoff.png`` -- fairness gap against test accuracy, one point per radius, one line per solver.

Run it
------
    python examples/adult_grid_search.py                       # full grid, results/examples/ (~5 min)
    python examples/adult_grid_search.py --quick --out /tmp/ex # small grid on 2,000 rows (seconds)
    python examples/adult_grid_search.py --sensitive race_all  # all five race groups instead of sex

The core is :func:`main`, which the test suite calls with ``quick=True``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # write files only; never open a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.base import clone
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fastfair import datasets
from fastfair.estimator import RobustFairClassifier

DEFAULT_OUT = Path("results/examples")
METRICS = {
    "accuracy": accuracy_score,
    "selection_rate": selection_rate,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
}


@dataclass(frozen=True)
class Setting:
    """How big a run is: the grid, the data size and the training budget."""

    radii: tuple[float, ...]
    solvers: tuple[str, ...]
    epochs: int
    cv: int
    train_rows: int | None  # None = the whole training split
    test_rows: int | None
    batch_size: int = 100


FULL = Setting(
    radii=(0.01, 0.03, 0.1, 0.3, 1.0),
    solvers=("trs", "random"),
    epochs=5,
    cv=3,
    train_rows=None,
    test_rows=None,
)
QUICK = Setting(radii=(0.1, 1.0), solvers=("trs",), epochs=2, cv=2, train_rows=2000, test_rows=2000)


@dataclass
class AdultFrames:
    """Adult as pandas objects: features with column names, 0/1 income labels, group names per row."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    s_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    s_test: np.ndarray
    group_names: tuple[str, ...]


def load_adult(sensitive: str = "sex", *, seed: int = 0, setting: Setting = FULL) -> AdultFrames:
    """The bundled Adult train and test splits, unscaled, optionally subsampled (seeded) for a quick run."""
    data = datasets.load("adult", seed=seed, sensitive=sensitive, standardize=False)
    rng = np.random.default_rng(seed)

    def frames(split: datasets.Split, rows: int | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        if rows is not None and rows < len(split):
            split = split.subset(np.sort(rng.choice(len(split), size=rows, replace=False)))
        X = pd.DataFrame(split.X, columns=list(split.feature_names))
        return X, split.y, np.asarray(split.group_names, dtype=object)[split.s]

    X_train, y_train, s_train = frames(data.train, setting.train_rows)
    X_test, y_test, s_test = frames(data.test, setting.test_rows)
    return AdultFrames(X_train, y_train, s_train, X_test, y_test, s_test, data.group_names)


def make_grid_search(setting: Setting, *, seed: int = 0) -> GridSearchCV:
    """``GridSearchCV`` of ``StandardScaler -> RobustFairClassifier`` over solver and radius, by accuracy."""
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", RobustFairClassifier(epochs=setting.epochs, batch_size=setting.batch_size, seed=seed)),
        ]
    ).set_output(transform="pandas")  # the classifier sees (and records) the column names
    param_grid = [
        {"clf__solver": ["none"]},  # the non-robust baseline (the radius is unused there)
        {"clf__solver": list(setting.solvers), "clf__radius": list(setting.radii)},
    ]
    folds = StratifiedKFold(n_splits=setting.cv, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, param_grid, cv=folds, scoring="accuracy", refit=True)


def evaluate_grid(
    grid: GridSearchCV, adult: AdultFrames
) -> tuple[pd.DataFrame, dict[tuple[str, float], MetricFrame]]:
    """Refit each grid point on the training split; test-set accuracy and fairness via ``MetricFrame``."""
    rows: list[dict[str, Any]] = []
    frames: dict[tuple[str, float], MetricFrame] = {}
    for rank, params, cv_score in zip(
        grid.cv_results_["rank_test_score"],
        grid.cv_results_["params"],
        grid.cv_results_["mean_test_score"],
        strict=True,
    ):
        if params == grid.best_params_ and grid.refit:
            model = grid.best_estimator_  # already refitted on the whole training split
        else:
            model = clone(grid.estimator).set_params(**params).fit(adult.X_train, adult.y_train)
        y_pred = model.predict(adult.X_test)
        mf = MetricFrame(metrics=METRICS, y_true=adult.y_test, y_pred=y_pred, sensitive_features=adult.s_test)
        gaps = mf.difference(method="between_groups")
        solver = params["clf__solver"]
        radius = float(params.get("clf__radius", 0.0)) if solver != "none" else 0.0
        frames[(solver, radius)] = mf
        row = {
            "solver": solver,
            "radius": radius,
            "cv_accuracy": float(cv_score),
            "cv_rank": int(rank),
            "test_accuracy": float(mf.overall["accuracy"]),
            "demographic_parity_difference": float(gaps["selection_rate"]),
            "equalized_odds_difference": float(max(gaps["tpr"], gaps["fpr"])),
        }
        for group, rate in mf.by_group["selection_rate"].items():
            row[f"selection_rate[{group}]"] = float(rate)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["solver", "radius"], ignore_index=True)
    return table, frames


def plot_tradeoff(table: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Fairness gap (y) against test accuracy (x): one marker per radius, one line per solver."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    gap_columns = {
        "demographic_parity_difference": "demographic parity difference\n(selection-rate gap, max - min)",
        "equalized_odds_difference": "equalized odds difference\n(max of TPR and FPR gaps)",
    }
    baseline = table[table["solver"] == "none"]
    for ax, (column, label) in zip(axes, gap_columns.items(), strict=True):
        for solver, rows in table[table["solver"] != "none"].groupby("solver", sort=True):
            rows = rows.sort_values("radius")
            ax.plot(rows["test_accuracy"], rows[column], marker="o", label=f"{solver} (robust)")
            for _, r in rows.iterrows():
                ax.annotate(
                    f"r={r['radius']:g}",
                    (r["test_accuracy"], r[column]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        if len(baseline):
            ax.scatter(
                baseline["test_accuracy"],
                baseline[column],
                marker="*",
                s=180,
                color="black",
                zorder=3,
                label="none (non-robust)",
            )
        ax.set_xlabel("test accuracy")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(
    out_dir: str | Path = DEFAULT_OUT,
    quick: bool = False,
    *,
    sensitive: str = "sex",
    seed: int = 0,
    setting: Setting | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the whole example and write its three files under ``out_dir``.

    Returns a dict with the fitted ``grid`` (``GridSearchCV``), the trade-off ``table`` (DataFrame), the
    ``metric_frames`` (``{(solver, radius): MetricFrame}`` on the test split), the ``adult`` data and the
    written ``paths`` (``cv_results``, ``tradeoff``, ``plot``).
    """
    setting = setting or (QUICK if quick else FULL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adult = load_adult(sensitive, seed=seed, setting=setting)

    grid = make_grid_search(setting, seed=seed)
    grid.fit(adult.X_train, adult.y_train)
    table, metric_frames = evaluate_grid(grid, adult)

    cv_results = pd.DataFrame(grid.cv_results_).drop(columns="params")
    paths = {
        "cv_results": out / "adult_grid_search_cv.csv",
        "tradeoff": out / "adult_tradeoff.csv",
        "plot": out / "adult_tradeoff.png",
    }
    cv_results.to_csv(paths["cv_results"], index=False)
    table.to_csv(paths["tradeoff"], index=False)
    title = (
        f"Adult ({len(adult.y_train):,} training rows, sensitive: {sensitive}): "
        "fairness vs accuracy of robust training"
    )
    plot_tradeoff(table, paths["plot"], title=title)

    if verbose:
        n_points = len(grid.cv_results_["params"])
        print(f"best of {n_points} grid points by {setting.cv}-fold CV accuracy: {grid.best_params_}")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        for name, path in paths.items():
            print(f"wrote {name}: {path}")
    return {"grid": grid, "table": table, "metric_frames": metric_frames, "adult": adult, "paths": paths}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the example."""
    parser = argparse.ArgumentParser(
        description="Grid search RobustFairClassifier on Adult and plot the fairness/accuracy trade-off."
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small grid on 2,000 rows: seconds, not minutes")
    parser.add_argument(
        "--sensitive",
        default="sex",
        choices=("sex", "race", "race_all"),
        help="sensitive attribute: sex, race (white vs non-white) or race_all (five groups)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for subsampling, folds and training")
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    main(args.out, quick=args.quick, sensitive=args.sensitive, seed=args.seed)
