"""The report of a reference-protocol run: the authors' exact setup beside their numbers, the spread over seeds,
and the ablation, in plain words (``report.md`` and ``report.html``).

A pure view of the tables the reference run computed (:mod:`fastfair.reference`); it trains nothing:

* ``rows``: one row per cell (``dataset``, ``solver``, ``radius``, ``epochs``, ``<split>_accuracy`` and
  ``<split>_<gap>`` as fractions, the published numbers ``published_<split>`` in % and
  ``published_train_independence``, and ``matches``);
* ``spread_summary``: per metric, the mean, sd, range and 95% t interval over the seeds other than 42, seed 42's
  value and the share of the other seeds below it;
* ``ablation``: per (dataset, switch, metric), the mean paired change d̄ over seeds, its 95% t interval, the
  paired p-value and Holm's adjusted p-value ``p_holm`` over every row of the table.

Verdicts. A published number is *reproduced* when ours, rounded to the decimals the reference printed, equals it;
the five Unfair2D gaps, which the paper prints to three decimals, likewise. An ablation row is *significant* when
its Holm-adjusted p-value is ≤ :data:`ALPHA`, which bounds the chance of any false claim in the whole table by
:data:`ALPHA` (under any dependence between the rows); the per-claim p-value is shown beside it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text
from ..vocabulary import GAP_KEYS
from .document import CSS, _html_table
from .labels import METRIC_LABELS
from .published import PAPER
from .tables import markdown_table

TITLE = "fastfair: the authors' exact setup (reference protocol)"
#: Family-wise level of the ablation's verdicts.
ALPHA = 0.05
#: Accuracy of predicting one class on Unfair2D's balanced test set (50 points per class).
CHANCE = 0.5
#: The seed-spread figure, relative to the report.
SPREAD_FIGURE = "seed_spread.png"
LSAT_NOTE = (
    "LSAT cannot be reproduced exactly offline: the reference code downloads its own preparation of the law-school "
    "data at run time, a different file from the one bundled with fastfair (whose label is first-year pass, where "
    "the paper used bar passage), and its LSAT test set is its training set. fastfair's LSAT rows come from the "
    "corrected protocol only."
)
QUICK_NOTE = (
    "Quick run: the headline cells at the reference's seed 42 only. The seed spread (20 seeds) and the ablation "
    "(one difference at a time, 6 seeds) are part of the full run: `fastfair reproduce --protocol reference "
    "--out DIR`."
)
SETUP = (
    "The authors' code replayed exactly with fastfair's own code: Unfair2D drawn from torch's generator with seed "
    "42 (the first 200 of 500 shuffled points train, 300 validate, a second draw of 100 tests); Adult read as "
    "their pandas call reads it (the first record of each file taken as a header, rows with `?` kept, label 1 = "
    "`<=50K`, the first 10,000 rows train); the affine layer initialised with bound 1; their batch order, Adam "
    "(lr 0.01), batch-mean loss, and their own TRS (`trs-paper`) and PGD (`pgd-paper`)."
)
#: Short names of the metrics in the tables.
_METRIC_NAMES = {"accuracy": "accuracy", **METRIC_LABELS}


@dataclass(frozen=True)
class _Block:
    """One piece of the document: a heading, paragraph, list, table or figure."""

    kind: str  # "h1", "h2", "h3", "p", "ul", "table", "figure"
    text: str = ""
    items: Sequence[str] = ()
    table: pd.DataFrame | None = None


def build_reference_report(
    out_dir: str | Path,
    rows: pd.DataFrame,
    *,
    spread_summary: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
    figure: bool = False,
    quick: bool = False,
    files: Sequence[tuple[str, str]] = (),
    spread: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` of a reference run into ``out_dir`` (module docs for the inputs).

    ``figure``: the seed-spread figure is in ``out_dir`` as :data:`SPREAD_FIGURE`. ``files``: (relative path,
    description) of the other files of the run, listed at the end. ``spread``: the seed spread's rows, one per
    seed (for the count of seeds at chance level). Returns ``{name: path}`` of the two files.
    """
    blocks = reference_blocks(
        rows, spread_summary=spread_summary, ablation=ablation, figure=figure, quick=quick, files=files, spread=spread
    )
    out = Path(out_dir)
    return {
        "report_md": atomic_write_text(out / "report.md", render_markdown(blocks)),
        "report_html": atomic_write_text(out / "report.html", render_html(blocks)),
    }


