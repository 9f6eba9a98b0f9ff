#!/usr/bin/env bash
# The real-data run in one command: UCI Online Retail -> adapt -> ingest -> features -> train -> evaluate.
#
#   bench/realdata.sh            (or: make realdata)
#
# Reads online_retail/online_retail_I.parquet from $COMEBACK_SHARED_DATA (default ../shared/data beside
# the repository), uses params/online_retail.yaml and mappings/online_retail.yaml, and writes everything
# under data/realdata/online_retail/ (git-ignored): raw/, clean/, features/, models/, reports/ and its own
# MLflow store (mlflow.db, artifacts in mlartifacts/ beside it), so it never touches the demo's store.
# Headline numbers: data/realdata/online_retail/reports/metrics.json (test cutoff) and
# models/<kind>/metrics.json (validation cutoff).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${COMEBACK_BIN:-$ROOT/.venv/bin}"
SHARED="${COMEBACK_SHARED_DATA:-$ROOT/../shared/data}"
SOURCE="$SHARED/online_retail/online_retail_I.parquet"
OUT="$ROOT/data/realdata/online_retail"
PARAMS="$ROOT/params/online_retail.yaml"
MAPPING="$ROOT/mappings/online_retail.yaml"

if [[ ! -f "$SOURCE" ]]; then
  echo "realdata: Online Retail file not found: $SOURCE" >&2
  echo "realdata: set COMEBACK_SHARED_DATA to the folder holding online_retail/online_retail_I.parquet" >&2
  exit 2
fi
if [[ ! -x "$BIN/comeback" ]]; then
  echo "realdata: $BIN/comeback not found; run 'make install' first (or set COMEBACK_BIN)" >&2
  exit 2
fi

# Thread counts are explicit: the machine is shared (LightGBM and DuckDB read them from params).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export COMEBACK_TRACKING_URI="sqlite:///$OUT/mlflow.db"
mkdir -p "$OUT"
cd "$OUT"  # MLflow puts its artifact root (mlartifacts/) in the working folder, beside the store

"$BIN/comeback" adapt-online-retail --source "$SOURCE" --out "$OUT/raw"
"$BIN/comeback" ingest --raw "$OUT/raw" --out "$OUT/clean" --mapping "$MAPPING" --params "$PARAMS"
"$BIN/comeback" features --clean "$OUT/clean" --out "$OUT/features" --params "$PARAMS"
"$BIN/comeback" train --features "$OUT/features/features.parquet" --out "$OUT/models" --params "$PARAMS"
"$BIN/comeback" evaluate --features "$OUT/features/features.parquet" --models "$OUT/models" \
  --out "$OUT/reports" --params "$PARAMS"
echo "realdata: done; test-cutoff metrics in $OUT/reports/metrics.json, details in $OUT/reports/details.json"
