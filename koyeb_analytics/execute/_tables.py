"""Command output read a table at a time, as ``jc`` reads it a row at a time.

``ps aux`` on a fleet is thousands of rows, and ``jc`` builds a dict per row, then
converts its values one call at a time: the readers here split every line at once and
convert a column at once, giving the same values (``jc``'s own conversion for any value
they would not read exactly as it does), and leave to ``jc`` any output they do not
read as a plain table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_PS_INTS = frozenset({"pid", "ppid", "c", "vsz", "rss"})
_PS_FLOATS = frozenset({"cpu_percent", "mem_percent"})
_DECIMAL = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_DECIMALS = re.compile(rf"{_DECIMAL}(?:\n{_DECIMAL})*")


def _ps_ints(col: list[str], slow: Callable[[str], Any]) -> list[Any]:
    """jc's int conversion of a column: ASCII digits are what it leaves as they are
    (and short ones: int() of thousands of digits fails, and jc has its own way out)."""
    joined = "".join(col)  # fields are never empty: all digits when this is
    if joined.isascii() and joined.isdigit() and max(map(len, col)) < 19:
        return list(map(int, col))
    return [int(v) if v.isascii() and v.isdigit() and len(v) < 19 else slow(v) for v in col]


def _ps_floats(col: list[str], slow: Callable[[str], Any]) -> list[Any]:
    """jc's float conversion of a column: a decimal of ASCII digits is left as it is."""
    if _DECIMALS.fullmatch("\n".join(col)):
        return list(map(float, col))
    return [float(v) if _DECIMALS.fullmatch(v) else slow(v) for v in col]


def _ps_columns(text: str) -> dict[str, list[Any]] | None:
    """``ps`` output as jc's ``ps`` parser (1.7) reads it, as columns rather than one
    dict per row; None for output it reads otherwise than as a full table (a line
    with fewer fields, a blank line, a header it renames onto another), left to jc.

    jc's parser splits each line into as many fields as the header has (the last,
    the command, keeps its spaces), renames ``%cpu`` and ``%mem`` (moving them last),
    turns ``pid``, ``ppid``, ``c``, ``vsz``, ``rss`` into ints and the percentages into
    floats (dropping characters other than digits, ``-`` and ``.``), and a ``tty`` of
    ``?`` or ``??`` (``tt`` of ``??``) into None.
    """
    import jc.utils

    if not text or text.isspace():
        return None
    lines = text.splitlines()
    headers = lines[0].lower().split()
    renamed = {"%cpu": "cpu_percent", "%mem": "mem_percent"}
    if not headers or len(set(headers)) != len(headers) \
            or set(headers) & set(renamed.values()):
        return None
    width = len(headers)
    rows = [line.strip().split(None, width - 1) for line in lines[1:]]
    if any(len(r) != width for r in rows):
        return None
    values = list(zip(*rows, strict=True)) if rows else [()] * width
    columns = {h: list(v) for h, v in zip(headers, values, strict=True)}
    for old, new in renamed.items():
        if old in columns:
            columns[new] = columns.pop(old)
    for name, col in columns.items():
        if name in _PS_INTS:
            columns[name] = _ps_ints(col, jc.utils.convert_to_int)
        elif name in _PS_FLOATS:
            columns[name] = _ps_floats(col, jc.utils.convert_to_float)
    if "tty" in columns:
        columns["tty"] = [None if v in ("?", "??") else v for v in columns["tty"]]
    if "tt" in columns:
        columns["tt"] = [None if v == "??" else v for v in columns["tt"]]
    return columns


COLUMN_PARSERS: dict[str, tuple[str, Callable[[str], dict[str, list[Any]] | None]]] = {
    "ps": ("1.7", _ps_columns),
}
"""Parsers read here as jc's (of that version) read the same output, a table at a time
instead of a dict per row: ``ps aux`` on a fleet is thousands of rows."""
