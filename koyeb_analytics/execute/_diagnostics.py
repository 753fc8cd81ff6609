"""Exec output as data: fleet diagnostics parsed into one DataFrame.

:func:`exec_table` runs a command on many instances (through
:func:`~koyeb_analytics.exec_many`, secrets redacted) and parses each output with
``jc``, a well-kept library of parsers for ``ps``, ``df``, ``free``, ``uptime``,
``/proc`` files, ``env``, ``ss`` and more, into rows: one frame for the fleet, with the
instance beside every row. :func:`diagnostics` lists the named ones.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..api._client import KoyebClient
from ..redact import Redactor
from ._fanout import check_command, instance_targets, run_each
from ._run import DEFAULT_MAX_OUTPUT, ExecResult
from ._tables import COLUMN_PARSERS

__all__ = ["DIAGNOSTICS", "PARSERS", "Diagnostic", "diagnostics", "exec_table",
           "parse_output", "parser_for", "whole_lines"]

PARSERS: dict[str, str] = {
    "ps": "ps", "df": "df", "free": "free", "uptime": "uptime", "env": "env",
    "printenv": "env", "ss": "ss", "netstat": "netstat", "ls": "ls", "mount": "mount",
    "du": "du", "top": "top", "w": "w", "id": "id", "uname": "uname", "date": "date",
    "lsblk": "lsblk", "vmstat": "vmstat", "iostat": "iostat",
}
"""Command (first word) to the ``jc`` parser that reads its output; ``cat /proc/...`` is
read by the ``proc`` parser."""


@dataclass(frozen=True)
class Diagnostic:
    """A named diagnostic: a command, the parser of its output, what it tells.

    Parameters
    ----------
    command, parser, description
        What runs, the ``jc`` parser that reads it, and one line about it.
    kib
        Columns in KiB, turned into bytes (``"*"``: every numeric one).
    durations, seconds
        Columns of ``[D-]HH:MM:SS`` text, or of seconds, turned into Timedeltas.

    Examples
    --------
    >>> DIAGNOSTICS["disk"].parser
    'df'
    """

    command: str
    parser: str
    description: str
    kib: tuple[str, ...] = ()
    durations: tuple[str, ...] = ()
    seconds: tuple[str, ...] = ()


DIAGNOSTICS: dict[str, Diagnostic] = {
    "processes": Diagnostic("ps aux", "ps", "running processes, with CPU and memory",
                            kib=("vsz", "rss"), durations=("time",)),
    "disk": Diagnostic("df -k", "df", "file systems: size, used and available",
                       kib=("1k_blocks", "used", "available")),
    "memory": Diagnostic("free -b", "free", "memory and swap, in bytes"),
    "meminfo": Diagnostic("cat /proc/meminfo", "proc", "the kernel's memory counters",
                          kib=("*",)),
    "load": Diagnostic("cat /proc/loadavg", "proc", "load averages and running tasks"),
    "uptime": Diagnostic("uptime", "uptime", "time since boot, users, load",
                         seconds=("uptime_total_seconds",)),
    "sockets": Diagnostic("cat /proc/net/tcp", "proc", "TCP sockets and their states"),
    "environment": Diagnostic("env", "env", "environment variables (secret values "
                                            "redacted)"),
}
"""The catalogue :func:`exec_table` runs by name."""


def diagnostics() -> pd.DataFrame:
    """The catalogue of named diagnostics.

    Returns
    -------
    DataFrame
        ``name, command, parser, description``.

    Examples
    --------
    >>> "processes" in set(diagnostics()["name"])
    True
    """
    return pd.DataFrame([{"name": n, "command": d.command, "parser": d.parser,
                          "description": d.description} for n, d in DIAGNOSTICS.items()])


def parser_for(command: str | Sequence[str], parser: str | None = None) -> Diagnostic | None:
    """How the output of ``command`` is read, or None when no parser is known.

    Examples
    --------
    >>> parser_for("ps aux").parser, parser_for("frobnicate") is None
    ('ps', True)
    """
    try:
        return _choose(command, parser)[1]
    except ValueError:
        return None


def parse_output(text: str, diagnostic: Diagnostic) -> pd.DataFrame:
    """One instance's output as rows, typed as :func:`exec_table` types them.

    Raises ``ValueError`` when the output does not parse.

    Examples
    --------
    >>> parse_output("a=1\\nb=2\\n", parser_for("env"))["name"].tolist()
    ['a', 'b']
    """
    return _typed(pd.DataFrame(_parse(text, diagnostic)), diagnostic.kib, diagnostic)


def whole_lines(result: ExecResult) -> str:
    """A run's stdout as text to parse: without the lines cut by a dropped middle.

    When ``max_output`` dropped the middle of the output, the line the head ends in
    and the line the tail begins with are each only part of a line, and they are not
    one line together: both are left out, and the head's whole lines are followed by
    the tail's. Otherwise the whole stdout. Raises ``ValueError`` when the place of the
    cut is unknown (a redacted secret spans it).

    Examples
    --------
    >>> from koyeb_analytics.execute import ExecResult
    >>> r = ExecResult(None, ("seq",), stdout=b"1\\n2\\n3" + b"97\\n98\\n99\\n",
    ...                stdout_dropped=9, stdout_cut=5)
    >>> whole_lines(r)
    '1\\n2\\n98\\n99\\n'
    """
    if not result.stdout_dropped:
        return result.stdout_text
    if result.stdout_cut is None:
        raise ValueError(f"the output passed max_output and {result.stdout_dropped} bytes "
                         "were dropped where a redacted secret hides the cut; pass a "
                         "larger max_output=")
    head, tail = result.stdout[:result.stdout_cut], result.stdout[result.stdout_cut:]
    head = head[:head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1:] if b"\n" in tail else b""
    return (head + tail).decode("utf-8", "replace")


def _part_or_reason(res: ExecResult, diagnostic: Diagnostic, base: dict[str, Any],
                    ) -> tuple[dict[str, list[Any]], int] | str:
    """A run's output as columns (``base`` beside every row), or why it gave none
    (failed, timed out, did not parse)."""
    if res.error is not None:
        return res.error
    if res.timed_out:
        return "timed out"
    if not res.ok:
        return f"{res.status}: {res.stderr_text.strip()[:200]}"
    try:
        text = whole_lines(res)
        fast = _fast_columns(text, diagnostic, base)
        if fast is not None:
            return fast
        rows = _parse(text, diagnostic)
    except ValueError as exc:
        return str(exc)
    return _columns([{**base, **r} for r in rows])


def _parse(text: str, diagnostic: Diagnostic) -> list[dict[str, Any]]:
    import jc

    try:
        return _rows(jc.parse(diagnostic.parser, text, quiet=True))
    except Exception as exc:  # noqa: BLE001 - any parser failure is a parse failure
        raise ValueError(f"output did not parse with {diagnostic.parser}: "
                         f"{type(exc).__name__}") from None


def _fast_columns(text: str, diagnostic: Diagnostic, base: dict[str, Any],
                  ) -> tuple[dict[str, list[Any]], int] | None:
    """What ``_columns`` of the parsed rows (``base`` first) gives, when a reader of
    :data:`~koyeb_analytics.execute._tables.COLUMN_PARSERS` reads the output; else None."""
    known = COLUMN_PARSERS.get(diagnostic.parser)
    if known is None:
        return None
    version, read = known
    import jc

    if jc.get_parser(diagnostic.parser).info.version != version:
        return None  # another jc reads it its own way
    try:
        columns = read(text)
    except Exception as exc:  # noqa: BLE001 - as _parse: any failure is a parse failure
        raise ValueError(f"output did not parse with {diagnostic.parser}: "
                         f"{type(exc).__name__}") from None
    if columns is None or columns.keys() & base.keys():
        return None
    n = len(next(iter(columns.values())))
    if not n:
        return {}, 0
    return {**{k: [v] * n for k, v in base.items()}, **columns}, n


def _choose(command: str | Sequence[str], parser: str | None) -> tuple[Any, Diagnostic]:
    """The command to run and how to read it."""
    if isinstance(command, str) and command in DIAGNOSTICS and parser is None:
        d = DIAGNOSTICS[command]
        return d.command, d
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("command is empty")
    if parser is None:
        first = argv[0].rsplit("/", 1)[-1]
        if first == "cat" and len(argv) == 2 and argv[1].startswith("/proc/"):
            parser = "proc"
        else:
            parser = PARSERS.get(first)
        if parser is None:
            raise ValueError(
                f"no parser known for {first!r}: pass parser= (a jc parser name) or use "
                f"one of {', '.join(sorted(PARSERS))}, 'cat /proc/...', or a named "
                f"diagnostic ({', '.join(DIAGNOSTICS)})")
    import jc

    if parser not in jc.parser_mod_list() and parser.replace("-", "_") not in {
            p.replace("-", "_") for p in jc.parser_mod_list()}:
        raise ValueError(f"parser={parser!r} is not a jc parser")
    return command, Diagnostic(" ".join(argv), parser, "")


def _columns(rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], int]:
    """Rows as columns, named in the order they first appear, NaN where a row has none."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {k: [row.get(k, np.nan) for row in rows] for k in names}, len(rows)


