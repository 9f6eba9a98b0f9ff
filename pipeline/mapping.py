"""The mapping file: how a CRM's own export maps onto the table contract, without code changes.

A mapping names, per contract table, the file to read, the CRM's column name for each contract
column, codes to translate (``abgeschlossen`` -> ``completed``), a timestamp format and CSV dialect.
Everything not mentioned keeps its default: file ``<table>.csv`` or ``<table>.parquet``, column
names as in the contract, values as they are. A typo in a key is an error that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.contract import RAW_TABLES

OneChar = Annotated[str, Field(min_length=1, max_length=1)]
TableName = Literal["clients", "orders", "complaints", "contacts"]

_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
}


class MappingError(ValueError):
    """The mapping file is missing, unreadable or invalid; the message names the file and the key."""


class CsvOptions(BaseModel):
    """CSV dialect of one exported file. Only UTF-8 and Latin-1 are supported (DuckDB reads both natively)."""

    model_config = ConfigDict(extra="forbid")

    delimiter: OneChar = ","
    quote: OneChar = '"'
    escape: OneChar = '"'
    encoding: Literal["utf-8", "latin-1"] = "utf-8"
    decimal_separator: Literal[".", ","] = "."

    @field_validator("encoding", mode="before")
    @classmethod
    def _normalise_encoding(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in _ENCODINGS:
            return _ENCODINGS[value.lower()]
        return value


class TableMapping(BaseModel):
    """How one contract table appears in the export.

    ``columns`` maps contract column -> export column; mapping a nullable contract column to
    ``null`` says the export does not have it (it is filled with nulls). ``values`` maps, per
    contract column, export codes -> contract values (exact, case-sensitive match; unmapped values
    pass through unchanged and are then checked against the contract). ``timestamp_format`` is a
    strptime format (DuckDB's ``strptime``) used for every timestamp column of the table; with
    ``%z`` the offset in the value is used, otherwise values are read in ``ingest.timezone``.
    """

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    columns: dict[str, str | None] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    timestamp_format: str | None = None
    csv: CsvOptions = CsvOptions()

    @field_validator("values", mode="before")
    @classmethod
    def _codes_as_text(cls, value: object) -> object:
        # YAML reads `1: true` as int/bool keys and values; codes in a CSV are always text.
        if isinstance(value, dict):
            return {
                col: (
                    {_as_text(k): _as_text(v) for k, v in codes.items()} if isinstance(codes, dict) else codes
                )
                for col, codes in value.items()
            }
        return value

    def source_column(self, column: str) -> str | None:
        """The export's name for contract ``column`` (``None``: the export does not have it)."""
        return self.columns.get(column, column)


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class ExportMapping(BaseModel):
    """A whole mapping file: one optional entry per contract table."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[TableName, TableMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_against_contract(self) -> ExportMapping:
        for name, tm in self.tables.items():
            contract = RAW_TABLES[name]
            known = contract.names
            for section in ("columns", "values"):
                for col in getattr(tm, section):
                    if col not in known:
                        raise ValueError(
                            f"tables.{name}.{section}.{col}: not a column of the {name!r} contract "
                            f"(expected one of {', '.join(known)})"
                        )
            for col, src in tm.columns.items():
                c = contract.column(col)
                if src is None and not (c.nullable or not c.required):
                    raise ValueError(
                        f"tables.{name}.columns.{col}: mapped to null, but {name}.{col} is a required, "
                        "non-nullable column"
                    )
            sources = [s for s in tm.columns.values() if s is not None]
            dupes = sorted({s for s in sources if sources.count(s) > 1})
            if dupes:
                raise ValueError(f"tables.{name}.columns: export column(s) {dupes} mapped twice")
        return self

    def table(self, name: str) -> TableMapping:
        """The mapping of contract table ``name`` (defaults when the file does not mention it)."""
        for key, mapping in self.tables.items():
            if key == name:
                return mapping
        return TableMapping()


def parse_mapping(raw: object, *, source: str = "mapping") -> ExportMapping:
    """Validate an already-parsed mapping document; errors name ``source`` and the offending key."""
    try:
        return ExportMapping.model_validate(raw or {})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()
        )
        raise MappingError(f"{source}: {problems}") from e


def load_mapping(path: Path | None) -> ExportMapping:
    """Read and validate a mapping YAML file; ``None`` gives the identity mapping (contract names)."""
    if path is None:
        return ExportMapping()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise MappingError(f"mapping file not found: {path}") from e
    except yaml.YAMLError as e:
        raise MappingError(f"{path}: not valid YAML: {e}") from e
    return parse_mapping(raw, source=str(path))
