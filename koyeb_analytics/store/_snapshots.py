"""Snapshots: a window's frames as Parquet files plus a JSON manifest.

A snapshot keeps what a post-mortem needs offline: the instances, events, intervals
and exec transcript of a window, with their dtypes and ``attrs``. Reloading it gives
frames equal to the ones saved, so the numbers computed from it are the numbers the API gave.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from ..errors import SnapshotError

MANIFEST = "manifest.json"
FORMAT = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """attrs to JSON: Timestamps and Timedeltas are tagged so they come back typed."""
    if isinstance(value, pd.Timestamp):
        return {"__timestamp__": value.isoformat()}
    if isinstance(value, pd.Timedelta):
        return {"__timedelta__": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "as_dict"):
        return json_safe(value.as_dict())
    return repr(value)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__timestamp__"}:
            return pd.Timestamp(value["__timestamp__"])
        if set(value) == {"__timedelta__"}:
            return pd.Timedelta(value["__timedelta__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def json_columns(df: pd.DataFrame) -> list[str]:
    """Object columns holding lists or dicts: Parquet would reshape them, JSON keeps them."""
    cols = []
    for col in df.columns:
        if df[col].dtype == object:
            sample = df[col].dropna()
            if len(sample) and isinstance(sample.iloc[0], (list, dict, tuple)):
                cols.append(col)
    return cols


def save_snapshot(path: str | Path, *, instances: pd.DataFrame | None = None,
                  events: pd.DataFrame | None = None, intervals: pd.DataFrame | None = None,
                  transcript: pd.DataFrame | None = None,
                  start_status: pd.DataFrame | None = None,
                  platform: pd.DataFrame | None = None,
                  note: str | None = None) -> Path:
    """Write frames to ``path`` (a directory): one Parquet file each, and a manifest.

    The manifest records the package version, each frame's row count, SHA-256 checksum,
    ``attrs`` (query, ``fetched_at``…) and which columns hold JSON.

    Parameters
    ----------
    path
        A directory (made if needed).
    instances, events, intervals, transcript
        The frames to keep (at least one).
    start_status, platform
        A window's other evidence (``Window.start_status``, ``Window.platform``), so
        that ``lifecycles`` on the reloaded frames gives the same intervals.
    note
        A free text kept in the manifest.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "incident-42"
    >>> inst, ev = ka.load_instances(client), ka.load_events(client, window="6h")
    >>> ka.save_snapshot(folder, instances=inst, events=ev).name
    'incident-42'
    """
    frames = {"instances": instances, "events": events, "intervals": intervals,
              "transcript": transcript, "start_status": start_status, "platform": platform}
    given = {k: v for k, v in frames.items() if v is not None}
    if not given:
        raise ValueError("nothing to save: pass instances, events, intervals, transcript, "
                         "start_status or platform")
    for name, df in given.items():
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{name} must be a DataFrame, got {type(df).__name__}")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT, "package": "koyeb-analytics",
                                "version": __version__,
                                "saved_at": pd.Timestamp.now(tz="UTC").isoformat(),
                                "note": note, "frames": {}}
    for name, df in given.items():
        json_cols = json_columns(df)
        out = df.copy()
        for col in json_cols:
            out[col] = [None if v is None else json.dumps(json_safe(v), sort_keys=True)
                        for v in df[col]]
        out.attrs = {}
        file = root / f"{name}.parquet"
        out.to_parquet(file, index=False)
        manifest["frames"][name] = {
            "file": file.name, "rows": len(df), "sha256": _sha256(file),
            "json_columns": json_cols, "attrs": json_safe(df.attrs),
            "columns": [str(c) for c in df.columns],
        }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return root


def load_snapshot(path: str | Path) -> dict[str, pd.DataFrame]:
    """Read a snapshot written by :func:`save_snapshot`.

    Returns a dict of the frames it holds (``instances``, ``events``, ``intervals``,
    ``transcript``, ``start_status``, ``platform``), with their dtypes and ``attrs``.
    :func:`read_manifest` gives the manifest itself.

    Parameters
    ----------
    path
        The snapshot's directory.

    Returns
    -------
    dict of DataFrame

    Raises
    ------
    SnapshotError
        Naming the file that is missing, altered (checksum) or unreadable.

    Examples
    --------
    >>> import tempfile, koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     inst = ka.load_instances(sim.client(), progress=False)
    >>> folder = ka.save_snapshot(tempfile.mkdtemp(), instances=inst)
    >>> ka.load_snapshot(folder)["instances"].equals(inst)
    True
    """
    root = Path(path)
    manifest = read_manifest(root)
    out: dict[str, pd.DataFrame] = {}
    for name, meta in manifest["frames"].items():
        file = root / meta["file"]
        if not file.is_file():
            raise SnapshotError(f"snapshot {root}: {file.name} is missing")
        if _sha256(file) != meta["sha256"]:
            raise SnapshotError(f"snapshot {root}: {file.name} does not match its checksum "
                                "(altered or truncated)")
        try:
            df = pd.read_parquet(file)
        except Exception as exc:  # noqa: BLE001 - any reader failure names the file
            raise SnapshotError(f"snapshot {root}: cannot read {file.name}: {exc}") from None
        if len(df) != meta["rows"] or [str(c) for c in df.columns] != meta["columns"]:
            raise SnapshotError(f"snapshot {root}: {file.name} has other rows or columns "
                                "than its manifest says")
        for col in meta["json_columns"]:
            df[col] = pd.Series([None if v is None else _decode(json.loads(v))
                                 for v in df[col]], index=df.index, dtype=object)
        df.attrs = _decode(meta["attrs"])
        out[name] = df
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Return a snapshot's manifest (raises :class:`SnapshotError` if it is unusable).

    Parameters
    ----------
    path
        The snapshot's directory.

    Returns
    -------
    dict
        ``format``, ``version``, ``frames`` (file, rows, sha256, attrs per frame)...

    Examples
    --------
    >>> read_manifest("no-such-folder")
    Traceback (most recent call last):
    ...
    koyeb_analytics.errors.SnapshotError: no snapshot at no-such-folder (not a directory)
    """
    root = Path(path)
    file = root / MANIFEST
    if not root.is_dir():
        raise SnapshotError(f"no snapshot at {root} (not a directory)")
    if not file.is_file():
        raise SnapshotError(f"snapshot {root}: {MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text())
    except ValueError as exc:
        raise SnapshotError(f"snapshot {root}: {MANIFEST} is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("frames"), dict):
        raise SnapshotError(f"snapshot {root}: {MANIFEST} is not a koyeb-analytics manifest "
                            f"of format {FORMAT}")
    out: dict[str, Any] = manifest
    return out
