"""What was read, kept: a history store (Parquet by day, queried with DuckDB) and snapshots.

``_history`` is :class:`HistoryStore` (sync only what is new, answer with the frames the
loaders return); ``_streams`` keeps its metrics and its logs (optional, within a byte
budget); ``_files`` writes and locks its files, on a local disk or any fsspec
filesystem; ``_snapshots`` saves and loads frames with a checksummed manifest.
"""

from __future__ import annotations

from ._history import HistoryStore, SyncResult
from ._snapshots import load_snapshot, read_manifest, save_snapshot

__all__ = ["HistoryStore", "SyncResult", "load_snapshot", "read_manifest", "save_snapshot"]
