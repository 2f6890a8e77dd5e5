"""Generate ``examples/loans.csv``: a small, **synthetic** loan-approval data set for the README walk-through.

Nothing in it describes real people: every value is drawn from the seeded generator below, so running this
script reproduces the committed file byte for byte (``tests/test_examples.py`` checks that).

Columns (500 rows)
------------------
========================  =========  ==================================================================
column                    kind       meaning
========================  =========  ==================================================================
``age``                   int        applicant age, 21-70
``income``                float      annual income, thousands
``loan_amount``           float      requested amount, thousands
``credit_score``          int        300-850
``years_employed``        int        years in the current job
``employment``            text       salaried / self-employed / contract / unemployed
``purpose``               text       home / car / education / business
``region``                text       north / south / east / west -- the **sensitive** column
``approved``              text       yes / no -- the **target**
========================  =========  ==================================================================

How the label is made: a latent credit-worthiness score (credit score, income-to-loan ratio, employment,
purpose, noise) is thresholded. Region enters only through the features -- incomes and credit scores are drawn
with region-dependent means -- so a model that never sees ``region`` still approves the regions at different
rates: exactly the kind of gap fastfair reports.

Usage::

    python examples/make_loans_csv.py                 # rewrites examples/loans.csv
    python examples/make_loans_csv.py --out other.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240102
N_ROWS = 500
DEFAULT_OUT = Path(__file__).with_name("loans.csv")

REGIONS = ("north", "south", "east", "west")
REGION_P = (0.35, 0.30, 0.20, 0.15)
REGION_INCOME = {"north": 62.0, "south": 44.0, "east": 52.0, "west": 58.0}  # median income, thousands
REGION_CREDIT = {"north": 690.0, "south": 650.0, "east": 670.0, "west": 680.0}
EMPLOYMENT = ("salaried", "self-employed", "contract", "unemployed")
EMPLOYMENT_P = (0.60, 0.15, 0.17, 0.08)
EMPLOYMENT_EFFECT = {"salaried": 0.6, "self-employed": 0.1, "contract": 0.0, "unemployed": -1.5}
PURPOSE = ("home", "car", "education", "business")
PURPOSE_P = (0.35, 0.30, 0.15, 0.20)
PURPOSE_EFFECT = {"home": 0.3, "car": 0.2, "education": 0.0, "business": -0.4}


def make_loans(n: int = N_ROWS, seed: int = SEED) -> pd.DataFrame:
    """The synthetic loans table (deterministic for ``n`` and ``seed``)."""
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, size=n, p=REGION_P)
    employment = rng.choice(EMPLOYMENT, size=n, p=EMPLOYMENT_P)
    purpose = rng.choice(PURPOSE, size=n, p=PURPOSE_P)
    age = rng.integers(21, 71, size=n)
    median_income = np.array([REGION_INCOME[r] for r in region])
    income = np.round(median_income * np.exp(0.45 * rng.normal(size=n)), 1)
    income = np.where(employment == "unemployed", np.round(0.3 * income, 1), income)
    loan_amount = np.round(np.clip(income * rng.uniform(0.2, 1.6, size=n), 2.0, None), 1)
    credit_mean = np.array([REGION_CREDIT[r] for r in region]) + 1.5 * (age - 45)
    credit_score = np.clip(np.rint(credit_mean + 55 * rng.normal(size=n)), 300, 850).astype(int)
    years_employed = np.where(
        employment == "unemployed", 0, np.minimum(rng.poisson(4 + (age - 21) / 8), age - 18)
    ).astype(int)

    score = (
        (credit_score - 660) / 45
        + 1.2 * np.log(income / loan_amount)
        + np.array([EMPLOYMENT_EFFECT[e] for e in employment])
        + np.array([PURPOSE_EFFECT[p] for p in purpose])
        + 0.05 * years_employed
        + 0.8 * rng.normal(size=n)
    )
    approved = np.where(score > 0.8, "yes", "no")
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "loan_amount": loan_amount,
            "credit_score": credit_score,
            "years_employed": years_employed,
            "employment": employment,
            "purpose": purpose,
            "region": region,
            "approved": approved,
        }
    )


def write_loans(path: str | Path = DEFAULT_OUT, *, n: int = N_ROWS, seed: int = SEED) -> Path:
    """Write the table as CSV (header row, ``\\n`` line endings, one decimal for the money columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_loans(n, seed).to_csv(path, index=False, float_format="%.1f", lineterminator="\n")
    return path


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: write the CSV and print a one-line summary."""
    parser = argparse.ArgumentParser(description="Write the synthetic loans CSV used in the README.")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output CSV (default: %(default)s)")
    args = parser.parse_args(argv)
    path = write_loans(args.out)
    frame = pd.read_csv(path)
    rates = frame.groupby("region")["approved"].apply(lambda a: (a == "yes").mean()).round(2).to_dict()
    print(f"wrote {path}: {len(frame)} rows; approval rate by region {rates}")
    return path


if __name__ == "__main__":
    main()
