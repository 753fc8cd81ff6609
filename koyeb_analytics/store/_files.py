"""The history store's files: where they live, how they are written, who may write.

A store is a directory on any fsspec filesystem (a local path by default). Every file
is written under a temporary name and renamed into place; the manifest is written last,
the same way, and is the only record of which data files belong to the store. A
process killed at any point therefore leaves the previous manifest, and the files it
lists, intact; what it wrote besides is removed by the next writer. One writer at a
time: a lock (``flock`` on local disks, an exclusive-create lock file elsewhere).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from ..errors import StoreError, StoreLockedError

MANIFEST = "manifest.json"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"


class Files:
    """A store's root on a filesystem: atomic writes, the manifest, the writers' lock.

    Parameters
    ----------
    location
        A local path or an fsspec URL (``memory://history``, ``s3://bucket/prefix``).
    storage_options
        Passed to fsspec for URLs (credentials, endpoints).
    """

    def __init__(self, location: str | os.PathLike[str],
                 storage_options: dict[str, Any] | None = None) -> None:
        text = os.fspath(location)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a store needs a path or URL, got {location!r}")
        try:
            import fsspec
            from fsspec.core import url_to_fs
        except ImportError as exc:  # pragma: no cover - fsspec is a dependency
            raise ImportError("the history store needs fsspec: pip install fsspec") from exc
        self.url = text
        self.local = "://" not in text or text.startswith("file://")
        if self.local:
            path = text.removeprefix("file://")
            self.fs = fsspec.filesystem("file")
            self.root = os.path.abspath(os.path.expanduser(path))
        else:
            try:
                self.fs, self.root = url_to_fs(text, **(storage_options or {}))
            except ImportError as exc:
                scheme = text.split("://", 1)[0]
                raise ImportError(
                    f"the store {text!r} needs the fsspec driver for {scheme}:// "
                    f"(for S3: pip install 'koyeb-analytics[s3]'): {exc}") from None
            self.root = self.root.rstrip("/")
        self.protocol = "file" if self.local else text.split("://", 1)[0]

    def path(self, *parts: str) -> str:
        """The full path of ``parts`` under the root (for this filesystem)."""
        return "/".join([self.root, *parts])

    def url_of(self, relative: str) -> str:
        """What DuckDB opens for a file: a local path, or a URL of a registered fs."""
        full = self.path(relative)
        return full if self.local else f"{self.protocol}://{full}"

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path(MANIFEST)))

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None for a store not written yet."""
        if not self.exists():
            return None
        try:
            with self.fs.open(self.path(MANIFEST), "rb") as fh:
                manifest = json.loads(fh.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"the store's manifest ({self.path(MANIFEST)}) is not valid "
                             f"JSON ({exc}); it was not written by koyeb-analytics or was "
                             "damaged") from None
        if not isinstance(manifest, dict):
            raise StoreError(f"the store's manifest ({self.path(MANIFEST)}) is not an object")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the manifest atomically: this is the commit of every write."""
        self.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())

    def write_bytes(self, relative: str, data: bytes) -> None:
        tmp = self._tmp_name(relative)
        with self._writing(relative):
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
                if self.local:
                    fh.flush()
                    os.fsync(fh.fileno())
            self.fs.mv(tmp, self.path(relative))

    def write_table(self, relative: str, table: pa.Table) -> None:
        """Write ``table`` as Parquet at ``relative``, under a temporary name first."""
        import pyarrow.parquet as pq  # only when writing: not at package import

        tmp = self._tmp_name(relative)
        with self._writing(relative):
            with self.fs.open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
                if self.local:
                    fh.flush()
                    os.fsync(fh.fileno())
            self.fs.mv(tmp, self.path(relative))

    def _tmp_name(self, relative: str) -> str:
        head, _, name = relative.rpartition("/")
        folder = self.path(head) if head else self.root
        with self._writing(head):
            self.fs.makedirs(folder, exist_ok=True)
        return f"{folder}/{TMP_PREFIX}{uuid.uuid4().hex}-{name}"

    @contextmanager
    def _writing(self, relative: str) -> Iterator[None]:
        """Turn a filesystem's refusal to write ``relative`` (``""``: the root) into a
        StoreError naming it, instead of a bare OSError from deep inside fsspec."""
        try:
            yield
        except OSError as exc:
            raise self._unwritable(self.path(relative) if relative else self.root,
                                   exc) from None

    def _unwritable(self, path: str, exc: OSError) -> StoreError:
        blocker = self.blocking_file()
        if blocker is not None:
            return StoreError(f"the history store {self.url!r} cannot be written: "
                              f"{blocker!r} is a file, not a folder")
        if isinstance(exc, PermissionError):
            why = "permission denied"
        else:
            why = exc.strerror or str(exc) or type(exc).__name__
        return StoreError(f"the history store {self.url!r} cannot be written: {path!r}: "
                          f"{why}")

    def blocking_file(self) -> str | None:
        """The file standing where the store's folder (or one of its parents) should be."""
        path = self.root
        while path:
            try:
                if self.fs.isfile(path):
                    return path
                if self.fs.exists(path):
                    return None
            except OSError:
                return None
            parent = path.rsplit("/", 1)[0]
            if parent == path:
                return None
            path = parent
        return None

    def remove(self, relative: str) -> None:
        try:
            self.fs.rm(self.path(relative))
        except FileNotFoundError:
            pass

    def data_files(self, table: str) -> list[str]:
        """Every file under ``table/`` (relative paths), listed or not, temporary or not."""
        base = self.path(table)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        root = self.root.rstrip("/") + "/"
        return sorted(str(f)[len(root):] for f in found if str(f).startswith(root))

    @contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Hold the writers' lock, waiting up to ``timeout`` seconds for another writer."""
        with self._writing(""):
            self.fs.makedirs(self.root, exist_ok=True)
        if self.local:
            with self._flock(timeout):
                yield
        else:
            with self._lockfile(timeout):
                yield

    @contextmanager
    def _flock(self, timeout: float) -> Iterator[None]:
        import fcntl

        with self._writing(LOCK):
            fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreLockedError(self.url, timeout) from None
                    time.sleep(0.05)
            try:
                yield  # the kernel releases the lock if this process dies
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def _lockfile(self, timeout: float, stale_after: float = 3600.0) -> Iterator[None]:
        # Object stores have no advisory locks: an exclusively created file stands in,
        # and one older than ``stale_after`` is taken to be left by a killed writer.
        path = self.path(LOCK)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.fs.open(path, "xb") as fh:
                    fh.write(json.dumps({"pid": os.getpid(), "at": time.time()}).encode())
                break
            except FileExistsError:
                try:
                    with self.fs.open(path, "rb") as fh:
                        held = json.loads(fh.read() or b"{}")
                    since = float(held.get("at", 0))
                except (FileNotFoundError, ValueError, TypeError, AttributeError):
                    since = time.time()
                if time.time() - since > stale_after:
                    self.remove(LOCK)
                    continue
                if time.monotonic() >= deadline:
                    raise StoreLockedError(self.url, timeout) from None
                time.sleep(0.05)
            except OSError as exc:  # after FileExistsError: that one means "held"
                raise self._unwritable(path, exc) from None
        try:
            yield
        finally:
            self.remove(LOCK)