def reference_blocks(
    rows: pd.DataFrame,
    *,
    spread_summary: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
    figure: bool = False,
    quick: bool = False,
    files: Sequence[tuple[str, str]] = (),
    spread: pd.DataFrame | None = None,
) -> list[_Block]:
    """The document's content, section by section (rendered by :func:`render_markdown` and :func:`render_html`)."""
    blocks = [_Block("h1", TITLE)]
    if quick:
        blocks += [_Block("h2", "Notes"), _Block("ul", items=[QUICK_NOTE])]
    blocks += [_Block("h2", "What this run is"), _Block("p", SETUP)]
    blocks += [_Block("h2", "Conclusions"), _Block("ul", items=conclusions(rows, spread_summary, ablation, spread))]
    blocks += [
        _Block("h2", "The rows beside the published numbers"),
        _Block(
            "p",
            "Accuracy in % (train / validation / test) and the independence gap on the training split, ours beside "
            "what the authors' code prints; a row matches when every published number equals ours rounded to the "
            "decimals it was printed with.",
        ),
        _Block("table", table=rows_table(rows)),
    ]
    gaps = unfair2d_gaps_table(rows)
    if not gaps.empty:
        blocks += [
            _Block("h3", "Unfair2D: the five gaps on the training split beside the paper's"),
            _Block("table", table=gaps),
        ]
    if spread_summary is not None:
        blocks += [
            _Block("h2", "The paper's headline row over seeds"),
            _Block(
                "p",
                "The Unfair2D TRS r = 0.18 row of the reference protocol run with other seeds (each seed moves the "
                "data draw, the initial weights and the batch order). Means with 95% t intervals over the seeds "
                "other than 42; 'share below' is the share of those seeds with a smaller value than seed 42's (ties "
                "count half).",
            ),
            _Block("table", table=spread_table(spread_summary)),
        ]
        if figure:
            blocks.append(
                _Block(
                    "figure",
                    SPREAD_FIGURE,
                    items=["Every seed (grey), their mean and 95% CI (black), and the paper's seed 42 (red star)."],
                )
            )
    if ablation is not None:
        m = int(np.isfinite(ablation["p_value"].to_numpy(float)).sum())
        blocks += [
            _Block("h2", "Ablation: from the authors' setup to ours, one difference at a time"),
            _Block(
                "p",
                "Each switch replaces one part of the authors' setup by fastfair's, the rest unchanged: `draw` "
                "(numpy's draw instead of torch's), `splits` (400 / 100 training / validation points of Unfair2D; "
                "Adult's seeded stratified split standardised on its training rows), `init` (bound 1/√d), `records` "
                "(every Adult record, rows with `?` dropped), `label` (y = 1 for `>50K`), `solver` (fastfair's exact "
                "`trs` instead of `trs-paper`). The change is the mean over seeds of the paired difference "
                "switched − reference, with its 95% t interval and the paired t-test's p-value.",
            ),
            _Block(
                "p",
                f"Correction for testing many claims at once: {m} claims (switch × metric) are tested together, so "
                f"each verdict uses Holm's step-down adjusted p-value: a change is called significant when it is ≤ "
                f"{ALPHA:g}, which keeps the chance of any false claim in the table at most {ALPHA:.0%}. 'p' is the "
                "claim's own p-value, 'p (Holm)' the adjusted one.",
            ),
            _Block("table", table=ablation_display(ablation)),
        ]
    blocks += [_Block("h2", "LSAT"), _Block("p", LSAT_NOTE)]
    if files:
        blocks += [_Block("h2", "Files"), _Block("ul", items=[f"`{p}`: {d}" for p, d in files])]
    return blocks


