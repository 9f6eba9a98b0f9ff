"""DVC plot data (one CSV per plot and forecast) and matching PNGs (matplotlib, Agg backend).

Layout under the plots folder, per model kind::

    <kind>/roc_<forecast>.csv                fpr, tpr
    <kind>/precision_recall_<forecast>.csv   recall, precision
    <kind>/calibration_<forecast>.csv        mean_probability, observed_rate, rows (equal-frequency bins)
    <kind>/gains_<forecast>.csv              share_contacted, share_of_events_captured
    <kind>/importance.csv                    feature, gain (top 20 by total gain)
    <kind>/<plot>.png                        the same data as a picture

One file per forecast lets dvc.yaml draw each forecast as its own line (``y: {file: field}``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from models.evaluate import KindEvaluation
from models.io import write_atomic, write_csv_atomic

log = logging.getLogger(__name__)

AXES: dict[str, tuple[str, str, str]] = {
    # plot -> (x column, y column, title)
    "roc": ("fpr", "tpr", "ROC (test cutoff)"),
    "precision_recall": ("recall", "precision", "Precision-recall (test cutoff)"),
    "calibration": ("mean_probability", "observed_rate", "Reliability (equal-frequency bins)"),
    "gains": ("share_contacted", "share_of_events_captured", "Cumulative gains"),
}


def write_plots(evaluation: KindEvaluation, folder: Path) -> list[Path]:
    """Write the CSVs and PNGs of one model's evaluation under ``folder/<kind>/``; returns the files."""
    out = folder / evaluation.kind
    written: list[Path] = []
    for plot, data in evaluation.curves.items():
        if plot == "importance":
            path = out / "importance.csv"
            write_csv_atomic(path, data)
            written.append(path)
            continue
        for forecast, part in data.groupby("forecast", sort=False):
            path = out / f"{plot}_{forecast}.csv"
            write_csv_atomic(path, part.drop(columns="forecast").reset_index(drop=True))
            written.append(path)
    written.extend(_pngs(evaluation, out))
    return written


def _pngs(evaluation: KindEvaluation, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for plot, data in evaluation.curves.items():
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
        if plot == "importance":
            top = data.iloc[::-1]
            ax.barh(top["feature"], top["gain"])
            ax.set_xlabel("total gain")
            ax.set_title(f"{evaluation.kind}: feature importance (gain)")
        else:
            x, y, title = AXES[plot]
            for forecast, part in data.groupby("forecast", sort=False):
                ax.plot(part[x], part[y], marker="o" if plot == "calibration" else None, label=str(forecast))
            if plot in ("roc", "calibration", "gains"):
                ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(f"{evaluation.kind}: {title}")
            ax.legend()
        fig.tight_layout()
        path = out / f"{plot}.png"
        write_atomic(path, _png_writer(fig))
        plt.close(fig)
        paths.append(path)
    return paths


def _png_writer(fig: Any) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    return write


def importance_frame(path: Path) -> pd.DataFrame | None:
    """Read a model folder's importance.csv (feature, gain, split) if it exists."""
    return pd.read_csv(path) if path.is_file() else None
