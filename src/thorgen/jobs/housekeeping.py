"""Disk use of the data folder, and pruning old jobs with their files (``thorgen files prune``).

What prune removes, given a cutoff (now minus ``--older-than`` days):
- every job COMPLETED before the cutoff (succeeded, failed or cancelled), with its logs;
- every stored file (upload or output) last written before the cutoff that no remaining job names
  in its input or output. A remaining job is one that is queued, running, or finished after the
  cutoff, so a queued or running job's inputs, and an old upload a newer job used, always stay.
  An old job's outputs go with it because nothing newer names them.
Files are found by the ``/files/<key>`` URLs in the stored JSON, whatever host those URLs name.

It works on a live data folder (SQLite in WAL mode lets the server go on), with one caveat: a job
submitted while prune runs that names an upload older than the cutoff may lose that upload. Run it
when no client is reusing uploads that old, or with the server stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from thorgen.jobs.stores.base import JobStore
from thorgen.media.store import MediaStore

_FILE_REFERENCE = re.compile(rb"/files/([0-9a-f]{32}\.[a-z0-9]{1,5})")
_KEY = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,5}$")
DAY_S = 86400.0


class DiskUsage:
    """Bytes used by stored files and by the database, and free space on the data folder's disk.

    The database size and free space are two stat calls, read every time. Summing the files means
    listing the whole folder, so that total is cached for ``files_ttl_s``: /info stays cheap however
    many files there are, and is at most that many seconds behind.
    """

    def __init__(self, store: JobStore, media: MediaStore, files_ttl_s: float = 60.0):
        self.store = store
        self.media = media
        self.files_ttl_s = files_ttl_s
        self._lock = threading.Lock()
        self._files: tuple[float, int, int] | None = None  # (counted at, bytes, files)

    def snapshot(self) -> dict[str, Any]:
        counted_at, files_bytes, files = self._file_totals()
        return {
            "data_dir": str(self.media.root.parent),
            "files_bytes": files_bytes,
            "files": files,
            "files_counted_s_ago": round(time.time() - counted_at, 1),
            "database_bytes": self.store.database_bytes(),
            "free_bytes": shutil.disk_usage(self.media.root).free,
        }

    def _file_totals(self) -> tuple[float, int, int]:
        with self._lock:
            if self._files is None or time.time() - self._files[0] > self.files_ttl_s:
                total = count = 0
                with os.scandir(self.media.root) as entries:
                    for entry in entries:
                        try:
                            if entry.is_file(follow_symlinks=False):
                                total += entry.stat(follow_symlinks=False).st_size
                                count += 1
                        except FileNotFoundError:  # removed while we listed
                            pass
                self._files = (time.time(), total, count)
            return self._files


@dataclass
class PrunePlan:
    cutoff: float
    jobs: list[tuple[str, str, float]] = field(default_factory=list)  # (id, endpoint id, finished at)
    files: list[tuple[str, int]] = field(default_factory=list)  # (key, bytes)

    @property
    def file_bytes(self) -> int:
        return sum(size for _, size in self.files)


def plan_prune(store: JobStore, media: MediaStore, older_than_days: float, now: float | None = None) -> PrunePlan:
    """What a prune would remove; removes nothing."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY_S
    plan = PrunePlan(cutoff, jobs=store.completed_before(cutoff))
    leaving = {job_id for job_id, _, _ in plan.jobs}
    kept_references: set[str] = set()
    for job_id, input_json, output_json in store.stored_documents():
        if job_id not in leaving:
            for document in (input_json, output_json or b""):
                kept_references.update(key.decode() for key in _FILE_REFERENCE.findall(document))
    with os.scandir(media.root) as entries:
        for entry in entries:
            # Only finished files have a key for a name: *.part uploads in flight are not ours to touch.
            if not _KEY.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            if stat.st_mtime < cutoff and entry.name not in kept_references:
                plan.files.append((entry.name, stat.st_size))
    plan.files.sort()
    return plan


def apply_prune(store: JobStore, media: MediaStore, plan: PrunePlan) -> tuple[int, int]:
    """Remove the plan's job rows first, then its files; returns (jobs, files) removed."""
    jobs = store.delete_jobs([job_id for job_id, _, _ in plan.jobs])
    files = 0
    for key, _ in plan.files:
        try:
            media.path(key).unlink()
            files += 1
        except FileNotFoundError:
            pass
    return jobs, files
