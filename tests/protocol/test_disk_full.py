"""A full disk answers 507 naming the data folder on every route, never a bare 500.

In-process over HTTP (Litestar's TestClient on build_app): a real full disk needs a small filesystem,
which only root can mount here, and a test hook in the server is not wanted. The submit case is a
real SQLite "database or disk is full": the store's own connection is capped at the pages it has
(PRAGMA max_page_count), so the insert of a new job cannot grow the file, exactly as on a full disk.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec
from litestar.testing import TestClient

from thorgen.app import build_app
from thorgen.config import Config, StorageConfig
from thorgen.families.base import Endpoint
from thorgen.families.registry import Registry
from thorgen.jobs.service import JobService
from thorgen.metrics import Metrics


class Note(msgspec.Struct):
    note: str = ""


class Done(msgspec.Struct):
    ok: bool


RELEASE = threading.Event()


def hold(ctx, inp: Note) -> Done:
    """Keeps the GPU lane's one worker busy until the test releases it (nothing leaves the machine)."""
    RELEASE.wait(30)
    return Done(ok=True)


def app_and_service(tmp_path: Path) -> tuple[TestClient, JobService]:
    config = Config(storage=StorageConfig(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models")))
    registry = Registry(config, [Endpoint("test/hold", Note, Done, hold, "gpu", "waits for the test")])
    service = JobService(config, registry, Metrics())
    return TestClient(build_app(config, service), base_url="http://127.0.0.1:10000"), service


def test_submit_on_a_full_disk_is_a_507_naming_the_data_folder(tmp_path):
    client, service = app_and_service(tmp_path)
    RELEASE.set()
    with client:
        database = service.store._db  # the fault: no page may be added to the jobs database
        pages = database.execute("PRAGMA page_count").fetchone()[0]
        database.execute(f"PRAGMA max_page_count = {pages}")
        response = client.post("/queue/test/hold", json={"note": "x" * 100_000})
        assert response.status_code == 507, response.text
        body = response.json()
        assert body["error_type"] == "insufficient_storage"
        assert str(tmp_path / "data") in body["detail"] and "full" in body["detail"]
        # Space comes back: the same request is accepted.
        database.execute("PRAGMA max_page_count = 1073741823")
        again = client.post("/queue/test/hold", json={"note": "x" * 100_000})
        assert again.status_code == 200, again.text


def test_any_route_that_meets_a_full_disk_answers_507(tmp_path):
    # Cancel writes the cancel flag; here that write meets a full disk. No route of its own maps it:
    # the app's one handler for unexpected errors recognises a full disk wherever it comes from.
    client, service = app_and_service(tmp_path)
    RELEASE.clear()
    with client:
        try:
            client.post("/queue/test/hold", json={})  # runs, and holds the lane's one worker
            submitted = client.post("/queue/test/hold", json={}).json()  # waits behind it

            def full(job_id: str) -> None:
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
                raise exc

            service.store.request_cancel = full  # type: ignore[method-assign]
            response = client.put(submitted["cancel_url"].replace("http://127.0.0.1:10000", ""))
            assert response.status_code == 507, response.text
            assert response.json()["error_type"] == "insufficient_storage"
            assert str(tmp_path / "data") in response.json()["detail"]
        finally:
            RELEASE.set()
