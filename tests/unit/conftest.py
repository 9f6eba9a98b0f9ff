"""Fixtures shared by the unit tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local PySpark session for every test marked ``spark`` (a JVM start costs seconds)."""
    if shutil.which("java") is None:
        pytest.skip("PySpark needs a Java runtime and none is installed (`make java` installs one)")
    from features.tables import local_spark_session

    session = local_spark_session(threads=2, shuffle_partitions=1, small=True)
    yield session
    session.stop()
