"""One redaction step for every captured output: secrets never leave the instance in
the clear.

Applied to command output before it is stored anywhere (the :class:`ExecResult`, and
through it transcripts, Markdown, snapshots and reports; the widget's cells line by
line). What becomes ``[redacted]``:

* values of variables whose names look secret (``*TOKEN*``, ``*SECRET*``,
  ``*PASSWORD*``, ``*_KEY``, ``*CREDENTIAL*``...: a whole word of the name, so that
  ``KEYBOARD_LAYOUT`` stays), in ``NAME=value``, ``export NAME=value`` and
  ``NAME: value`` forms;
* bearer tokens (``Authorization: Bearer ...``);
* private keys (PEM blocks, from ``BEGIN ... PRIVATE KEY`` to its ``END``);
* passwords in URLs (``postgres://user:[redacted]@host/db``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

REDACTED = "[redacted]"

SECRET_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "KEY",
    "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "HTPASSWD", "PRIVATE", "DSN", "COOKIE",
    "SIGNATURE", "SALT", "CERT"})
"""A variable is secret when one of the words of its name (split on ``_``, ``-`` or
``.``) is one of these."""

_ASSIGNMENT = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>.+?)(?P<end>\s*)$", re.MULTILINE)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)"
                           r"(?P<password>[^\s@/]+)(?P<at>@)")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*-----",
                  re.DOTALL)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*-----")
_MARKS = (b"=", b":", b"earer", b"EARER", b"PRIVATE KEY")
"""Every built-in rule needs one of these (assignments and URLs an ``=`` or ``:``,
bearer tokens the word, keys their armour): output with none is left as it is."""


def is_secret_name(name: str) -> bool:
    """True when a variable name looks like it holds a secret."""
    words = re.split(r"[_.\-]", name.upper())
    return any(w in SECRET_WORDS for w in words) or name.upper().endswith(
        ("PASSWORD", "SECRET", "TOKEN", "APIKEY"))


@dataclass(frozen=True)
class Redactor:
    """Redacts secrets from text; ``enabled=False`` turns it off (and says so).

    Parameters
    ----------
    patterns
        Extra regular expressions whose whole matches are redacted.
    enabled
        False keeps output as it came (the transcript records that it was off).

    Examples
    --------
    >>> text, n = Redactor().redact("API_TOKEN=abc123\\nKEYBOARD_LAYOUT=us\\n")
    >>> print(text, n)
    API_TOKEN=[redacted]
    KEYBOARD_LAYOUT=us
     1
    """

    patterns: tuple[str, ...] = ()
    enabled: bool = True
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False,
                                                   default=())

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str) or not isinstance(self.patterns, Iterable):
            raise TypeError("patterns must be a sequence of regular expressions")
        compiled = []
        for p in self.patterns:
            try:
                compiled.append(re.compile(p))
            except (re.error, TypeError) as exc:
                raise ValueError(f"patterns: {p!r} is not a regular expression: "
                                 f"{exc}") from None
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def redact(self, text: str) -> tuple[str, int]:
        """``(text with secrets replaced, how many were)``."""
        if not self.enabled or not text:
            return text, 0
        count = 0

        def sub(pattern: re.Pattern[str], repl: object, s: str) -> str:
            nonlocal count
            s, n = pattern.subn(repl, s)  # type: ignore[call-overload]
            count += n
            return s

        # Each rule runs only where its literal could be: a 64 MB dump without one costs
        # a substring search, not a regular expression over every byte.
        if "PRIVATE KEY-----" in text:
            text = sub(_PEM, REDACTED, text)
        if "earer" in text or "EARER" in text:
            text = sub(_BEARER, lambda m: m.group(1) + REDACTED, text)
        if "://" in text and "@" in text:
            text = sub(_URL_PASSWORD, lambda m: m.group("head") + REDACTED + m.group("at"),
                       text)

        def assignment(m: re.Match[str]) -> str:
            nonlocal count
            if not is_secret_name(m.group("name")) or m.group("value") == REDACTED \
                    or REDACTED in m.group("value"):
                return m.group(0)
            count += 1
            return m.group("lead") + m.group("name") + m.group("sep") + REDACTED + \
                m.group("end")

        if "=" in text or ":" in text:
            text = _ASSIGNMENT.sub(assignment, text)
        for pattern in self._compiled:
            text = sub(pattern, REDACTED, text)
        return text, count

    def redact_bytes(self, data: bytes) -> tuple[bytes, int]:
        """The same on bytes; bytes that are not UTF-8 pass through unchanged."""
        if not self.enabled or not data:
            return data, 0
        if not self._compiled and not any(mark in data for mark in _MARKS):
            return data, 0  # nothing any rule could match: no decoding at all
        text, n = self.redact(data.decode("utf-8", "surrogateescape"))
        return (text.encode("utf-8", "surrogateescape"), n) if n else (data, 0)


class LineRedactor:
    """Redacts a stream line by line, for output shown as it arrives.

    Remembers whether it is inside a private key block, which spans lines.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.in_key = False
        self.count = 0

    def line(self, text: str) -> str:
        if not self.redactor.enabled:
            return text
        if self.in_key:
            if _PEM_END.search(text):
                self.in_key = False
            return ""
        if _PEM_BEGIN.search(text) and not _PEM_END.search(text):
            self.in_key = True
            self.count += 1
            return REDACTED + ("\n" if text.endswith("\n") else "")
        out, n = self.redactor.redact(text)
        self.count += n
        return out


DEFAULT_REDACTOR = Redactor()
