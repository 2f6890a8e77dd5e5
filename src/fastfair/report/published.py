"""The paper's published numbers, in one place, for the claims table.

Source: E. Minch, H. Vu, A. Warren, "Fast & Fair: Efficient second-order robust optimization for fairness in
machine learning", arXiv:2401.02012 (2024). The values are read from the paper itself:

* its Unfair2D results (training split; non-robust training vs TRS at r = 0.18: the five gaps and the training
  and test accuracy);
* the radius range in which, on Unfair2D, robust training starts to beat non-robust training;
* its summaries of the Adult experiments (3 of its 6 gaps improve) and the LSAT experiments (no improvement);
* its Table 1: the ratio of the mean epoch time of PGD to that of TRS, per dataset and radius.

The paper's PGD is the reference implementation's PGD, which our solver ``pgd-paper`` reproduces.
"""

from __future__ import annotations

from types import MappingProxyType

PAPER = MappingProxyType(
    {
        "citation": "Minch, Vu, Warren, Fast & Fair, arXiv:2401.02012 (2024)",
        # Unfair2D, TRAIN split (accuracy also on test), non-robust -> TRS at r = 0.18. Accuracy as fraction.
        "unfair2d": MappingProxyType(
            {
                "dataset": "unfair2d",
                "split": "train",
                "radius": 0.18,
                "nonrobust": MappingProxyType(
                    {
                        "independence": 0.152,
                        "separation_fpr": 0.248,
                        "separation_tpr": 0.179,
                        "sufficiency_for": 0.213,
                        "sufficiency_ppv": 0.190,
                        ("accuracy", "train"): 0.795,
                        ("accuracy", "test"): 0.780,
                    }
                ),
                "trs": MappingProxyType(
                    {
                        "independence": 0.025,
                        "separation_fpr": 0.019,
                        "separation_tpr": 0.127,
                        "sufficiency_for": 0.142,
                        "sufficiency_ppv": 0.038,
                        ("accuracy", "train"): 0.735,
                        ("accuracy", "test"): 0.730,
                    }
                ),
                # "Robust training starts to beat non-robust between r = 0.14 and r = 0.17."
                "crossover": (0.14, 0.17),
            }
        ),
        # "On Adult, 3 of 6 gaps improve with robust training."
        "adult": MappingProxyType({"improved": 3, "of": 6}),
        # "On LSAT, robust training brings no improvement."
        "lsat": MappingProxyType({"improved": 0}),
        # Table 1: mean epoch time of PGD divided by that of TRS.
        "timing_ratio": MappingProxyType(
            {
                "unfair2d": MappingProxyType({0.10: 1.38, 0.20: 2.90}),
                "lsat": MappingProxyType({0.10: 2.85, 0.16: 9.64, 0.20: 7.15}),
                "adult": MappingProxyType({0.10: 8.50, 0.20: 31.41}),
            }
        ),
    }
)

#: Solver whose epoch time the paper's Table 1 calls "PGD".
PAPER_PGD = "pgd-paper"
