"""params.yaml -> typed, validated objects. One section per stage; a typo in a key is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from features.config import FeatureParams
from models.config import EvaluateParams, PromoteParams, TrainParams
from pipeline.ingest_rules import IngestParams
from pipeline.synthetic import GenerateParams
from serving.config import ScoreParams


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or does not validate; the message names the key."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generate: GenerateParams
    ingest: IngestParams
    features: FeatureParams
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    score: ScoreParams


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml; errors name the offending key path."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ParamsError(f"params file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    try:
        return Params.model_validate(raw or {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ParamsError(f"{path}: {problems}") from e
