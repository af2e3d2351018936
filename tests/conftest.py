"""Shared fixtures: a real thorgen server on a loopback port, and fal's Python client pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("FAL_KEY", "local-test-key")

from server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's server writes its tiny random models (``models_dir/tiny/NAME``)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerProcess]:
    """One real server for the session, serving tiny random-weight models on the CPU."""
    process = ServerProcess(tmp_path_factory.mktemp("thorgen") / "data",
                            args=["--tiny", "--models-dir", str(models_dir)]).start()
    process.wait_ready()
    yield process
    process.stop()


def point_fal_client_at(base_url: str) -> None:
    """fal-client 1.0.3 has no base-URL option: its module globals are the documented override."""
    import fal_client.client as fal_internal

    fal_internal.RUN_URL_FORMAT = f"{base_url}/run/"
    fal_internal.QUEUE_URL_FORMAT = f"{base_url}/queue/"
    fal_internal.REST_URL = f"{base_url}/rest"
    fal_internal.CDN_URL = f"{base_url}/cdn"


@pytest.fixture()
def fal(server: ServerProcess):
    import fal_client

    point_fal_client_at(server.base_url)
    client = fal_client.SyncClient(key="local-test-key", default_timeout=60)
    yield client


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")
