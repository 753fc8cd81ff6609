"""One exception tree, rooted at :class:`KoyebError`, and the package's one warning.

Every exception and warning the package raises is defined here.
"""

from __future__ import annotations

from typing import Any


class KoyebError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(KoyebError):
    """The client cannot be configured (no token found, bad config file)."""


class TransportError(KoyebError):
    """The request did not get a complete HTTP answer (timeout, refused, dropped)."""


class DeadlineExceeded(TransportError):
    """A request or an exec handshake did not complete within its total deadline."""


class MalformedResponseError(KoyebError):
    """The server answered, but not with the JSON the API promises."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class APIError(KoyebError):
    """An error reply from the API, with the fields of its JSON body.

    Attributes
    ----------
    status
        HTTP status code.
    code, message
        The body's ``code`` and ``message`` (empty when the body had none).
    fields
        For validation errors, a list of ``{"field": ..., "description": ...}``.
    """

    def __init__(self, status: int, code: str = "", message: str = "",
                 fields: list[dict[str, Any]] | None = None, *, path: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields or [])
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" on {self.path}" if self.path else ""
        text = f"{self.status}{where}: {self.message or 'no message'}"
        if self.code:
            text += f" ({self.code})"
        if self.fields:
            text += "; " + ", ".join(
                f"{f.get('field', '?')}: {f.get('description', '')}" for f in self.fields
            )
        return text


class BadRequestError(APIError):
    """400: the API rejected an argument (see ``fields``)."""


class AuthenticationError(APIError):
    """401: the token is invalid or expired, or its organization was deleted."""

    def _describe(self) -> str:
        return (f"401 on {self.path or 'request'}: the token is invalid or expired, "
                "or its organization was deleted")


class PermissionDeniedError(APIError):
    """403: the token may not access this resource."""


class NotFoundError(APIError):
    """404: no such resource (``code`` may be ``not_found`` or ``unknown_resource``)."""


class RateLimitError(APIError):
    """429: too many requests, still refused after the retries."""


class ServerError(APIError):
    """5xx: the API failed, still failing after the retries."""


def error_class(status: int) -> type[APIError]:
    """Return the :class:`APIError` subclass for an HTTP status."""
    if status >= 500:
        return ServerError
    return {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
            404: NotFoundError, 429: RateLimitError}.get(status, APIError)


class PaginationWarning(UserWarning):
    """A listing ended early, or read on past what the server said, because its paging
    did not add up; the same words are kept in ``df.attrs["notes"]``."""


class IncompleteListingError(KoyebError):
    """A listing failed part way; the rows already received are in ``partial``.

    Attributes
    ----------
    partial
        A DataFrame of every row received before the failure, with the full schema.
    pages
        How many pages were read.
    cause
        The error that stopped the listing (also ``__cause__``).
    """

    def __init__(self, what: str, partial: Any, pages: int, cause: BaseException) -> None:
        self.partial = partial
        self.pages = pages
        self.cause = cause
        super().__init__(
            f"listing {what} stopped after {pages} page(s); {len(partial)} row(s) received "
            f"are kept in .partial. Cause: {cause}"
        )


class MalformedListingError(IncompleteListingError, MalformedResponseError):
    """A listing stopped at a reply that was not what the API promises.

    Both an :class:`IncompleteListingError` (the rows received are in ``partial``)
    and a :class:`MalformedResponseError`.
    """

    def __init__(self, what: str, partial: Any, pages: int, cause: BaseException) -> None:
        IncompleteListingError.__init__(self, what, partial, pages, cause)
        self.status = getattr(cause, "status", None)
        self.body = getattr(cause, "body", "")


class InstanceNotRunningError(BadRequestError):
    """The instance exists but cannot run commands now (``failed_precondition``)."""


class ExecFailedError(KoyebError):
    """Raised by ``check=True`` when a command did not exit with 0; ``result`` has it."""

    def __init__(self, result: Any) -> None:
        self.result = result
        what = (f"exited with {result.exit_code}" if result.exited else
                "timed out" if result.timed_out else f"ended without an exit code "
                f"({result.error or 'connection closed'})")
        super().__init__(f"command {result.command!r} on {result.instance_id or '?'} {what}")


class ExecInterrupted(KeyboardInterrupt):
    """Ctrl-C during a command: the socket was closed; ``result`` holds the partial run."""

    def __init__(self, result: Any) -> None:
        super().__init__("interrupted")
        self.result = result


class WebSocketProtocolError(TransportError):
    """The exec server broke the websocket protocol (or a cap)."""


class ConnectionClosed(TransportError):
    """The exec connection ended without a close frame."""


class HandshakeRefused(TransportError):
    """The exec server answered the upgrade with something other than 101."""

    def __init__(self, message: str, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class SnapshotError(KoyebError):
    """A snapshot is missing, damaged or incomplete; the message names the file."""


class StoreError(KoyebError):
    """A history store cannot be read or written: damaged, foreign, or of another schema
    version; the message names the store and what is wrong."""


class StoreLockedError(StoreError):
    """Another process is writing the history store (a sync or a compaction)."""

    def __init__(self, store: str, waited: float) -> None:
        super().__init__(f"the history store {store!r} is locked by another sync or "
                         f"compaction (waited {waited:g} s); try again when it ends")
        self.store = store
        self.waited = waited
