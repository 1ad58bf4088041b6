"""Shared fixtures: one real SparkSession (Delta + Hive catalog) per test process, temporary lake roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecommerce_lake.settings import Settings


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("ecommerce_lake_home")
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    (home / "dagster_home").mkdir()
    return home


@pytest.fixture(scope="session")
def settings(session_home: Path) -> Settings:
    """Settings for the test process. The jar cache is the normal one (set up by scripts/install)."""
    return Settings(home=str(session_home), env="local")


@pytest.fixture(scope="session")
def resources(settings):
    from ecommerce_lake.defs.resources import build_resources

    return build_resources(settings)


@pytest.fixture(scope="session")
def spark(resources):
    return resources["spark"].get_session()


@pytest.fixture
def lake_root(tmp_path: Path) -> str:
    return str(tmp_path / "lake")