def _frame(parts: list[tuple[dict[str, list[Any]], int]]) -> pd.DataFrame:
    """The frame of the rows of every part, in order: ``pd.DataFrame(rows)``, built from
    columns (cheaper than from one dict per row)."""
    columns: dict[str, list[Any]] = {}
    n = 0
    for cols, size in parts:
        if not size:
            continue
        for name in columns.keys() - cols.keys():
            columns[name].extend([np.nan] * size)
        for name, values in cols.items():
            if name not in columns:
                columns[name] = [np.nan] * n
            columns[name].extend(values)
        n += size
    return pd.DataFrame(columns)


def _rows(parsed: Any) -> list[dict[str, Any]]:
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list) and all(isinstance(r, dict) for r in parsed):
        return parsed
    raise ValueError(f"the parser returned {type(parsed).__name__}, not rows")


def _duration(text: Any) -> pd.Timedelta:
    """``[D-][HH:]MM:SS`` (as ``ps`` writes CPU time) as a Timedelta."""
    if not isinstance(text, str):
        return pd.NaT
    days, _, clock = text.rpartition("-")
    # ASCII digits only: "²".isdigit() is true, and int("²") fails.
    parts = [int(p) for p in clock.split(":") if p.isascii() and p.isdigit()]
    if not parts or len(parts) != len(clock.split(":")) or len(parts) > 3:
        return pd.NaT
    while len(parts) < 3:
        parts.insert(0, 0)
    try:
        return pd.Timedelta(days=int(days) if days.isascii() and days.isdigit() else 0,
                            hours=parts[0], minutes=parts[1], seconds=parts[2]).as_unit("ns")
    except (OverflowError, ValueError):  # more time than a column of Timedeltas holds
        return pd.NaT


