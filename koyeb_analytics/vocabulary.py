"""The simulator's instance-event vocabulary.

Koyeb does not publish the ``type`` values or ``metadata`` shapes of instance events
(see ``koyeb-api-facts.md`` §5), so everything here is **invented**. It lives in one
place so that a run can swap in another vocabulary, and so that the toolkit's
lifecycle code can read the same table to rebuild status intervals from events.

Every status change produces one event whose ``metadata`` carries the new status
(``status``) and the previous one (``previousStatus``; camelCase follows the style of
the console's activity metadata). A few informational events carry no status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import STATUSES as STATUSES
from .schema import TERMINAL_STATUSES as TERMINAL_STATUSES

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

    def type_to_status(self) -> dict[str, str]:
        """Return the reverse table: event type to the status it announces."""
        return {t: s for s, t in self.status_types.items()}


DEFAULT_VOCABULARY = EventVocabulary()
