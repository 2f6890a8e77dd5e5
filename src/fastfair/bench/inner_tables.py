"""Tables of the inner-maximiser comparison (:mod:`fastfair.bench.inner`): one per case, then a summary.

Pure functions of the records (plain dicts): no timing, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .inner import BEST_RTOL, MATCH_RTOL, record_label, relative_gap
from .render import fmt_gap, fmt_ratio, fmt_seconds, markdown_table, text_table

#: Rows that are not contenders of the case's table: the matched PGD, and the deeper models' extra measurements.
SIDE_ROWS = ("pgd-matched", "trs-dense", "trs-memory")


def _case_key(rec: dict[str, Any]) -> tuple:
    return (rec["model"], rec["d"], rec.get("case_n", rec["n"]), rec.get("radius"))


def group_cases(records: Sequence[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Records grouped by case (model, d, n, radius), in first-seen order (a dense-path row on the first rows of a
    case belongs to that case: its ``case_n`` is the case's n)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_case_key(rec), []).append(rec)
    return groups


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: TRS time, pgd-matched setting/time/ratio, whether TRS attains the best objective."""
    rows = []
    for (model, d, n, radius), recs in group_cases(records).items():
        trs = next((r for r in recs if r["solver"] == "trs" and not r.get("setting")), None)
        matched = next((r for r in recs if r["solver"] == "pgd-matched"), None)
        auto = next((r for r in recs if r["solver"] == "auto"), None)
        if trs is None:
            continue
        best = trs.get("trs_is_best")
        rows.append(
            {
                "auto_choice": auto.get("choice") if auto else None,
                "auto_verdict": auto.get("verdict") if auto else None,
                "model": model,
                "d": d,
                "n": n,
                "radius": radius,
                "trs_path": trs.get("path"),
                "trs_seconds": trs["seconds"],
                "matched_setting": matched.get("setting") if matched else None,
                "matched_seconds": matched.get("seconds") if matched else None,
                "matched_ratio": matched.get("ratio_to_trs") if matched else None,
                "trs_is_best": best,
                "best_other": trs.get("best_other"),
                "best_other_gap": fmt_gap(relative_gap(trs["best_other_objective"], trs["objective"]))
                if "best_other_objective" in trs
                else None,
            }
        )
    return rows


def render_inner(records: Sequence[dict[str, Any]], *, markdown: bool = False, details: bool = True) -> str:
    """The comparison as readable tables: one per case (with ratios to TRS), then a summary."""
    table = markdown_table if markdown else text_table
    out: list[str] = []
    if details:
        for (model, d, n, radius), recs in group_cases(records).items():
            first = recs[0]
            title = f"{model}, d={d}, n={n}, r={radius:g} ({first.get('dtype')}"
            if first.get("pretrain_epochs"):
                title += f"; weights after {first['pretrain_epochs']} non-robust epochs"
                if first.get("pretrain_accuracy") is not None:
                    title += f", train accuracy {first['pretrain_accuracy']:.3f}"
            title += ")"
            rows = []
            for r in recs:
                if r["solver"] in SIDE_ROWS:
                    continue
                label = record_label(r)
                if r["solver"] == "trs" and r.get("path") and not r.get("setting"):
                    label += f" ({r['path']})"
                if r["solver"] == "auto" and r.get("choice"):
                    label += f" -> {r['choice']}"
                reps = f"{r['repeats']}" + ("*" if r.get("warmup_counted") else "")
                rows.append(
                    [
                        label,
                        fmt_seconds(r["seconds"]),
                        fmt_ratio(r.get("ratio_to_trs")),
                        f"{r['objective']:.10f}",
                        fmt_gap(r.get("rel_gap_to_trs")),
                        "-" if r.get("iterations") is None else f"{r['iterations']:.3g}",
                        reps,
                    ]
                )
            header = [
                "solver",
                "median time",
                "× TRS",
                "objective (mean loss)",
                "vs TRS (rel.)",
                "iters",
                "runs",
            ]
            out += [("### " if markdown else "") + title, "", table(header, rows, "lrrrrrr"), ""]
            matched = next((r for r in recs if r["solver"] == "pgd-matched"), None)
            if matched is not None:
                if matched.get("setting"):
                    out.append(
                        f"pgd-matched (cheapest tuned PGD within {MATCH_RTOL:g} relative of TRS): "
                        f"pgd[{matched['setting']}], {fmt_seconds(matched['seconds'])} = "
                        f"{fmt_ratio(matched['ratio_to_trs'])} TRS"
                    )
                else:
                    extra = ""
                    if matched.get("best_pgd_setting"):
                        extra = (
                            f" (closest: pgd[{matched['best_pgd_setting']}], "
                            f"{fmt_gap(matched.get('best_pgd_rel_gap'))} relative)"
                        )
                    out.append(f"pgd-matched: none matched within {MATCH_RTOL:g} relative of TRS{extra}")
            trs = next((r for r in recs if r["solver"] == "trs" and not r.get("setting")), None)
            if trs is not None and "trs_is_best" in trs:
                verdict = "yes" if trs["trs_is_best"] else "NO"
                if trs["trs_is_best"] and not trs.get("trs_is_best_strict", True):
                    verdict += " (but not strictly)"
                out.append(
                    f"TRS attains the best objective (to {BEST_RTOL:g} relative): {verdict}; best other "
                    f"solver {trs['best_other']} at "
                    f"{fmt_gap(relative_gap(trs['best_other_objective'], trs['objective']))}"
                )
            out += _auto_lines(recs) + _deep_lines(recs)
            out.append("")
        if any(r.get("warmup_counted") for r in records):
            out += ["* a single run over the time budget: its warm-up run is the measurement.", ""]
    rows = []
    for s in summary_rows(records):
        rows.append(
            [
                s["model"],
                s["d"],
                s["n"],
                f"{s['radius']:g}",
                fmt_seconds(s["trs_seconds"]),
                f"pgd[{s['matched_setting']}]" if s["matched_setting"] else "none matched",
                fmt_seconds(s["matched_seconds"]),
                fmt_ratio(s["matched_ratio"]),
                ("yes" if s["trs_is_best"] else "no")
                + (f" (best other {s['best_other_gap']})" if s["best_other_gap"] else ""),
                f"{s['auto_choice']}: {s['auto_verdict']}" if s["auto_choice"] else "-",
            ]
        )
    header = [
        "model",
        "d",
        "n",
        "r",
        "TRS",
        "pgd-matched",
        "its time",
        "pgd-matched / TRS",
        "TRS best objective?",
        "auto: at least the alternative at no more time?",
    ]
    out += [("### " if markdown else "") + "Summary", "", table(header, rows, "lrrrrlrrll")]
    return "\n".join(out).rstrip() + "\n"


