"""One redaction step for every captured output: secrets never leave the instance in
the clear.

Applied to command output before it is stored anywhere (the :class:`ExecResult`, and
through it transcripts, Markdown, snapshots and reports; the widget's cells line by
line). What becomes ``[redacted]`` (``docs/redaction.md`` has an example of each, and
what is not caught):

* values of names that look secret (``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``,
  ``*_KEY``, ``*CREDENTIAL*``...: a whole word of the name, ``camelCase`` words too, so
  that ``KEYBOARD_LAYOUT`` stays), wherever such a name meets its value:
  ``NAME=value`` and ``NAME: value`` lines, ``export``/``declare -x`` lines,
  NUL-separated ``/proc/*/environ``, JSON and Python dict pairs (``"password": "..."``;
  a number becomes the string ``"[redacted]"``),
  ``"NAME=value"`` strings (``docker inspect``), ``name=value`` inside a line (logfmt,
  query strings, ``--password=...``, ``-Dkey.password=...``) and ``--token value``
  command-line flags (``ps aux``, ``/proc/*/cmdline``);
* bearer tokens and ``Authorization:`` header values;
* JSON Web Tokens (``eyJ....``), AWS access key ids (``AKIA``/``ASIA`` + 16);
* private keys (PEM blocks, from ``BEGIN ... PRIVATE KEY`` to its ``END``; a block cut
  by the end of the text or by the dropped middle of a long output is redacted up to
  the cut, an ``END`` without its ``BEGIN`` from the cut or the start of the text);
* passwords in URLs (``postgres://user:[redacted]@host/db``) and tokens used as a URL's
  user (``https://[redacted]@github.com/...``);
* all of the above with colour codes in the way (``grep --color=always``): a text
  with escape sequences is matched without them, and when something in it is
  redacted it comes back without its colours.

Long because each form is read from what surrounds a name (quotes and a colon, a lead
at the start of a line, a dash before it, the context that ends its value) and private
keys are followed across lines and cuts; all of it is one pass, so it stays together.
Every rule finds spans in the same text and the text is rebuilt once. Rules that need
a secret-looking name start from where one of the words such names are made of occurs,
and the others from a literal of their own, so that a long output costs a few substring
searches and a little work where they find something.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

REDACTED = "[redacted]"
_MASK = REDACTED.encode()

SECRET_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE",
    "KEY", "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "HTPASSWD", "PRIVATE", "DSN",
    "COOKIE", "SIGNATURE", "SALT", "CERT"})
"""A name is secret when one of its words (split on ``_``, ``-`` or ``.``, and between
``camelCase`` words) is one of these."""

_SECRET_ENDINGS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "APIKEY",
                   "SECRETKEY", "PRIVATEKEY", "ACCESSKEY")

_STEMS = (b"pass", b"token", b"secret", b"key", b"credential", b"private", b"dsn",
          b"cookie", b"signature", b"salt", b"cert", b"authoriz", b"bearer")
"""Every secret word and ending, lower-cased, holds one of these (the header rules look
for the last two): the name-led rules start from where these occur, and nowhere else."""

_TRIGGERS = (b"=", b":", b"-", b"e", b"A")
"""Every built-in rule needs one of these bytes (names meet values at ``=`` or ``:``,
flags and key armour have ``-``; ``eyJ`` and ``Bearer`` an ``e``, ``AKIA``, ``ASIA`` and
``BEARER`` an ``A``): output with none is left as it is after five ``memchr`` scans."""

_CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
_SEAM = re.compile(rb"KoyebCut[0-9a-f]{32}")
"""The run inserts this (random hex) where ``max_output`` dropped the middle of an
output, before redaction: a private key is not followed across it."""

_ARMOUR = re.compile(rb"-----(BEGIN|END) [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_AWS_KEY_ID = re.compile(rb"A[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])")
_URL_USERINFO = re.compile(rb"://(?P<user>[^\s:/@?#\"'<>\\]*)"
                           rb"(?::(?P<password>[^\s/?#\"'<>\\]*))?@")
_TOKEN_USER_PREFIXES = (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_",
                        b"glpat-")

# Around a stem: the name holding it, what ends the name, what may lead a line to it.
_NAME_END = re.compile(rb"[A-Za-z0-9_.$@-]*")
_NAME_CHAR = [bool(_NAME_END.fullmatch(bytes([b]))) for b in range(256)]
_SEP = re.compile(rb"[ \t]*([=:])[ \t]*")
_COLON = re.compile(rb"[ \t]*:[ \t]*")
_LEAD = re.compile(rb"[ \t]*(?:(?:export|declare[ \t]+-[A-Za-z]+|typeset[ \t]+-[A-Za-z]+"
                   rb"|readonly|set|-)[ \t]+)?")
_LINE_VALUE = re.compile(rb"[^\x00\n]*")
_BEARER = re.compile(rb"(?i)bearer[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_AUTHORIZATION = re.compile(
    rb"(?i)authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
    rb"(?:[a-z][a-z0-9_-]*[ \t]+)?(?P<value>[^\s\"',;]{8,})")
_HEADERS = {b"bearer": _BEARER, b"authoriz": _AUTHORIZATION}

_STRING_END = {
    b'"': re.compile(rb'(?:[^"\\\n]|\\.)*"'),
    b"'": re.compile(rb"(?:[^'\\\n]|\\.)*'"),
    b'\\"': re.compile(rb'(?:[^"\\\n]|\\[^"\n])*\\"'),
    b"\\'": re.compile(rb"(?:[^'\\\n]|\\[^'\n])*\\'"),
}
"""From just inside an opening quote to just past its closing one."""
_PLAIN_VALUE = {
    b"?": re.compile(rb"[^\s\x00\"'&#]+"), b"&": re.compile(rb"[^\s\x00\"'&#]+"),
    b";": re.compile(rb"[^\s\x00\"';]+"), b",": re.compile(rb"[^\s\x00\"',)\]}]+"),
    b"(": re.compile(rb"[^\s\x00\"',)\]}]+"), b"[": re.compile(rb"[^\s\x00\"',)\]}]+"),
    b"{": re.compile(rb"[^\s\x00\"',)\]}]+"),
}
"""An unquoted value ends where its context ends it: a query string at ``&``, a
connection string at ``;``, a list at ``,`` or its bracket, anything else at white
space or a quote."""
_VALUE = re.compile(rb"[^\s\x00\"']+")
_NUMBER = re.compile(rb"-?[0-9][0-9.eE+-]*")
_QUOTED_MASK = b'"' + _MASK + b'"'
_WORD = re.compile(rb"[^\s\x00]+")

_Span = tuple[int, int, bytes]
"""``(start, end, replacement)``: ``[redacted]``, or nothing for the rest of a private
key whose start was already shown redacted (the widget's lines)."""


def _camel_words(part: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", part)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Return True when a variable name looks like it holds a secret.

    Examples
    --------
    >>> is_secret_name("DB_PASSWORD"), is_secret_name("SecretAccessKey")
    (True, True)
    >>> is_secret_name("KEYBOARD_LAYOUT"), is_secret_name("monkeyPatch")
    (False, False)
    """
    upper = name.upper()
    if upper.endswith(_SECRET_ENDINGS):
        return True
    for part in re.split(r"[_.\-]", name):
        if part.upper() in SECRET_WORDS:
            return True
        if part != part.upper() and part != part.lower() and any(
                w.upper() in SECRET_WORDS for w in _camel_words(part)):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _secret(name: bytes) -> bool:
    return 0 < len(name) <= 100 and is_secret_name(name.decode("ascii"))


def _quoted_value(data: bytes, quote: bytes, start: int) -> int:
    """Where the string opened by ``quote`` just before ``start`` ends (its closing
    quote's start), or -1 when it does not end on this line."""
    m = _STRING_END[quote].match(data, start)
    return m.end() - len(quote) if m else -1


def _pem_spans(data: bytes, key_open: bool, line: bool) -> tuple[list[_Span], bool]:
    """Private keys: whole blocks, and blocks cut by a seam or an end of the text.

    ``key_open`` says the text starts inside a key (the widget's previous line opened
    one); the result says whether it ends inside one. With ``line``, a key left open
    stops before the line's end of line, so that the line still ends.
    """
    if not key_open and b"PRIVATE KEY" not in data:
        return [], False
    armours = list(_ARMOUR.finditer(data))
    seams = list(_SEAM.finditer(data)) if b"KoyebCut" in data else []
    bounds = [0] + [x for m in seams for x in m.span()] + [len(data)]
    spans: list[_Span] = []
    opened_at: int | None = None
    for k in range(0, len(bounds), 2):
        lo, hi = bounds[k], bounds[k + 1]
        # Across a seam the text is not continuous: a key open before it is redacted up
        # to it, and the text after it may start inside a key.
        opened_at, shown = (lo, False) if (k == 0 and key_open) else (None, True)
        last = lo
        for m in armours:
            if not lo <= m.start() < hi:
                continue
            if m.group(1) == b"BEGIN":
                if opened_at is None:
                    opened_at, shown = m.start(), True
                continue
            start = last if opened_at is None else opened_at
            spans.append((start, m.end(), _MASK if shown else b""))
            opened_at, shown, last = None, True, m.end()
        if opened_at is not None:
            end = hi
            if line and k == len(bounds) - 2:
                end = len(data.rstrip(b"\r\n"))
            spans.append((opened_at, max(end, opened_at), _MASK if shown else b""))
    return spans, opened_at is not None


def _global_spans(data: bytes) -> list[_Span]:
    """Rules with a literal of their own: tokens by shape, credentials in URLs."""
    spans: list[_Span] = []
    if b"eyJ" in data:
        spans += [(m.start(), m.end(), _MASK) for m in _JWT.finditer(data)]
    if b"AKIA" in data or b"ASIA" in data:
        spans += [(m.start(), m.end(), _MASK) for m in _AWS_KEY_ID.finditer(data)]
    if b"@" in data and b"://" in data:
        for m in _URL_USERINFO.finditer(data):
            user, password = m.group("user"), m.group("password")
            if password:
                spans.append((m.start("password"), m.end("password"), _MASK))
            # A token as the user: long, or one of the known token prefixes (with a
            # password beside it, the user is a name unless it has such a prefix).
            if user and (user.startswith(_TOKEN_USER_PREFIXES)
                         or len(user) >= (32 if password is not None else 16)):
                spans.append((m.start("user"), m.end("user"), _MASK))
    return spans


def _name_spans(data: bytes) -> list[_Span]:
    """Values of secret-looking names, found from the stems the names hold.

    Each stem found (any case) is widened to the name around it; a secret name is then
    read with what surrounds it: quotes and a colon (JSON), quotes and ``=`` (a
    ``"NAME=value"`` string), ``=`` or ``:`` at the start of a line (the rest of the
    line), inside a line (one value, ended as its context ends it), or a leading dash
    and a space (a command-line flag).
    """
    low = data.lower()
    spans: list[_Span] = []
    seen: set[int] = set()
    for stem in _STEMS:
        header = _HEADERS.get(stem)
        i = low.find(stem)
        while i >= 0:
            if header is not None:
                m = header.match(data, i)
                if m and not data[i - 1:i].isalnum():
                    spans.append((m.start("value"), m.end("value"), _MASK))
                i = low.find(stem, i + 1)
                continue
            start = i
            if i and _NAME_CHAR[data[i - 1]]:
                start -= _name_length(data[max(0, i - 128):i][::-1])
            end = i + _name_length(data, i)
            if start not in seen:
                seen.add(start)
                name = data[start:end].rstrip(b".-")
                if _secret(name.lstrip(b"-")):
                    n = len(spans)
                    _name_value(data, start, start + len(name), spans)
                    if len(spans) > n:  # what the value holds is redacted already
                        end = max(end, spans[-1][1])
            i = low.find(stem, end)
    return spans


def _name_length(data: bytes, at: int = 0) -> int:
    m = _NAME_END.match(data, at)
    return m.end() - at if m else 0


def _name_value(data: bytes, start: int, end: int, spans: list[_Span]) -> None:
    """Add the span of the value the secret name ``data[start:end]`` gives, if any."""
    dashed = data[start:start + 1] == b"-"
    quote = (data[start - 2:start] if data[start - 2:start] in (b'\\"', b"\\'")
             else data[start - 1:start] if data[start - 1:start] in (b'"', b"'") else b"")
    if quote and data.startswith(quote, end):
        colon = _COLON.match(data, end + len(quote))
        if colon:
            at = colon.end()
            vq = data[at:at + 2] if data[at:at + 2] in (b'\\"', b"\\'") else data[at:at + 1]
            if vq in _STRING_END:  # "name": "value"
                _add(spans, at + len(vq), _quoted_value(data, vq, at + len(vq)))
                return
            number = _NUMBER.match(data, at)
            if number:  # a PIN is a number: the JSON stays JSON with a string instead
                spans.append((at, number.end(), _QUOTED_MASK))
            elif not data.startswith((b"true", b"false", b"null", b"{", b"["), at):
                value = _PLAIN_VALUE[b","].match(data, at)  # "name": value (YAML)
                _add(spans, at, value.end() if value else -1)
        return
    if quote and data.startswith(b"=", end):  # "NAME=value", '--password=value'
        _add(spans, end + 1, _quoted_value(data, quote, end + 1))
        return
    sep = _SEP.match(data, end)
    if sep is None:
        if dashed and data[end:end + 1] in (b" ", b"\t", b"\x00"):  # --token value
            at = end + 1
            while data[at:at + 1] in (b" ", b"\t"):
                at += 1
            if data[at:at + 1] in (b'"', b"'"):
                _add(spans, at, _quoted_value(data, data[at:at + 1], at + 1) + 1)
            elif data[at:at + 1] not in (b"", b"-", b"\n", b"\r", b"\x00"):
                word = _WORD.match(data, at)
                _add(spans, at, word.end() if word else -1)
        return
    at = sep.end()
    # The line form: only a lead (indentation, export, declare -x...) between the start
    # of the line (or the NUL before an environ entry) and the name. Its value is the
    # rest of the line, spaces and all.
    lo = max(0, start - 64)
    window = data[lo:start]
    line_start = max(window.rfind(b"\n"), window.rfind(b"\x00"))
    line_start = lo + line_start + 1 if line_start >= 0 else (0 if lo == 0 else -1)
    if line_start >= 0 and _LEAD.fullmatch(data, line_start, start):
        value = _LINE_VALUE.match(data, at)
        _add(spans, at, at + len(value.group().rstrip()) if value else -1)
        return
    if sep.group(1) == b":" and (data.startswith(b"//", at)
                                 or data[start - 3:start] == b"://"):
        return  # a URL's scheme, or its user (the URL rule reads what follows)
    if data[at:at + 1] in (b'"', b"'"):
        _add(spans, at, _quoted_value(data, data[at:at + 1], at + 1) + 1)
        return
    before = data[start - 1:start]
    value = _PLAIN_VALUE.get(before, _VALUE).match(data, at)
    _add(spans, at, value.end() if value else -1)


def _add(spans: list[_Span], start: int, end: int) -> None:
    if end > start:
        spans.append((start, end, _MASK))


def _spans(data: bytes, key_open: bool = False, line: bool = False
           ) -> tuple[list[_Span], bool]:
    spans, key_open = _pem_spans(data, key_open, line)
    spans += _global_spans(data)
    spans += _name_spans(data)
    return spans, key_open


def _rebuild(data: bytes, spans: list[_Span]) -> tuple[bytes, int]:
    """Replace the spans, merged where they overlap or touch; count the masks."""
    if not spans:
        return data, 0
    spans.sort()
    parts, pos, count = [], 0, 0
    cur_start, cur_end, cur_mask = spans[0]
    for start, end, mask in spans[1:]:
        if start <= cur_end:
            cur_end, cur_mask = max(cur_end, end), cur_mask or mask
            continue
        parts += [data[pos:cur_start], cur_mask]
        count += bool(cur_mask)
        pos = cur_end
        cur_start, cur_end, cur_mask = start, end, mask
    parts += [data[pos:cur_start], cur_mask, data[cur_end:]]
    count += bool(cur_mask)
    return b"".join(parts), count


def _may_hold_secret(data: bytes) -> bool:
    return any(t in data for t in _TRIGGERS)


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
    >>> Redactor().redact('{"SecretAccessKey": "wJalrXUtnFEMI", "Region": "fra"}')
    ('{"SecretAccessKey": "[redacted]", "Region": "fra"}', 1)
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

    def may_hold_secret(self, data: bytes) -> bool:
        """Return False only when no rule can match a text made of such pieces.

        Every built-in rule needs one of a few bytes (``=``, ``:``, ``-``, ``e``,
        ``A``): a text none of whose pieces holds one needs no redaction, so pieces can
        be screened as they arrive. Extra ``patterns`` may match anything: always True
        with them.

        Examples
        --------
        >>> Redactor().may_hold_secret(b"x" * 100), Redactor().may_hold_secret(b"K=v")
        (False, True)
        """
        return bool(self._compiled) or _may_hold_secret(data)

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``(text with secrets replaced, how many were)``."""
        if not self.enabled or not text:
            return text, 0
        data, n = self._redact(text.encode("utf-8", "surrogatepass"), "surrogatepass")
        return (data.decode("utf-8", "surrogatepass"), n) if n else (text, 0)

    def redact_bytes(self, data: bytes) -> tuple[bytes, int]:
        """Return the same for bytes; bytes that are not UTF-8 pass through unchanged."""
        if not self.enabled or not data:
            return data, 0
        return self._redact(data, "surrogateescape")

    def _redact(self, data: bytes, errors: str) -> tuple[bytes, int]:
        if not self._compiled and not _may_hold_secret(data):
            return data, 0  # nothing any rule could match: no regular expression at all
        work = _CSI.sub(b"", data) if b"\x1b" in data else data
        out, n = _rebuild(work, _spans(work)[0])
        if self._compiled:
            text = out.decode("utf-8", errors)
            for pattern in self._compiled:
                text, k = pattern.subn(REDACTED, text)
                n += k
            out = text.encode("utf-8", errors)
        # Colours are given up only where something was redacted.
        return (out, n) if n else (data, 0)


class LineRedactor:
    """Redacts a stream line by line, for output shown as it arrives.

    Remembers whether it is inside a private key block, which spans lines: the line
    that opens one shows ``[redacted]``, the lines after it nothing, up to the one that
    closes it (whatever else that line holds is kept). Each call takes whole lines.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.in_key = False
        self.count = 0

    def line(self, text: str) -> str:
        """Return ``text`` redacted ("" when all of it was inside a private key)."""
        if not self.redactor.enabled or not text:
            return text
        data = text.encode("utf-8", "surrogatepass")
        if not self.in_key and not self.redactor._compiled and not _may_hold_secret(data):
            return text
        work = _CSI.sub(b"", data) if b"\x1b" in data else data
        spans, in_key = _spans(work, self.in_key, line=True)
        was_in_key, self.in_key = self.in_key, in_key
        out, n = _rebuild(work, spans)
        if was_in_key and not out.strip():
            return ""
        text_out = out.decode("utf-8", "surrogatepass") if (n or out != work) else text
        if self.redactor._compiled:
            for pattern in self.redactor._compiled:
                text_out, k = pattern.subn(REDACTED, text_out)
                n += k
        self.count += n
        return text_out


DEFAULT_REDACTOR = Redactor()
