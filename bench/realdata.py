"""The real-data check of issue 12: both public datasets end to end with the DEFAULT params.yaml.

    python bench/realdata.py [--datasets online_retail,olist] [--out data/realdata]   (make realdata)

For each dataset (UCI Online Retail, Olist; read from ``$COMEBACK_SHARED_DATA`` or ``../shared/data``,
never copied) and each of its two test cutoffs, the documented commands run as a user would:
adapt -> ingest (with the dataset's mapping) -> features -> train -> evaluate -> score. The params
file of a run is the repository's params.yaml with only these keys changed, and the report lists
them: ``ingest.export_date`` and ``ingest.timezone`` (facts of the export), ``features.cutoffs.end``
and ``train.test_cutoff`` (the test cutoff being judged: the schedule counts back from it so it
lands on it, and training never looks past it). Nothing is tuned to a dataset.

Writes ``OUT/report.json`` and ``OUT/report.md``: per dataset x task x test cutoff, ROC-AUC with its
95% interval, Brier and ECE of the selected model, recency alone, logistic RFM and BG/NBD; the
model's paired difference to the best of them; the selected candidate; the train stage's time split;
the campaign list sizes at the export date. The targets are checked at the end. Each run has its own
MLflow store under OUT/<dataset>/<cutoff>/, so the demo's store is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The export date and time zone come from each adapter's report (``ingest`` in adapter_report.json).
DATASETS: dict[str, dict[str, Any]] = {
    "online_retail": {
        "adapt": "adapt-online-retail",
        "source": Path("online_retail") / "online_retail_I.parquet",
        "mapping": ROOT / "mappings" / "online_retail.yaml",
        "test_cutoffs": ["2011-07-01", "2011-09-01"],
    },
    "olist": {
        "adapt": "adapt-olist",
        "source": Path("olist"),
        "mapping": ROOT / "mappings" / "olist.yaml",
        "test_cutoffs": ["2018-03-01", "2018-05-01"],  # its orders thin out after August 2018
    },
}
FORECASTS = ("model", "recency", "logistic_rfm", "bgnbd")
#: Targets of issue 12 (real data, default params).
LOWER_BOUND_TARGET = -0.01
MEAN_GAIN_TARGET = 0.01
ECE_TARGET = 0.03


def shared_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("COMEBACK_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run one comeback command, its output appended to ``log``; stop the whole check on failure."""
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-15:]
        sys.exit(
            f"realdata: `{' '.join(cmd[:2])}` failed (exit {done.returncode}); last lines of {log}:\n"
            + "\n".join(tail)
        )
    return seconds


def params_for(export_date: str, timezone: str, test_cutoff: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The default params.yaml with only the export facts and the judged test cutoff changed."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    changed = {
        "ingest.export_date": export_date,
        "ingest.timezone": timezone,
        "features.cutoffs.end": test_cutoff,
        "train.test_cutoff": test_cutoff,
    }
    params["ingest"]["export_date"] = export_date
    params["ingest"]["timezone"] = timezone
    params["features"]["cutoffs"]["end"] = test_cutoff
    params["train"]["test_cutoff"] = test_cutoff
    return params, changed