def _auto_lines(recs: Sequence[dict[str, Any]]) -> list[str]:
    """What ``auto`` chose in this case, and how it compares with the alternative (see
    :func:`fastfair.bench.inner.auto_comparison`)."""
    auto = next((r for r in recs if r["solver"] == "auto" and r.get("choice")), None)
    if auto is None:
        return []
    line = f"auto -> {auto['choice']} ({auto.get('reason')}): {fmt_seconds(auto['seconds'])}"
    if not auto.get("alternative"):
        return [line + "; no alternative measured"]
    gap = fmt_gap(relative_gap(auto["objective"], auto["alternative_objective"]))
    ratio = auto["seconds"] / auto["alternative_seconds"] if auto["alternative_seconds"] else float("nan")
    line += (
        f", objective {gap} relative to the alternative {auto['alternative']} "
        f"({fmt_seconds(auto['alternative_seconds'])}), in {fmt_ratio(ratio)} its time: "
    )
    verdict = auto.get("verdict")
    if verdict == "yes":
        return [line + "at least its objective at no more time."]
    if verdict == "dominated":
        return [line + "the alternative attains more in less time (the choice is NOT the better one here)."]
    lost = "more time" if auto.get("objective_at_least") else "a lower objective"
    return [line + f"a trade-off (the choice costs {lost})."]


def _deep_lines(recs: Sequence[dict[str, Any]]) -> list[str]:
    """The dense path per row against the Krylov path, and the Krylov solve's peak-RSS growth."""
    out = []
    for r in recs:
        if r["solver"] == "trs-dense":
            line = (
                f"dense path ({r.get('path')}, certified) on the first {r['n']} rows: {fmt_seconds(r['seconds'])} = "
                f"{fmt_seconds(r['seconds_per_row'])} per row; Krylov TRS {fmt_seconds(r['trs_seconds_per_row'])} "
                f"per row (n={r['case_n']}): {fmt_ratio(r.get('per_row_speedup'))} faster per row"
            )
            if r.get("per_row_speedup_certified") is not None:
                line += f" ({fmt_ratio(r['per_row_speedup_certified'])} certified)"
            line += (
                f"; objective on those rows, dense {r['objective']:.10f} vs Krylov "
                f"{r['krylov_objective_same_rows']:.10f} ({fmt_gap(r.get('objective_rel_gap'))} relative)"
            )
            out.append(line)
        elif r["solver"] == "trs-memory":
            growth = r.get("rss_growth_mb")
            out.append(
                f"peak RSS growth of one Krylov TRS solve ({r.get('path')}, n={r['n']}, fresh process): "
                + ("-" if growth is None else f"{growth:,.0f} MiB")
                + f" in {fmt_seconds(r['seconds'])}"
            )
    return out