def conclusions(
    rows: pd.DataFrame,
    spread_summary: pd.DataFrame | None,
    ablation: pd.DataFrame | None,
    spread: pd.DataFrame | None = None,
) -> list[str]:
    """The run's findings in plain words, one sentence (or two) each. ``spread`` (the seed spread's rows) adds
    how many seeds end at chance level: Unfair2D's test set holds 50 points of each class, so a test accuracy of
    at most :data:`CHANCE` + 1 point is no better than predicting one class."""
    out = []
    if "matches" in rows:
        compared = rows[rows["matches"].notna()]
        good = compared[compared["matches"].astype(bool)]
        line = (
            f"{len(good)} of {len(compared)} rows reproduce the numbers the authors' code prints, to every digit "
            "it prints."
        )
        if len(good) == len(compared) and len(compared):
            line += (
                " On the authors' own setup fastfair gets the paper's numbers, so differences between the paper "
                "and fastfair's corrected protocol come from the setup or from chance, not from the implementation."
            )
        else:
            bad = compared[~compared["matches"].astype(bool)]
            line += " Not reproduced: " + "; ".join(_cell_name(r) for _, r in bad.iterrows()) + "."
        out.append(line)
    gaps = unfair2d_gaps_table(rows)
    if not gaps.empty:
        n_ok = int((gaps["match"] == "yes").sum())
        out.append(
            f"Unfair2D's five gaps on the training split: {n_ok} of {len(gaps)} rows equal the paper's to 3 decimals."
        )
    if spread_summary is not None:
        s = spread_summary.set_index("metric")
        parts = []
        for metric, better in (("test_accuracy", "higher"), ("train_independence", "lower")):
            if metric not in s.index or not np.isfinite(s.loc[metric].get("mean", np.nan)):
                continue
            r = s.loc[metric]
            pct = metric.endswith("accuracy")
            parts.append(
                f"its {metric.replace('_', ' ')} averages {_num(r['mean'], pct)} (95% CI {_num(r['ci_low'], pct)}–"
                f"{_num(r['ci_high'], pct)}, range {_num(r['min'], pct)}–{_num(r['max'], pct)}); seed 42's "
                f"{_num(r['value_at_42'], pct)} is above {r['share_below']:.0%} of the seeds "
                f"({better} is better)"
            )
        if parts:
            seeds = int(s.loc["test_accuracy", "seeds"]) if "test_accuracy" in s.index else 0
            out.append(
                f"The paper's headline row (Unfair2D, TRS r = 0.18) is a single seed. Over {seeds} other seeds "
                + "; ".join(parts)
                + f". {_typicality(s)}"
                + _at_chance(spread)
            )
    if ablation is not None:
        sig = ablation[ablation["p_holm"] <= ALPHA]
        raw = ablation[(ablation["p_value"] <= ALPHA) & ~(ablation["p_holm"] <= ALPHA)]
        m = int(np.isfinite(ablation["p_value"].to_numpy(float)).sum())
        if sig.empty:
            line = (
                f"Ablation: no single difference from the authors' setup changes accuracy or a gap significantly "
                f"after Holm's correction over {m} claims."
            )
        else:
            by_switch = sig.groupby(["dataset", "switch"], sort=False)["metric"].apply(list)
            described = [
                f"{dataset} `{switch}` ({', '.join(_metric_name(x) for x in metrics)})"
                for (dataset, switch), metrics in by_switch.items()
            ]
            n_sig = f"{len(sig)} change is" if len(sig) == 1 else f"{len(sig)} changes are"
            line = (
                f"Ablation: after Holm's correction over {m} claims, {n_sig} significant, from "
                + "; ".join(described)
                + "."
            )
        identical = _identical_switches(ablation)
        quiet = [q for q in _quiet_switches(ablation) if q not in identical]
        if quiet:
            line += " No significant change from: " + ", ".join(quiet) + "."
        if identical:
            line += (
                " Identical results on every seed (every metric unchanged): "
                + ", ".join(identical)
                + "."
                + (
                    " For the affine model the reference's TRS and fastfair's exact TRS take the same steps here."
                    if any("`solver`" in x for x in identical)
                    else ""
                )
            )
        if len(raw):
            if len(raw) == 1:
                line += f" 1 further change has p ≤ {ALPHA:g} on its own but not after the correction: unconfirmed."
            else:
                line += (
                    f" {len(raw)} further changes have p ≤ {ALPHA:g} on their own but not after the correction: "
                    "unconfirmed."
                )
        out.append(line)
    out.append(LSAT_NOTE.split(":")[0] + ".")
    return out