def _typed(df: pd.DataFrame, kib: Iterable[str], diagnostic: Diagnostic | None = None,
           ) -> pd.DataFrame:
    kib = list(kib)
    if diagnostic is not None:
        for col in diagnostic.durations:
            if col in df:
                # A few distinct values (``0:00``, ``0:01``...) over many rows: each
                # distinct one is read once.
                codes, uniques = pd.factorize(df[col])  # a missing value's code is -1
                read = np.array([*map(_duration, uniques), pd.NaT], dtype=object)
                df[col] = pd.to_timedelta(read[codes])
        for col in diagnostic.seconds:
            if col in df:
                df[col.removesuffix("_total_seconds") or col] = pd.to_timedelta(
                    pd.to_numeric(df[col], errors="coerce"), unit="s")
    for col in list(df.columns):
        if col in ("instance_id", "service_id", "region") or \
                pd.api.types.is_timedelta64_dtype(df[col]):
            continue
        if df[col].dtype == object:
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError):
                pass
        if (col in kib or "*" in kib) and pd.api.types.is_numeric_dtype(df[col]):
            name = "bytes" if col == "1k_blocks" else f"{col}_bytes"
            df[name] = df[col] * 1024
            if name != col:
                del df[col]  # in place: a drop would copy every other column
    return df