def case_rows(dataset: str, cutoff: str, reports: Path, models: Path) -> list[dict[str, Any]]:
    """One row per task of one run, from evaluate's details.json and train's model folders."""
    details = json.loads((reports / "details.json").read_text(encoding="utf-8"))
    rows = []
    for task in ("churn", "winback"):
        d = details[task]
        forecasts = d["forecasts"]
        selection = json.loads((models / task / "selection.json").read_text(encoding="utf-8"))
        best = d["best_baseline"]
        gap = d["model_minus_best_baseline"]
        rows.append(
            {
                "dataset": dataset,
                "task": task,
                "test_cutoff": cutoff,
                "test_rows": int(forecasts["model"]["rows"]),
                "base_rate": forecasts["model"]["base_rate"],
                "forecasts": {
                    name: {
                        k: forecasts[name][k]
                        for k in ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "brier", "ece")
                    }
                    for name in FORECASTS
                    if name in forecasts
                },
                "best_baseline": best,
                "model_minus_best": {
                    "roc_auc_diff": gap["roc_auc_diff"],
                    "ci_low": gap["roc_auc_diff_ci_low"],
                    "ci_high": gap["roc_auc_diff_ci_high"],
                },
                "selected": selection["winner"],
                "folds": [(f["valid_cutoff"], f["mode"]) for f in selection["folds"]],
                "validation": {c: r["mean"] for c, r in selection["table"].items()},
                "guard": selection["guard"],
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the headline table, the list sizes, the targets."""

    def auc(f: dict[str, Any] | None) -> str:
        if not f:
            return "n/a"
        return f"{f['roc_auc']:.3f} [{f['roc_auc_ci_low']:.3f}, {f['roc_auc_ci_high']:.3f}]"

    lines = [
        "| dataset | task | test cutoff | rows | selected | model ROC-AUC [95%] | recency | logistic RFM | "
        "BG/NBD | model − best baseline [paired 95%] | Brier | ECE |",
        "| --- | --- | --- | ---: | --- | --- | --- | --- | --- | --- | ---: | ---: |",
    ]
    for r in report["cases"]:
        f = r["forecasts"]
        g = r["model_minus_best"]
        lines.append(
            f"| {r['dataset']} | {r['task']} | {r['test_cutoff']} | {r['test_rows']:,} | {r['selected']} | "
            f"{auc(f['model'])} | {auc(f.get('recency'))} | {auc(f.get('logistic_rfm'))} | "
            f"{auc(f.get('bgnbd'))} | {g['roc_auc_diff']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] "
            f"vs {r['best_baseline']} | {f['model']['brier']:.4f} | {f['model']['ece']:.4f} |"
        )
    t = report["targets"]
    lines += [
        "",
        f"- every case's lower bound above {LOWER_BOUND_TARGET}: "
        f"{'met' if t['lower_bound_met'] else 'missed'} (worst {t['worst_lower_bound']:+.3f})",
        f"- mean gain over the best baseline at least +{MEAN_GAIN_TARGET}: "
        f"{'met' if t['mean_gain_met'] else 'missed'} ({t['mean_gain']:+.4f})",
        f"- ECE at most {ECE_TARGET} on every case: {'met' if t['ece_met'] else 'missed'} "
        f"(worst {t['worst_ece']:.4f})",
        f"- no empty list: {'met' if t['no_empty_list'] else 'missed'}",
        "",
        "| dataset | test cutoff | prevention list | win-back list | value basis | warnings | train s "
        "| fitting s |",
        "| --- | --- | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for s in report["runs"]:
        basis = ", ".join(f"{k} {v:,}" for k, v in s["value_basis"].items())
        lines.append(
            f"| {s['dataset']} | {s['test_cutoff']} | {s['lists']['prevention']:,} "
            f"| {s['lists']['winback']:,} | {basis} | {len(s['warnings'])} "
            f"| {s['seconds']['train']:.0f} | {s['fit_seconds']:.0f} |"
        )
    lines += [
        "",
        "Params changed from params.yaml in every run: " + ", ".join(report["params_changed"]) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="online_retail,olist")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "realdata")
    ap.add_argument(
        "--shared", default=None, help="folder with online_retail/ and olist/ (default: see above)"
    )
    args = ap.parse_args()
    shared = shared_dir(args.shared)
    exe = Path(sys.executable).parent / "comeback"
    cli = str(exe) if exe.exists() else "comeback"
    cases: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    changed_keys: list[str] = []
    for name in args.datasets.split(","):
        spec = DATASETS[name]
        source = shared / spec["source"]
        if not source.exists():
            sys.exit(f"realdata: {source} not found; set COMEBACK_SHARED_DATA to the folder holding it")
        base = (args.out / name).resolve()
        base.mkdir(parents=True, exist_ok=True)
        log = base / "run.log"
        log.write_text("", encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        run(
            [cli, spec["adapt"], "--source", str(source), "--out", str(base / "raw")],
            cwd=base,
            env=env,
            log=log,
        )
        facts = json.loads((base / "raw" / "adapter_report.json").read_text(encoding="utf-8"))["ingest"]
        export_date, timezone = facts["export_date"], facts["timezone"]
        ingest_params, _ = params_for(export_date, timezone, spec["test_cutoffs"][-1])
        (base / "params.yaml").write_text(yaml.safe_dump(ingest_params, sort_keys=False), encoding="utf-8")
        seconds_ingest = run(
            [
                cli,
                "ingest",
                "--raw",
                str(base / "raw"),
                "--out",
                str(base / "clean"),
                "--mapping",
                str(spec["mapping"]),
                "--params",
                str(base / "params.yaml"),
            ],
            cwd=base,
            env=env,
            log=log,
        )
        for cutoff in spec["test_cutoffs"]:
            work = base / cutoff
            work.mkdir(parents=True, exist_ok=True)
            params, changed = params_for(export_date, timezone, cutoff)
            changed_keys = sorted(changed)
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
            p = str(work / "params.yaml")
            run_env = {**env, "COMEBACK_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
            seconds = {"ingest": seconds_ingest}

            def stage(*args: str, work: Path = work, env: dict[str, str] = run_env, log: Path = log) -> float:
                return run([cli, *args], cwd=work, env=env, log=log)

            features = str(work / "features" / "features.parquet")
            models, reports = str(work / "models"), str(work / "reports")
            seconds["features"] = stage(
                "features", "--clean", str(base / "clean"), "--out", str(work / "features"), "--params", p
            )
            seconds["train"] = stage("train", "--features", features, "--out", models, "--params", p)
            seconds["evaluate"] = stage(
                "evaluate", "--features", features, "--models", models, "--out", reports, "--params", p
            )
            seconds["score"] = stage(
                "score",
                "--features",
                features,
                "--out",
                str(work / "scores"),
                "--models-dir",
                models,
                "--params",
                p,
            )
            cases += case_rows(name, cutoff, work / "reports", work / "models")
            manifest = json.loads((work / "scores" / "manifest.json").read_text(encoding="utf-8"))
            fit = sum(
                json.loads((work / "models" / k / "model.json").read_text(encoding="utf-8"))["fit_seconds"]
                for k in ("churn", "winback")
            )
            runs.append(
                {
                    "dataset": name,
                    "test_cutoff": cutoff,
                    "export_date": export_date,
                    "lists": manifest["lists"],
                    "value_basis": manifest.get("value_basis", {}).get("clients", {}),
                    "warnings": manifest.get("warnings", []),
                    "seconds": seconds,
                    "fit_seconds": fit,
                }
            )
            print(f"realdata: {name} {cutoff} done ({sum(seconds.values()):.0f} s)", flush=True)
    gains = [c["model_minus_best"]["roc_auc_diff"] for c in cases]
    report = {
        "params_changed": changed_keys,
        "cases": cases,
        "runs": runs,
        "targets": {
            "worst_lower_bound": min(c["model_minus_best"]["ci_low"] for c in cases),
            "lower_bound_met": all(c["model_minus_best"]["ci_low"] > LOWER_BOUND_TARGET for c in cases),
            "mean_gain": sum(gains) / len(gains),
            "mean_gain_met": sum(gains) / len(gains) >= MEAN_GAIN_TARGET,
            "worst_ece": max(c["forecasts"]["model"]["ece"] for c in cases),
            "ece_met": all(c["forecasts"]["model"]["ece"] <= ECE_TARGET for c in cases),
            "no_empty_list": all(min(r["lists"].values()) > 0 for r in runs),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "report.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
