"""A markdown model card per model: data window, populations, metrics against baselines, limits."""

from __future__ import annotations

from typing import Any

import pandas as pd

from models.config import ModelKind

EVENT: dict[ModelKind, str] = {
    "churn": "no completed order within the horizon (churn), among new and active clients",
    "winback": "a new completed order within the horizon (win-back), among clients lapsed 90/180/360 days",
}
LIMITS: dict[ModelKind, list[str]] = {
    "churn": [
        "Scores are calibrated on one validation cutoff; a shift in ordering rhythm (seasonality, price "
        "changes) after it makes them drift; re-train and compare before trusting old scores.",
        "Snapshots of the same client at several cutoffs are correlated; bootstrap intervals over test "
        "rows treat clients as independent within the single test cutoff only.",
        "Contributions (reasons) explain the model, not the client: they are associations, not causes.",
    ],
    "winback": [
        "Lapsed populations are smaller than active ones: intervals are wider, and the lapse_360 tier "
        "is the thinnest segment.",
        "A retention contact itself changes the outcome; the model learns from history that already "
        "contains past campaigns.",
        "Contributions (reasons) explain the model, not the client: they are associations, not causes.",
    ],
}

#: the two oracles of synthetic data (models/evaluate.py), as the card explains them
ORACLE_NOTES: dict[str, str] = {
    "oracle": "observable oracle: the generator's true probability given the client's latent "
    "parameters and order history, hidden alive/dormant state integrated out; the fair bound the "
    "targets are measured against",
    "oracle_clairvoyant": "clairvoyant oracle: true probability given the full latent state, incl. "
    "whether the client is already secretly dormant; unreachable from CRM data",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_model_card(
    kind: ModelKind,
    *,
    model_name: str,
    model_version: str,
    split: dict[str, Any],
    details: dict[str, Any],
    importance: pd.DataFrame | None,
    calibration: str,
    calibration_check: dict[str, float] | None = None,
    selection: dict[str, Any] | None = None,
) -> str:
    """The card as markdown; ``details`` is this model's part of details.json, ``selection`` the
    model folder's selection.json (models/selection.py)."""
    forecasts = details["forecasts"]
    lines = [
        f"# Model card: {model_name} (version {model_version})",
        "",
        f"**Predicts**: probability of {EVENT[kind]}, horizon {split['horizon_days']} days from the cutoff.",
        "",
        "## Data window and cutoffs",
        "",
        f"- training cutoffs: {split['train_cutoffs'][0]} .. {split['train_cutoffs'][-1]} "
        f"({len(split['train_cutoffs'])} cutoffs, {split['train_rows']} rows, base rate "
        f"{_fmt(split['train_base_rate'])})",
        f"- validation cutoff (early stopping and calibration): {split['valid_cutoff']} "
        f"({split['valid_rows']} rows, base rate {_fmt(split['valid_base_rate'])})",
        f"- test cutoff (all metrics below): {split['test_cutoff']} ({split['test_rows']} rows, base rate "
        f"{_fmt(split['test_base_rate'])})",
        (
            "- no label window of a training or validation row reaches past the next step's cutoff "
            "(D + horizon <= validation cutoff for training, validation + horizon <= test cutoff)."
            if split.get("mode", "strict") == "strict"
            else "- split mode overlap (a short history): training windows may overlap the validation "
            "window, so validation and calibration are client-disjoint (out of fold); no window "
            "reaches the test window (D + horizon <= test cutoff)."
        ),
        "",
        f"Calibration: {calibration}, fitted on the validation cutoff"
        + (f" ({selection['calibration_source']})." if selection else "."),
    ]
    if calibration_check:
        lines.append(
            "Cross-fitted validation ECE: "
            + ", ".join(
                f"{k.removeprefix('valid_cv_ece_')} {_fmt(v, 4)}" for k, v in calibration_check.items()
            )
            + "."
        )
    if selection:
        lines += _selection_lines(selection)
    lines += [
        "",
        "## Metrics on the test cutoff",
        "",
        "| forecast | ROC-AUC [95% CI] | PR-AUC | Brier | ECE | lift@10% | capture@10% | lift@20% |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in forecasts.items():
        lines.append(
            f"| {name} | {_fmt(m['roc_auc'])} [{_fmt(m['roc_auc_ci_low'])}, {_fmt(m['roc_auc_ci_high'])}] "
            f"| {_fmt(m['pr_auc'])} | {_fmt(m['brier'], 4)} | {_fmt(m['ece'], 4)} | {_fmt(m['lift_10'], 2)} "
            f"| {_fmt(m['capture_10'])} | {_fmt(m['lift_20'], 2)} |"
        )
    lines += ["", "Model minus baseline (paired bootstrap, 95%):", ""]
    for base, d in details.get("model_minus_baseline", {}).items():
        best = " (the best baseline on this cutoff)" if base == details.get("best_baseline") else ""
        lines.append(_difference_line(base + best, d))
    for name, what in ORACLE_NOTES.items():
        if f"model_minus_{name}" in details:
            lines.append(_difference_line(f"{name} ({what})", details[f"model_minus_{name}"]))
    lines += ["", "## Segments (model ROC-AUC / base rate / rows)", ""]
    for segment, per in details.get("segments", {}).items():
        m = per.get("model") if isinstance(per, dict) else None
        if not m:
            lines.append(f"- {segment}: no rows")
            continue
        lines.append(
            f"- {segment}: ROC-AUC {_fmt(m['roc_auc'])}, base rate {_fmt(m['base_rate'])}, "
            f"rows {int(m['rows'])}, ECE {_fmt(m['ece'], 4)}"
        )
    if importance is not None and len(importance):
        lines += ["", "## Top features (total gain)", ""]
        total = float(importance["gain"].sum()) or 1.0
        for _, row in importance.head(10).iterrows():
            lines.append(f"- {row['feature']}: {100 * float(row['gain']) / total:.1f}%")
    lines += ["", "## Known limits", ""]
    lines += [f"- {item}" for item in LIMITS[kind]]
    return "\n".join(lines) + "\n"


#: What each candidate of model selection is, as the card names it.
CANDIDATE_NOTES: dict[str, str] = {
    "lightgbm": "the LightGBM booster with the searched settings",
    "logistic_rfm": "logistic regression on RFM inputs (served as one-feature LightGBM trees)",
    "blend": "LightGBM and the logistic RFM model, log-odds weighted",
    "recency": "recency alone (reference for the guard, not a candidate)",
}


def _selection_lines(selection: dict[str, Any]) -> list[str]:
    """The card's model-selection section: every candidate's validation ROC-AUC per fold, the winner."""
    folds = selection.get("folds", [])
    winner = selection.get("winner", "?")
    header = " | ".join(f"{f['valid_cutoff']} ({f['mode']})" for f in folds)
    lines = [
        "",
        "## Model selection (validation only; the test cutoff was never looked at)",
        "",
        f"Rolling-origin folds: {len(folds)}; validation ROC-AUC per fold (validation cutoff, split mode). "
        f"The search tuned on {', '.join(selection.get('search', {}).get('tuned_on', []) or ['all folds'])}; "
        f"the candidates were judged on {', '.join(selection.get('judged_on', []) or ['all folds'])}.",
        "",
        f"| candidate | {header} | mean |",
        "| --- | " + " | ".join("---" for _ in folds) + " | --- |",
    ]
    for name, row in selection.get("table", {}).items():
        mark = " **(selected)**" if name == winner else ""
        cells = " | ".join(_fmt(v, 4) for v in row["folds"])
        lines.append(f"| {name}{mark} | {cells} | {_fmt(row['mean'], 4)} |")
    lines.append("")
    lines.append(
        f"Selected: **{winner}**, {CANDIDATE_NOTES.get(winner, winner)}. On a near tie the simpler candidate "
        f"wins: the blend must lead the booster by {selection.get('blend_margin')}, the logistic model every "
        f"LightGBM candidate by {selection.get('logistic_margin')}."
    )
    if winner == "blend":
        lines.append(
            f"Blend weight of LightGBM: {selection.get('blend_weight')} (grid {selection.get('blend_grid')})."
        )
    if winner == "logistic_rfm":
        lines.append(
            "No candidate with LightGBM in it matched the logistic model on validation (it led by more "
            f"than {selection.get('logistic_margin')} ROC-AUC), so the plain logistic model is served."
        )
    if selection.get("booster_params") and winner != "logistic_rfm":
        search = selection.get("search", {})
        lines.append(
            f"Booster settings (search: {search.get('trials')} trials, {search.get('pruned')} pruned, "
            f"{search.get('seconds')} s): {selection['booster_params']}, {selection.get('rounds')} rounds."
        )
    dropped = selection.get("features", {}).get("dropped_constant", [])
    if dropped:
        lines.append(f"Inputs constant in the training rows, left out: {', '.join(dropped)}.")
    guard = selection.get("guard", {})
    if guard and not guard.get("passed", True):
        lines.append(f"**Guard failed, not registered as challenger**: {'; '.join(guard['reasons'])}.")
    return lines


def _difference_line(against: str, d: dict[str, float]) -> str:
    """One bullet: model minus ``against`` in ROC-AUC and Brier with their paired 95% intervals."""
    return (
        f"- vs {against}: ROC-AUC {d['roc_auc_diff']:+.4f} "
        f"[{d['roc_auc_diff_ci_low']:+.4f}, {d['roc_auc_diff_ci_high']:+.4f}], Brier "
        f"{d['brier_diff']:+.4f} [{d['brier_diff_ci_low']:+.4f}, {d['brier_diff_ci_high']:+.4f}]"
    )
