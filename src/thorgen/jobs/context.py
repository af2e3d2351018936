"""JobContext: what an endpoint's run() may do — log, report steps, honour cancel, read and write files."""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thorgen.errors import Cancelled
from thorgen.jobs.record import Job, LogEntry
from thorgen.jobs.stores.base import StoreUnavailable

if TYPE_CHECKING:
    from thorgen.config import Config
    from thorgen.jobs.service import JobService
    from thorgen.models.swapper import Lease

log = logging.getLogger("thorgen.jobs")


class JobContext:
    def __init__(self, job: Job, service: JobService, model: str | None = None):
        self.job = job
        self.request_id = job.id
        self.model = model  # the [models.NAME] this job's endpoint runs
        self._service = service
        self._scratch: Path | None = None
        self._pending: dict[str, Path] = {}  # output key -> its temporary file, until committed

    @property
    def config(self) -> Config:
        return self._service.config

    def lease(self, name: str | None = None) -> AbstractContextManager[Lease]:
        """Borrow a loaded model (this endpoint's own by default) for the length of a ``with`` block."""
        name = name or self.model
        if name is None:
            raise RuntimeError(f"{self.job.endpoint_id} has no model to lease")
        return self._service.runtime.lease(name)

    def log(self, message: str, level: str = "INFO") -> None:
        try:
            self._service.append_log(self.job.id, LogEntry(message, level, time.time()))
        except StoreUnavailable as exc:
            # The shared jobs database is away for a moment: a progress line is not worth failing the
            # job for (its result is written with retries, and by the finisher when need be).
            log.warning("job %s: a log line was lost, the jobs database is unreachable (%s): %s",
                        self.job.id, exc.detail, message)

    def step(self, done: int, total: int, what: str = "step") -> None:
        """Report progress and stop here if the client cancelled. Call between units of work."""
        self.check_cancelled()
        self.log(f"{what} {done}/{total}")

    def check_cancelled(self) -> None:
        if self._service.cancel_requested(self.job.id):
            raise Cancelled()

    def resolve(self, url: str, field: str | list[str | int]) -> Path:
        """A local path for a file input (own URL, data: URI or a fetched http(s) URL)."""
        return self._service.resolver.resolve(url, field, scratch=self.scratch(), base_url=self.job.base_url)

    def scratch(self) -> Path:
        """A private folder for this job's temporary files, removed when the job ends."""
        if self._scratch is None:
            self._scratch = self._service.scratch_root / self.job.id
            self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def new_output(self, ext: str) -> tuple[str, Path]:
        """Reserve a stored file for an output: its key and the (temporary) path to write it to.

        No URL serves the path: the file appears under its key only when the job succeeds and
        ``commit_outputs`` puts it in place, whole and flushed to disk. A run that dies or fails
        half-way leaves only a temporary, removed at the job's end or at the next start.
        """
        media = self._service.media
        key = media.new_key(ext)
        self._pending[key] = media.temp_path(key)
        return key, self._pending[key]

    def file(self, key: str, file_name: str | None = None) -> dict[str, Any]:
        """fal's File object (url, content_type, file_name, file_size) for a stored output."""
        return self._service.media.describe(key, self.job.base_url, file_name, pending=self._pending.get(key))

    def commit_outputs(self) -> None:
        """Put every output the run wrote in place (fsynced, never replacing a file); call once the
        run has succeeded and before the job is recorded as COMPLETED. An output the run chose not
        to keep (a sync-mode file it read back and deleted) is skipped."""
        media = self._service.media
        for key, temp in list(self._pending.items()):
            if temp.exists():
                media.place(temp, key)
            del self._pending[key]

    def url(self, key: str) -> str:
        return self._service.media.url(key, self.job.base_url)

    def cleanup(self) -> None:
        for temp in self._pending.values():  # outputs of a run that failed: never shown
            temp.unlink(missing_ok=True)
        self._pending.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
