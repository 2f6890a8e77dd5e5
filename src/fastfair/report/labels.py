"""Display names of the results store's metrics, shared by the tables, the figures and the claims."""

from __future__ import annotations

from types import MappingProxyType

#: Metric column of the store -> its name in tables, figure titles and claims.
METRIC_LABELS = MappingProxyType(
    {
        "independence": "Independence",
        "separation_tpr": "Separation (TPR)",
        "separation_fpr": "Separation (FPR)",
        "sufficiency_ppv": "Sufficiency (PPV)",
        "sufficiency_for": "Sufficiency (FOR)",
        "accuracy": "Accuracy",
        "auc": "AUC",
    }
)