def exec_table(client: KoyebClient, command: str | Sequence[str], *,
               instances: pd.DataFrame | Iterable[str], parser: str | None = None,
               timeout: float | None = 30, concurrency: int = 8,
               redact: Redactor | bool = True,
               max_output: int = DEFAULT_MAX_OUTPUT) -> pd.DataFrame:
    """Run a diagnostic on each instance and parse every output into one frame.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    command
        A named diagnostic (see :func:`diagnostics`: ``"processes"``, ``"disk"``...),
        or a command whose first word names its parser (``"ps aux"``, ``"df -k"``,
        ``"cat /proc/meminfo"``).
    instances
        A frame from :func:`~koyeb_analytics.load_instances`, or instance ids.
    parser
        A ``jc`` parser name, to force one.
    timeout, concurrency, redact, max_output
        As for :func:`~koyeb_analytics.exec_many` (secrets are redacted before parsing).
        An output longer than ``max_output`` keeps its head and tail: only their whole
        lines are parsed (see :func:`whole_lines`), and a ``UserWarning`` says how many
        bytes were dropped.

    Returns
    -------
    DataFrame
        ``instance_id, service_id, region`` (and the instance frame's names, when it
        has them), then the parsed columns: numbers as numbers, KiB turned into bytes
        (``*_bytes``). Instances whose command failed or whose output did not parse
        are in ``attrs["failed"]`` with the reason; they never sink the others.
        ``attrs["truncated"]`` says whether any output passed ``max_output``;
        ``attrs["bytes_dropped"]`` and ``attrs["truncated_runs"]`` say how much, and
        from how many instances.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=1) as sim:
    ...     c = sim.client()
    ...     running = ka.load_instances(c, statuses="HEALTHY", progress=False).head(2)
    ...     mem = ka.exec_table(c, "memory", instances=running)
    >>> sorted(set(mem["type"])), bool((mem.loc[mem["type"] == "Mem", "total"] > 0).all())
    (['Mem', 'Swap'], True)
    >>> mem.attrs["truncated"], mem.attrs["bytes_dropped"]
    (False, 0)
    """
    check_command(command, "exec_table")
    to_run, diag = _choose(command, parser)
    extra = [c for c in ("app_name", "service_name") if isinstance(instances, pd.DataFrame)
             and c in instances]
    targets = instance_targets(instances, columns=("service_id", "region", *extra))

    base = ["instance_id", "service_id", "region", *extra]
    info_of = targets.set_index("instance_id")[base[1:]].to_dict("index")
    # Each output is parsed, and made columns, in the thread that ran it as soon as it
    # ended: that work overlaps with the instances still running instead of following
    # them all.
    outcome: dict[str | None, tuple[dict[str, list[Any]], int] | str] = {}

    def parse(res: ExecResult) -> None:
        outcome[res.instance_id] = _part_or_reason(
            res, diag, {"instance_id": res.instance_id, **info_of.get(res.instance_id, {})})

    _, results = run_each(client, to_run, instances=targets, timeout=timeout,
                          concurrency=concurrency, redact=redact, max_output=max_output,
                          fn="exec_table", then=parse)
    parts: list[tuple[dict[str, list[Any]], int]] = []
    failed: list[dict[str, str]] = []
    for res in results:
        part = outcome[res.instance_id]
        if isinstance(part, str):
            failed.append({"instance_id": str(res.instance_id), "reason": part})
        else:
            parts.append(part)
    # One frame, typed once: cheaper than a frame per instance.
    df = _typed(_frame(parts), diag.kib, diag) if any(n for _, n in parts) else \
        pd.DataFrame(columns=base)
    cut = [r for r in results if r.stdout_dropped]
    dropped = sum(r.stdout_dropped for r in cut)
    df.attrs = {"command": to_run if isinstance(to_run, str) else list(to_run),
                "parser": diag.parser, "failed": failed, "truncated": bool(cut),
                "bytes_dropped": dropped, "truncated_runs": len(cut)}
    if cut:
        warnings.warn(
            f"exec_table: the output of {len(cut)} of {len(results)} instance(s) passed "
            f"max_output={max_output} bytes: {dropped} bytes from the middle were "
            "dropped, and with them the partial row on each side of each cut; the rows "
            "kept are whole (attrs['truncated']); pass a larger max_output= to keep "
            "every row", UserWarning, stacklevel=2)
    return df