def rows_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells, ours beside the published numbers, formatted for display."""
    table = []
    for _, r in rows.iterrows():
        published = "–"
        if pd.notna(r.get("published_train", np.nan)):
            published = " / ".join(f"{r[f'published_{k}']:g}" for k in ("train", "val", "test"))
        pub_gap = r.get("published_train_independence", np.nan)
        table.append(
            {
                "dataset": r["dataset"],
                "solver": r["solver"],
                "r": f"{r['radius']:g}",
                "epochs": str(int(r["epochs"])),
                "seed": str(int(r["seed"])),
                "ours: train / val / test (%)": " / ".join(
                    _pct(r[f"{k}_accuracy"], d) for k, d in (("train", 2), ("val", 4), ("test", 4))
                ),
                "published (%)": published,
                "ours: gap (train)": _num(r["train_independence"]),
                "published gap": "–" if pd.isna(pub_gap) else f"{pub_gap:g}",
                "match": {True: "yes", False: "NO"}.get(_bool(r.get("matches")), "–"),
            }
        )
    return pd.DataFrame(table)


def unfair2d_gaps_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Unfair2D at seed 42, non-robust and robust at the paper's radius: the five gaps on the training split
    beside the paper's (three decimals), one row per cell."""
    paper = PAPER["unfair2d"]
    out = []
    for _, r in rows.iterrows():
        if r["dataset"] != "unfair2d" or int(r["seed"]) != 42 or "matches" not in r or pd.isna(r["matches"]):
            continue
        robust = r["solver"] != "none"
        if robust and not np.isclose(r["radius"], paper["radius"]):
            continue
        published = paper["trs" if robust else "nonrobust"]
        row = {"solver": r["solver"], "r": f"{r['radius']:g}"}
        ok = True
        for gap in GAP_KEYS:
            ours = float(r[f"train_{gap}"])
            row[METRIC_LABELS[gap]] = f"{ours:.3f} ({published[gap]:.3f})"
            ok = ok and np.isfinite(ours) and round(ours, 3) == published[gap]
        row["match"] = "yes" if ok else "NO"
        out.append(row)
    return pd.DataFrame(out)


