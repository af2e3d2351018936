"""``thorgen files prune`` on a data folder a real server filled, and /info's disk use.

The server makes real jobs and files; the test then ages some of them (their rows' timestamps and
their files' mtimes), as days passing would, and prunes through the command line.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from mediagen import make_audio, make_video
from server_process import ServerProcess
from wire_helpers import upload

TEN_DAYS_AGO = time.time() - 10 * 86400


def thorgen_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thorgen", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "THORGEN_CONFIG": ""})


def finished(base: str, endpoint: str, arguments: dict) -> tuple[str, dict]:
    """Submit through the queue and wait (bounded) for the job's output."""
    request_id = httpx.post(f"{base}/queue/{endpoint}", json=arguments).json()["request_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/queue/{endpoint}/requests/{request_id}/status").json()["status"] == "COMPLETED":
            result = httpx.get(f"{base}/queue/{endpoint}/requests/{request_id}")
            assert result.status_code == 200, result.text
            return request_id, result.json()
        time.sleep(0.05)
    raise AssertionError(f"{endpoint} job {request_id} did not finish")


def key_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def test_prune_dry_run_lists_real_run_removes_and_newer_or_queued_jobs_keep_their_files(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, args=["--models-dir", str(tmp_path / "models")]).start()
    try:
        base = server.base_url
        clip = make_video(tmp_path / "clip.mp4", width=64, height=48, seconds=0.5, with_audio=False)
        old_upload, new_upload, queued_upload = (upload(base, clip, "video/mp4") for _ in range(3))
        orphan = upload(base, make_audio(tmp_path / "tone.wav", seconds=0.2), "audio/wav")
        old_job, old_out = finished(base, "fal-ai/ffmpeg-api/extract-frame", {"video_url": old_upload})
        new_job, new_out = finished(base, "fal-ai/ffmpeg-api/extract-frame", {"video_url": new_upload})
        queued_job, _ = finished(base, "fal-ai/ffmpeg-api/metadata", {"media_url": queued_upload})
        disk = httpx.get(f"{base}/info").json()["disk"]
        assert disk["files"] == 6 and disk["files_bytes"] == sum(p.stat().st_size for p in (data / "files").iterdir())
        assert disk["database_bytes"] > 0 and disk["free_bytes"] > 0 and disk["data_dir"] == str(data)
    finally:
        server.stop()

    old_frame, new_frame = key_of(old_out["images"][0]["url"]), key_of(new_out["images"][0]["url"])
    files = data / "files"
    # Ten days pass for the old job and its files; the "queued" job stands for one waiting when the
    # server stopped, submitted ten days ago with an upload as old.
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET created_at = ?, finished_at = ? WHERE id = ?",
                   (TEN_DAYS_AGO, TEN_DAYS_AGO, old_job))
        db.execute("UPDATE jobs SET created_at = ?, state = 'IN_QUEUE', finished_at = NULL, output = NULL "
                   "WHERE id = ?", (TEN_DAYS_AGO, queued_job))
    for key in (key_of(old_upload), old_frame, key_of(queued_upload), key_of(orphan)):
        os.utime(files / key, (TEN_DAYS_AGO, TEN_DAYS_AGO))
    before = sorted(path.name for path in files.iterdir())

    dry = thorgen_cli("files", "prune", "--older-than", "7", "--dry-run", "--data-dir", str(data))
    assert dry.returncode == 0, dry.stderr
    going = {key_of(old_upload), old_frame, key_of(orphan)}
    listed = {line.split()[3] for line in dry.stdout.splitlines() if line.startswith("would remove file")}
    assert listed == going
    assert [line.split()[3] for line in dry.stdout.splitlines() if line.startswith("would remove job")] == [old_job]
    assert sorted(path.name for path in files.iterdir()) == before
    assert job_ids(data) == {old_job, new_job, queued_job}

    real = thorgen_cli("files", "prune", "--older-than", "7", "--data-dir", str(data))
    assert real.returncode == 0, real.stderr
    assert "removed 1 job(s) and 3 file(s)" in real.stdout
    assert sorted(path.name for path in files.iterdir()) == sorted(set(before) - going)
    assert {key_of(new_upload), new_frame, key_of(queued_upload)} <= set(before) - going
    assert job_ids(data) == {new_job, queued_job}
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM logs WHERE job_id = ?", (old_job,)).fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM job_inputs WHERE job_id = ?", (old_job,)).fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM logs WHERE job_id = ?", (new_job,)).fetchone()[0] > 0


def job_ids(data: Path) -> set[str]:
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        return {row[0] for row in db.execute("SELECT id FROM jobs")}
