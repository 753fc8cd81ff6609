"""The simulator's instance-event vocabularies.

Koyeb does not publish the ``type`` values or ``metadata`` shapes of instance events
(see ``koyeb-api-facts.md`` §5), so everything here is **invented**. It lives in one
place so that a run can swap in another vocabulary. The toolkit never reads it: the
analysis finds statuses in what the events carry (metadata, message texts; see
:func:`~koyeb_analytics.classify_events`), so the opaque vocabulary tests it as the real
API would.

Every status change produces one event. In the invented vocabulary its ``metadata``
carries the new status (``status``) and the previous one (``previousStatus``; camelCase
follows the style of the console's activity metadata). The opaque vocabulary has the
real API's shape instead: types nobody has seen, empty ``metadata``, real message texts,
a share of messages from no known family and a share of events that never arrive. A
few informational events carry no status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..schema import STATUSES as STATUSES
from ..schema import TERMINAL_STATUSES as TERMINAL_STATUSES

# Texts of the family seen on the `koyeb` log stream and in instance `messages`.
STATUS_MESSAGES: dict[str, str] = {
    "ALLOCATING": "Instance created. Preparing to start...",
    "STARTING": "Instance is starting... Waiting for health checks to pass.",
    "HEALTHY": "Instance is healthy. All health checks are passing.",
    "UNHEALTHY": "TCP health check failed on port 8000.",
    "STOPPING": "Instance is stopping.",
    "STOPPED": "Instance stopped.",
    "ERROR": (
        "Application exited with code 1. This usually indicates an application failure. "
        "Check that the command used to launch your application is correct."
    ),
    "SLEEPING": "Instance is sleeping. It will wake up on the next request.",
}


@dataclass(frozen=True)
class EventVocabulary:
    """Map statuses to event types, and name the informational events.

    Attributes
    ----------
    status_types
        Event ``type`` emitted when an instance enters each status.
    info_types
        Event types that carry no status change, with their message.
    status_key, previous_key
        The ``metadata`` keys that hold the new and the previous status.
    """

    status_types: dict[str, str] = field(
        default_factory=lambda: {s: f"instance.{s.lower()}" for s in STATUSES}
    )
    info_types: dict[str, str] = field(
        default_factory=lambda: {"instance.image_pulled": "Download progress: 100%"}
    )
    status_key: str = "status"
    previous_key: str = "previousStatus"
    metadata: bool = True
    """Put the status (and the previous one) in each status event's metadata."""
    real_messages: bool = False
    """Vary messages as real fleets do (both eras, ports, paths, codes, progress lines)."""
    unknown_share: float = 0.0
    """Share of status events whose message belongs to no known family (real fleets
    print texts nobody has catalogued)."""
    missing_share: float = 0.0
    """Share of events that are never served (the ground truth keeps them)."""

    def __post_init__(self) -> None:
        for name in ("unknown_share", "missing_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < 1:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")


DEFAULT_VOCABULARY = EventVocabulary()


# The message families seen on the `koyeb` log stream and in instance `messages`
# (koyeb-api-facts.md §15), in both eras, with the variation real fleets show.
REAL_MESSAGES: dict[str, tuple[str, ...]] = {
    "ALLOCATING": ("Instance created. Preparing to start...", "Instance allocated in nomad"),
    "STARTING": ("Instance is starting... Waiting for health checks to pass.",
                 "Instance is starting. Propagating network configuration...",
                 "Instance is starting"),
    "HEALTHY": ("Instance is healthy. All health checks are passing.",),
    "UNHEALTHY": ("TCP health check failed on port {port}.",
                  "HTTP health check failed on port {port} path {path}: status {code}.",
                  "Instance is unhealthy"),
    "STOPPING": ("Instance is stopping.",),
    "STOPPED": ("Instance stopped.", "Instance terminated in nomad"),
    "ERROR": ("Application exited with code {exit}. This usually indicates an application "
              "failure. Check that the command used to launch your application is correct.",
              "ERROR: no command to run your application: set a run command or an "
              "entrypoint in your image."),
    "SLEEPING": ("Instance is sleeping. It will wake up on the next request.",),
}
WAKE_MESSAGE = "Instance is waking up. Waiting for health checks to pass."
INFO_MESSAGES: tuple[str, ...] = (
    "Starting download for registry01.prod.koyeb.com/k-{n:04x}/app:latest",
    "Download progress: {pct}% |{bar}|",
    "Download complete for registry01.prod.koyeb.com/k-{n:04x}/app:latest",
    "Network configuration propagated",
    "Service mesh is not ready yet",
    "Service mesh is propagated",
)


# Texts of no known family: what a real fleet prints that nobody has catalogued yet.
UNKNOWN_MESSAGES: tuple[str, ...] = (
    "Reconciling instance state (generation {n}).",
    "Placement updated: host group {n:04x}.",
    "Lifecycle hook completed with result {n}.",
    "Instance state synchronised by the control plane.",
)


def unknown_message(k: int) -> str:
    """A message of no known family, varied by ``k`` (deterministic)."""
    return UNKNOWN_MESSAGES[k % len(UNKNOWN_MESSAGES)].format(n=k % 9973)


def real_message(status: str, k: int, previous: str | None = None) -> str:
    """A message of ``status``'s family, varied by ``k`` (deterministic)."""
    if status == "STARTING" and previous == "SLEEPING":
        return WAKE_MESSAGE
    family = REAL_MESSAGES[status]
    text = family[k % len(family)]
    return text.format(port=(8000, 8080, 3000)[k // 3 % 3],
                       path=("/health", "/healthz", "/")[k // 5 % 3],
                       code=(503, 500, 404)[k // 7 % 3], exit=(1, 137, 2)[k // 11 % 3])


def info_message(k: int) -> str:
    """An informational message (no status change), varied by ``k``."""
    pct = (k * 37) % 101
    return INFO_MESSAGES[k % len(INFO_MESSAGES)].format(
        n=k % 65536, pct=pct, bar="█" * (pct // 10) + " " * (10 - pct // 10))


OPAQUE_VOCABULARY = EventVocabulary(
    status_types={s: f"instance.event.{i:02d}{chr(97 + i)}" for i, s in enumerate(STATUSES)},
    info_types={"instance.event.notice": "Download progress: 100%"},
    metadata=False, real_messages=True, unknown_share=0.05, missing_share=0.01)
"""Types the toolkit has never seen, empty metadata, real message texts, 5 % of status
messages from no known family and 1 % of events never served: a simulator that does not
flatter the client. ``dataclasses.replace(OPAQUE_VOCABULARY, missing_share=0)`` and the
like make it milder."""

VOCABULARIES = {"invented": DEFAULT_VOCABULARY, "opaque": OPAQUE_VOCABULARY}
