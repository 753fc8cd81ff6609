"""Text from the fleet is data: shown as text on a terminal, kept inert in a spreadsheet.

Event messages, instance, app and service names, and error messages that quote the
server are written by whoever controls the fleet or the API. Two places would otherwise
run them:

* a terminal runs escape sequences (clear the screen, move the cursor, set the title,
  write the clipboard with OSC 52, hide a link with OSC 8) and bare carriage returns and
  backspaces overwrite what was printed. :func:`visible` writes every control character
  the way Python's ``repr`` does (``\\x1b``, ``\\r``, ``\\x9b``, ``\\u202e``), so the
  sequence is shown and never acted on;
* a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some,
  a tab or a carriage return) as a formula. :func:`csv_escape` prefixes such text cells
  with ``'`` (OWASP's advice for CSV injection); :func:`csv_unescape` takes it off again.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FORMULA_START", "csv_escape", "csv_unescape", "escape_cell", "unescape_cell",
           "visible", "write_csv"]

# C0 controls but tab, DEL, the C1 controls (U+0080-U+009F, which many terminals take
# as one-byte ESC sequences: U+009B is CSI), the bidirectional overrides and isolates
# (they reorder what is shown), the line and paragraph separators, and lone surrogates
# (which cannot even be encoded for output).
_SPECIAL = ("\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
            "\u2066-\u2069\ud800-\udfff")
_CONTROL_KEEP_NEWLINE = re.compile(f"[{_SPECIAL}]")
_CONTROL = re.compile(f"[\n{_SPECIAL}]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _shown(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, *, newlines: bool = True) -> str:
    """Make control characters in ``text`` visible, so a terminal shows them as text.

    Each control character becomes what Python's ``repr`` writes for it: ESC is the
    four characters ``\\x1b``, a carriage return ``\\r``, the C1 CSI ``\\x9b``, a
    right-to-left override ``\\u202e``. Printable text, tabs and letters of any script
    are kept as they are. The result is for reading: a backslash already in ``text`` is
    not doubled, so it cannot be turned back into the original.

    Parameters
    ----------
    text
        What to show (anything else is shown as ``str(text)``).
    newlines
        Keep line feeds (for text whose lines we print as lines); ``False`` writes them
        as ``\\n`` too, so a one-line field (a name, an error) stays one line.

    Returns
    -------
    str

    Examples
    --------
    >>> print(visible("\\x1b]0;owned\\x07build failed\\r\\n"))
    \\x1b]0;owned\\x07build failed\\r
    <BLANKLINE>
    >>> visible("café 中\\tok\\nnext", newlines=False)
    'café 中\\tok\\\\nnext'
    """
    text = text if isinstance(text, str) else str(text)
    pattern = _CONTROL_KEEP_NEWLINE if newlines else _CONTROL
    if pattern.search(text) is None:  # the usual case: nothing to rewrite
        return text
    return pattern.sub(_shown, text)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP's list)."""
_ESCAPE_START = (*FORMULA_START, "'")


def escape_cell(value: Any) -> Any:
    """Prefix a text cell a spreadsheet would run with ``'``; leave anything else alone.

    Text that already starts with ``'`` is prefixed too, so that :func:`unescape_cell`
    can take exactly one ``'`` off every text cell that starts with one.

    Examples
    --------
    >>> escape_cell("=1+1"), escape_cell("'=1+1"), escape_cell("ok"), escape_cell(-2)
    ("'=1+1", "''=1+1", 'ok', -2)
    """
    if isinstance(value, str) and value.startswith(_ESCAPE_START):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """Undo :func:`escape_cell`.

    Examples
    --------
    >>> unescape_cell("'=1+1"), unescape_cell("''=1+1"), unescape_cell("ok")
    ('=1+1', "'=1+1", 'ok')
    """
    if isinstance(value, str) and value.startswith("'"):
        return value[1:]
    return value


def _starting(s: pd.Series, starts: tuple[str, ...]) -> np.ndarray:
    """Mark the cells of a text column that are strings starting with one of ``starts``
    (a cell that is not a str, in an object column, never is)."""
    try:
        hit = s.str.startswith(starts, na=False)
    except (AttributeError, TypeError):  # an object column holding no text at all
        return np.zeros(len(s), dtype=bool)
    out: np.ndarray = hit.to_numpy(dtype=bool, na_value=False)
    return out


def _map_text(df: pd.DataFrame, starts: tuple[str, ...], cell: Any) -> pd.DataFrame:
    out = df.copy()
    for k in range(df.shape[1]):
        s = df.iloc[:, k]
        if isinstance(s.dtype, pd.CategoricalDtype):
            categories = s.cat.categories
            if categories.dtype == object or pd.api.types.is_string_dtype(categories):
                mapped = [cell(c) for c in categories]
                if mapped != list(categories):
                    out.isetitem(k, s.cat.rename_categories(mapped))
        elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            # Numbers stay numbers: only text columns, and in them only str cells.
            hit = _starting(s, starts)
            if hit.any():
                changed = s.copy()
                changed[hit] = [cell(v) for v in s[hit]]
                out.isetitem(k, changed)
    names = [cell(c) for c in df.columns]
    if names != list(df.columns):  # headers can be field names the API added
        out.columns = pd.Index(names, dtype=df.columns.dtype, name=df.columns.name)
    out.attrs = dict(df.attrs)
    return out


def csv_escape(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose text cells and column names are safe to open in a
    spreadsheet (see :func:`escape_cell`).

    Only text columns change (object, string, and categoricals of text): a number,
    negative or not, is never prefixed. Use it on a frame just before ``to_csv``;
    :func:`csv_unescape` on the frame ``read_csv`` gives back restores the text.

    Examples
    --------
    >>> df = pd.DataFrame({"message": ["=HYPERLINK(\\"http://x\\")", "ok"], "n": [-2, 3]})
    >>> csv_escape(df)["message"].tolist(), csv_escape(df)["n"].tolist()
    (['\\'=HYPERLINK("http://x")', 'ok'], [-2, 3])
    """
    return _map_text(df, _ESCAPE_START, escape_cell)


def csv_unescape(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`csv_escape` on a frame read back from CSV (text columns only).

    Examples
    --------
    >>> df = pd.DataFrame({"message": ["=x", "'y", "z"]})
    >>> csv_unescape(csv_escape(df)).equals(df)
    True
    """
    return _map_text(df, ("'",), unescape_cell)


def write_csv(df: pd.DataFrame, path: str | Path, *, safe: bool = True) -> Path:
    """Write ``df`` to CSV as the toolkit does: text cells quoted, formulas defused.

    Every text cell is quoted, so a carriage return inside one (progress bars in
    command output) stays in its cell: unquoted, readers take it for the end of the
    row. With ``safe`` (the default) the text goes through :func:`csv_escape` first.

    Parameters
    ----------
    df
        The frame; its index is not written.
    path
        Where to write.
    safe
        ``False`` writes text exactly as it is, for programs (not people with a
        spreadsheet) that read the file.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> print(write_csv(pd.DataFrame({"cell": ["=1+1"], "n": [-2]}), path).read_text())
    "cell","n"
    "'=1+1",-2
    <BLANKLINE>
    """
    path = Path(path)
    (csv_escape(df) if safe else df).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return path
