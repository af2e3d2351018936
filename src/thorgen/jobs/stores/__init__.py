"""Job stores: one contract (base.JobStore), the embedded SQLite store and the PostgreSQL one."""

from __future__ import annotations

from thorgen.config import Config
from thorgen.jobs.stores.base import JobStore


def open_store(config: Config) -> JobStore:
    """``jobs.database`` empty: SQLite in the data folder; a postgresql:// URL: the cluster's store."""
    if not config.jobs.database:
        from thorgen.jobs.stores.sqlite import SqliteJobStore

        return SqliteJobStore(config.data_dir / "jobs.sqlite3")
    from thorgen.jobs.cluster import default_node_id
    from thorgen.jobs.stores.postgres import PostgresJobStore

    return PostgresJobStore(config.jobs.database, config.jobs.node_id or default_node_id(config.server.port))
