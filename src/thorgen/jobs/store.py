"""The embedded SQLite job store under its historical name (``thorgen files prune`` and older imports).

The store contract and both implementations live in ``thorgen.jobs.stores``.
"""

from thorgen.jobs.stores.sqlite import SqliteJobStore as JobStore

__all__ = ["JobStore"]
