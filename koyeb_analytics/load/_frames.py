"""How a listing becomes a typed frame, fast: the loaders' private machinery.

``_loaders`` orchestrates (arguments, pages, attrs); this module turns pages of JSON
objects into the columns and dtypes :mod:`koyeb_analytics.schema` promises.
Each trick below was measured on this project's 2-core machines (the benchmarks under
``benchmarks/`` show the whole):

* Rows are collected column by column, with one ``itemgetter`` per row and a
  transpose when every row has exactly the schema's keys: about 40% less work than a
  ``.get`` per column and row (collection of 107k instances 0.155 s -> 0.117 s).
  Such rows cannot carry unknown fields, so the scan for extra keys is skipped too.
* The few distinct strings of event columns (instance ids, types, messages) are
  shared while collecting: a million events repeat a few thousand of them.
* String columns are built by Arrow straight into pandas' ``str`` dtype: about 2x
  faster than pandas' own checks. Whatever Arrow refuses takes the slow path.
* Timestamps are parsed by Arrow's ISO 8601 cast, 5-10x faster than pandas' parser,
  fractions finer than microseconds cut to six digits first (as pandas does).
* Rows are sorted only when they did not arrive in order (or in reverse), and then by
  Arrow's stable multi-key sort, about 3x faster than ``sort_values`` here.
* The cycle collector is paused while a listing is collected: decoding creates many
  containers and no cycles, and the growing heap made the collector rescan it (0.05-0.2
  s per 100k rows in a busy process).

Values of the wrong kind never raise here: they become missing, and are counted per
column for the frame's ``attrs["notes"]``.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import STRING_DTYPE, TIME_DTYPE, status_dtype

Page = list[dict[str, Any]]


Coerced = dict[str, int]
"""Per column, how many values were not of the column's kind and became missing."""


def _strings(values: list[Any], bad: list[int]) -> pd.Series:
    # Arrow builds the string column directly (about 2x faster than pandas' checks);
    # anything it refuses takes the slow path: numbers become their text, containers
    # become missing (and are counted).
    try:
        return pd.Series(pd.array(pa.array(values, pa.large_string()), dtype=STRING_DTYPE))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    out: list[Any] = []
    for v in values:
        if v is None or isinstance(v, str):
            out.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))
        else:
            out.append(None)
            bad[0] += 1
    return pd.Series(out, dtype=STRING_DTYPE)


def _times(values: list[Any], bad: list[int]) -> pd.Series:
    # Arrow's ISO 8601 cast is 5-10x faster than pandas' parser and agrees with it on
    # what both accept. Fractions finer than microseconds (RFC 3339 allows nine digits)
    # are cut to six first, as pandas' conversion to microseconds does. Arrow refuses
    # the rest (dates alone, no offset, empty strings), which pandas parses; a value
    # neither understands becomes NaT and is counted.
    try:
        text = pa.array(values, pa.string())
        try:
            parsed = pc.cast(text, pa.timestamp("us", "UTC"))
        except pa.ArrowInvalid:
            parsed = pc.cast(pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1"),
                             pa.timestamp("us", "UTC"))
        return pd.Series(parsed.to_pandas(), dtype=TIME_DTYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    if all(v is None or v.__class__ is str for v in values):
        try:
            return pd.to_datetime(pd.Series(values, dtype=object), utc=True,
                                  format="ISO8601").astype(TIME_DTYPE)
        except (ValueError, TypeError, OverflowError):
            pass
    out: list[Any] = []
    for v in values:
        stamp = pd.NaT
        if isinstance(v, str):
            try:
                stamp = pd.Timestamp(v)
                stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else \
                    stamp.tz_convert("UTC")
            except (ValueError, TypeError, OverflowError):
                stamp = pd.NaT
        if stamp is pd.NaT and v is not None:
            bad[0] += 1
        out.append(stamp)
    # tz given: a column of nothing but NaT would otherwise be naive, and refused
    return pd.Series(pd.DatetimeIndex(out, tz="UTC").as_unit("us"), dtype=TIME_DTYPE)


def _ints(values: list[Any], bad: list[int]) -> pd.Series:
    try:
        return pd.Series(pd.array(values, dtype="Int64"))
    except (TypeError, ValueError, OverflowError):
        pass
    out: list[Any] = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        elif isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and -2**63 < v < 2**63:
            out.append(v)
        else:
            if v is not None:
                bad[0] += 1
            out.append(None)
    return pd.Series(pd.array(out, dtype="Int64"))


def _statuses(values: list[Any], bad: list[int]) -> pd.Series:
    dtype = status_dtype({v for v in values if isinstance(v, str)})
    code = {name: i for i, name in enumerate(dtype.categories)}
    codes = np.fromiter((code.get(v, -1) if v.__class__ is str else -1 for v in values),
                        dtype=np.int16, count=len(values))
    bad[0] += sum(1 for v in values if v is not None and v.__class__ is not str)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype))


