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
) -> str:
    """The card as markdown; ``details`` is this model's part of details.json."""
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
            else "- split mode overlap: training windows may overlap the validation window (early "
            "stopping and calibration slightly optimistic); none reaches the test window "
            "(D + horizon <= test cutoff)."
        ),
        "",
        f"Calibration: {calibration}, fitted on the validation cutoff.",
    ]
    if calibration_check:
        lines.append(
            "Cross-fitted validation ECE: "
            + ", ".join(
                f"{k.removeprefix('valid_cv_ece_')} {_fmt(v, 4)}" for k, v in calibration_check.items()
            )
            + "."
        )
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
        lines.append(_difference_line(base, d))
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


def _difference_line(against: str, d: dict[str, float]) -> str:
    """One bullet: model minus ``against`` in ROC-AUC and Brier with their paired 95% intervals."""
    return (
        f"- vs {against}: ROC-AUC {d['roc_auc_diff']:+.4f} "
        f"[{d['roc_auc_diff_ci_low']:+.4f}, {d['roc_auc_diff_ci_high']:+.4f}], Brier "
        f"{d['brier_diff']:+.4f} [{d['brier_diff_ci_low']:+.4f}, {d['brier_diff_ci_high']:+.4f}]"
    )