def spread_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The seed-spread summary formatted for display (accuracy in %, gaps to 3 decimals)."""
    out = []
    for _, r in summary.iterrows():
        pct = str(r["metric"]).endswith("accuracy")
        out.append(
            {
                "metric": r["metric"],
                "seeds": str(int(r["seeds"])),
                "mean": _num(r.get("mean"), pct),
                "95% CI": f"{_num(r.get('ci_low'), pct)} – {_num(r.get('ci_high'), pct)}",
                "range": f"{_num(r.get('min'), pct)} – {_num(r.get('max'), pct)}",
                "seed 42": _num(r.get("value_at_42"), pct),
                "share below": "–" if pd.isna(r.get("share_below")) else f"{r['share_below']:.0%}",
            }
        )
    return pd.DataFrame(out)


def ablation_display(ablation: pd.DataFrame) -> pd.DataFrame:
    """The ablation table formatted for display, with its per-claim verdict."""
    out = []
    for _, r in ablation.iterrows():
        pct = str(r["metric"]).endswith("accuracy")

        def change(v: object, pct: bool = pct) -> str:
            if v is None or pd.isna(v):
                return "–"
            return f"{100 * float(v):+.2f}" if pct else f"{float(v):+.3f}"

        out.append(
            {
                "dataset": r.get("dataset", "–"),
                "switch": r["switch"],
                "metric": r["metric"] + (" (pp)" if pct else ""),
                "seeds": "–" if pd.isna(r.get("seeds")) else str(int(r["seeds"])),
                "change": change(r.get("change")),
                "95% CI": f"{change(r.get('ci_low'))} .. {change(r.get('ci_high'))}",
                "p": _p(r.get("p_value")),
                "p (Holm)": _p(r.get("p_holm")),
                "verdict": verdict(r.get("p_value"), r.get("p_holm")),
            }
        )
    return pd.DataFrame(out)


def verdict(p_value: float | None, p_holm: float | None) -> str:
    """The claim's verdict: significant after Holm's correction, only before it, or not at all."""
    if p_holm is not None and np.isfinite(p_holm) and p_holm <= ALPHA:
        return "significant"
    if p_value is not None and np.isfinite(p_value) and p_value <= ALPHA:
        return "not after Holm"
    if p_value is None or not np.isfinite(p_value):
        return "–"
    return "no change shown"


def render_markdown(blocks: Sequence[_Block]) -> str:
    """The blocks as Markdown."""
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            out += [b.text, ""]
        elif b.kind == "ul":
            out += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table" and b.table is not None:
            out += [markdown_table(b.table), ""]
        elif b.kind == "figure":
            caption = b.items[0] if b.items else ""
            out += [f"![{b.text}]({b.text})", "", f"_{caption}_", ""]
    return "\n".join(out)


def render_html(blocks: Sequence[_Block]) -> str:
    """The blocks as a self-contained HTML page (the corrected report's style)."""
    e = html.escape

    def inline(text: str) -> str:
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", e(text, quote=False))

    title = next((b.text for b in blocks if b.kind == "h1"), TITLE)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{inline(b.text)}</p>")
        elif b.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in b.items) + "</ul>")
        elif b.kind == "table" and b.table is not None:
            out.append(_html_table(b.table))
        elif b.kind == "figure":
            caption = b.items[0] if b.items else ""
            out.append(
                f'<figure><img src="{e(b.text, quote=True)}" alt="{e(caption, quote=True)}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _typicality(s: pd.DataFrame) -> str:
    """One sentence: is seed 42 a typical seed for this row?"""
    if "test_accuracy" not in s.index or pd.isna(s.loc["test_accuracy"].get("share_below", np.nan)):
        return ""
    share = float(s.loc["test_accuracy", "share_below"])
    if share >= 0.9:
        return (
            "Seed 42 is a favourable draw: most seeds give a lower accuracy, so the paper's single number "
            "overstates what this setup typically gives."
        )
    if share <= 0.1:
        return "Seed 42 is an unfavourable draw: most seeds give a higher accuracy."
    return "Seed 42 is a typical draw for this setup."


def _at_chance(spread: pd.DataFrame | None) -> str:
    """A sentence on the seeds (other than 42) whose Unfair2D test accuracy is at chance level, or ''."""
    if spread is None or "test_accuracy" not in spread or "seed" not in spread:
        return ""
    others = spread[spread["seed"] != 42]["test_accuracy"].to_numpy(float)
    k = int(np.sum(others <= CHANCE + 0.01))
    if k == 0:
        return ""
    return (
        f" {k} of {len(others)} other seeds end at chance level (test accuracy ≤ {100 * (CHANCE + 0.01):.0f}% on the "
        "balanced test set): there the robust model hardly separates the classes, and its small gaps come from that."
    )


def _quiet_switches(ablation: pd.DataFrame) -> list[str]:
    """The (dataset, switch) pairs none of whose metrics changed significantly after the correction."""
    out = []
    for (dataset, switch), g in ablation.groupby(["dataset", "switch"], sort=False):
        if not (g["p_holm"] <= ALPHA).any():
            out.append(f"{dataset} `{switch}`")
    return out


def _identical_switches(ablation: pd.DataFrame) -> list[str]:
    """The (dataset, switch) pairs whose every paired change is exactly 0 (same numbers on every seed)."""
    out = []
    for (dataset, switch), g in ablation.groupby(["dataset", "switch"], sort=False):
        cols = [c for c in ("change", "ci_low", "ci_high") if c in g]
        values = g[cols].to_numpy(float)
        if len(g) and np.isfinite(values).all() and (values == 0).all():
            out.append(f"{dataset} `{switch}`")
    return out


def _cell_name(r: pd.Series) -> str:
    radius = "" if r["solver"] == "none" else f" r = {r['radius']:g}"
    return f"{r['dataset']} {r['solver']}{radius} ({int(r['epochs'])} epochs)"


def _metric_name(metric: str) -> str:
    split, _, key = metric.partition("_")
    return f"{split} {_METRIC_NAMES.get(key, key)}"


def _bool(value: object) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def _pct(value: float, digits: int) -> str:
    return "–" if pd.isna(value) else f"{100 * float(value):.{digits}f}"


def _num(value: object, pct: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{100 * float(value):.1f}%" if pct else f"{float(value):.3f}"


def _p(value: object) -> str:
    if value is None or pd.isna(value):
        return "–"
    v = float(value)
    return f"{v:.2g}" if v < 0.01 else f"{v:.3f}"