def convert(values: list[Any], kind: str, *, name: str = "",
            coerced: Coerced | None = None) -> Any:
    """Convert one column's raw JSON values to its dtype.

    Values that are not of the column's kind (a date that is no date, a container
    where a string belongs, a number no int64 holds) become missing; with ``coerced``,
    their count is added under ``name``. Never raises on what a server sends.
    """
    bad = [0]
    if kind == "str":
        out = _strings(values, bad)
    elif kind == "time":
        out = _times(values, bad)
    elif kind == "int":
        out = _ints(values, bad)
    elif kind == "status":
        out = _statuses(values, bad)
    else:
        out = pd.Series(values, dtype=object)
    if bad[0] and coerced is not None:
        coerced[name] = coerced.get(name, 0) + bad[0]
    return out


def build_frame(columns: Mapping[str, list[Any]], schema: Mapping[str, str],
                extra: Mapping[str, list[Any]] | None = None) -> pd.DataFrame:
    """Build a frame from column lists; known columns typed, extra ones after them.

    Every list must have the same length; a known column that is absent from
    ``columns`` is filled with missing values.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    data: dict[str, Any] = {}
    for name, kind in schema.items():
        values = columns.get(name)
        data[name] = convert(values if values is not None else [None] * n, kind)
    for name in sorted(extra or {}):
        if name not in data:
            data[name] = pd.Series((extra or {})[name])
    return pd.DataFrame(data, index=pd.RangeIndex(n))


class Collector:
    """Accumulates rows column by column, dropping repeated ids."""

    def __init__(self, schema: dict[str, str], shared: frozenset[str] = frozenset()) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {c: [] for c in schema}
        self.extra: dict[str, list[Any]] = {}
        self.ids: set[str] = set()
        self.duplicates = 0
        self.skipped = 0
        self.coerced: dict[str, int] = {}
        self.rows = 0
        self._shared: dict[str, dict[Any, Any]] = {c: {} for c in schema if c in shared}
        self._getter = itemgetter(*schema) if len(schema) > 1 else None

    def count_new(self, page: Page) -> int:
        """Rows of ``page`` not received before. Rows without an id (or not objects)
        cannot show progress, so they do not count: a server sending only those cannot
        keep a listing going."""
        ids = self.ids
        return sum(1 for r in page if isinstance(r, dict) and isinstance(r.get("id"), str)
                   and r["id"] not in ids)

    def add(self, page: Page) -> None:
        """Append a page's rows, column by column (much cheaper than row by row)."""
        rows = page if all(isinstance(r, dict) for r in page) else \
            [r for r in page if isinstance(r, dict)]
        self.skipped += len(page) - len(rows)
        ids = [r.get("id") for r in rows]
        if not all(i.__class__ is str for i in ids):  # ids that cannot be compared
            ids = [i if isinstance(i, str) else None for i in ids]
        present = [i for i in ids if i is not None]
        if not self.ids.isdisjoint(present) or len(set(present)) != len(present):
            rows, ids = self._drop_repeats(rows, ids)
        self.ids.update(i for i in ids if i is not None)
        if not rows:
            return
        by_column = self._columns_of(rows)
        for name, values in self.columns.items():
            column = by_column[name] if by_column is not None else [r.get(name) for r in rows]
            shared = self._shared.get(name)
            if shared is None:
                values.extend(column)
            else:
                keep = shared.setdefault
                values.extend([keep(v, v) if v.__class__ is str else v for v in column])
        if by_column is None:
            extra = set().union(*rows) - self.schema.keys()
            for name in extra:
                self.extra.setdefault(name, [None] * self.rows)
        for name, values in self.extra.items():
            values.extend([r.get(name) for r in rows])
        self.rows += len(rows)

    def notes(self) -> list[str]:
        """What was wrong with the rows themselves, in words."""
        out = [f"{name}: {n} value(s) the API should not send (not a {self.schema[name]}) "
               "were set to missing" for name, n in sorted(self.coerced.items())]
        if self.skipped:
            out.append(f"{self.skipped} row(s) that were not JSON objects were skipped")
        return out

    def _columns_of(self, rows: Page) -> dict[str, tuple[Any, ...]] | None:
        """The page's columns when every row has exactly the schema's keys, else None.

        The common case, done with one ``itemgetter`` per row and a transpose: 40% less
        work than a ``.get`` per column and row. Rows of that length holding every schema
        key cannot carry unknown fields, so the extra-field scan is skipped too.
        """
        width = len(self.schema)
        if self._getter is None or any(len(r) != width for r in rows):
            return None
        try:
            return dict(zip(self.schema, zip(*map(self._getter, rows), strict=True),
                            strict=True))
        except KeyError:
            return None

    def _drop_repeats(self, rows: Page, ids: list[Any]) -> tuple[Page, list[Any]]:
        seen = set(self.ids)
        kept, kept_ids = [], []
        for row, rid in zip(rows, ids, strict=True):
            if rid is not None:
                if rid in seen:
                    self.duplicates += 1
                    continue
                seen.add(rid)
            kept.append(row)
            kept_ids.append(rid)
        return kept, kept_ids

    def frame(self, order: Sequence[str] = (), needs: Sequence[str] = (),
              select: Callable[[Mapping[str, pd.Series]], Any] | None = None) -> pd.DataFrame:
        """Build the frame once: typed, filtered by ``select``, sorted by ``order``.

        ``select`` receives the converted ``order`` and ``needs`` columns and returns a
        boolean mask (or None for all rows). Each raw list is released as soon as its
        column is converted, and rows are reordered column by column, so the peak holds
        the raw lists plus about one column, never two copies of the frame. The
        collector is consumed.
        """
        keys = {c: convert(self.columns.pop(c), self.schema[c], name=c, coerced=self.coerced)
                for c in dict.fromkeys([*order, *needs])}
        rows = np.arange(self.rows)
        if select is not None:
            mask = select(keys)
            if mask is not None:
                rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        if order:
            first = keys[order[0]].iloc[rows]
            # Listings usually arrive in order (or in reverse): check before sorting.
            if first.is_unique and first.notna().all() and first.is_monotonic_increasing:
                pass
            elif first.is_unique and first.notna().all() and first.is_monotonic_decreasing:
                rows = rows[::-1]
            else:
                # Arrow's multi-key sort is stable and 3x faster than sort_values here.
                sub = pa.table({c: pa.array(keys[c].iloc[rows]) for c in order})
                # (nulls last: Arrow's default)
                positions = pc.sort_indices(sub, sort_keys=[(c, "ascending") for c in order])
                rows = rows[positions.to_numpy()]
        identity = len(rows) == self.rows and bool((rows == np.arange(self.rows)).all())
        data: dict[str, pd.Series] = {}
        for name, kind in self.schema.items():
            col = keys.pop(name, None)
            if col is None:
                col = convert(self.columns.pop(name), kind, name=name, coerced=self.coerced)
            data[name] = col if identity else col.take(rows).reset_index(drop=True)
            del col
        for name in sorted(self.extra):
            col = pd.Series(self.extra.pop(name))
            data[name] = col if identity else col.take(rows).reset_index(drop=True)
        return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a listing is parsed and collected.

    Decoding pages and keeping their values creates many container objects (the
    ``messages`` lists, for one) and no reference cycles, yet the growing heap makes the
    collector re-scan everything older several times: 0.05-0.2 s per 100k rows in a
    busy process. Reference counting still frees everything as usual; the collector is
    switched back on afterwards (unless it was already off), and catches up on its own.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def frame_from_arrow(table: pa.Table, schema: Mapping[str, str],
                     json_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The frame a loader would build, from an Arrow table of stored rows.

    Known columns get the schema's dtypes (missing ones are filled), ``json_columns``
    (lists and objects kept as JSON text) are decoded, extra columns follow in name
    order. Equal JSON texts are decoded once and copied: a million events hold a few
    thousand distinct metadata objects.
    """
    n = table.num_rows
    data: dict[str, Any] = {}
    names = set(table.column_names)
    for name, kind in schema.items():
        if name not in names:
            data[name] = convert([None] * n, kind)
            continue
        col = table.column(name)
        if name in json_columns:
            data[name] = pd.Series(_json_values(col), dtype=object)
        elif kind == "str":
            data[name] = pd.Series(pd.array(col.cast(pa.large_string()), dtype=STRING_DTYPE))
        elif kind == "time":
            data[name] = pd.Series(col.cast(pa.timestamp("us", "UTC")).to_pandas(),
                                   dtype=TIME_DTYPE)
        elif kind == "int":
            data[name] = pd.Series(pd.array(col.to_pylist(), dtype="Int64"))
        elif kind == "status":
            values = col.to_pandas()
            data[name] = pd.Series(pd.Categorical(
                values, dtype=status_dtype(v for v in values.dropna().unique())))
        else:
            data[name] = pd.Series(col.to_pylist(), dtype=object)
    for name in sorted(names - schema.keys()):
        col = table.column(name)
        data[name] = pd.Series(_json_values(col), dtype=object) if name in json_columns \
            else col.to_pandas()
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _json_values(col: pa.ChunkedArray) -> list[Any]:
    """Decode a column of JSON texts, each distinct text once (Arrow's dictionary
    encoding finds them), every row getting its own copy, as from an API listing."""
    import copy
    import json

    encoded = pc.dictionary_encode(col).combine_chunks()
    makers: list[Callable[[], Any]] = []
    for text in encoded.dictionary.to_pylist():
        value = json.loads(text)
        flat = isinstance(value, (dict, list)) and not any(
            isinstance(v, (dict, list)) for v in (value.values() if isinstance(value, dict)
                                                   else value))
        makers.append(value.copy if flat else functools.partial(copy.deepcopy, value))
    makers.append(lambda: None)  # index -1: a missing value
    return [makers[i]() for i in encoded.indices.fill_null(-1).to_numpy().tolist()]
