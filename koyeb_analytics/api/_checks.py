"""Argument checks shared by every entry point that takes a client or filters.

Bad input fails here, with a message that names the argument, before any request is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..schema import STATUSES
from ._client import KoyebClient

__all__ = ["check_bool", "check_client", "check_ids", "check_statuses", "check_str"]


def check_client(client: Any) -> KoyebClient:
    """Return ``client``, or raise TypeError naming what was passed instead."""
    if not isinstance(client, KoyebClient):
        raise TypeError(f"client must be a KoyebClient (sim.client() for the simulator, "
                        f"KoyebClient.from_env() for the API), got {type(client).__name__}")
    return client


def check_str(name: str, value: Any) -> str | None:
    """Return ``value`` (a non-empty string, or None), or raise TypeError naming ``name``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_statuses(statuses: Iterable[str] | str | None, *,
                   known: Sequence[str] = STATUSES, kind: str = "status") -> list[str]:
    """Return the statuses asked for, upper-cased and deduplicated (all ``known`` for None).

    ``known`` is the vocabulary (the eight instance statuses by default); ``kind`` names it
    in the error (``"deployment status"``).
    """
    if statuses is None:
        return list(known)
    if isinstance(statuses, str):
        statuses = [statuses]
    if not isinstance(statuses, Iterable):
        raise TypeError(f"statuses must be a status name or a list of them, got {statuses!r}")
    out = []
    for s in statuses:
        if not isinstance(s, str) or s.upper() not in known:
            raise ValueError(f"statuses: unknown {kind} {s!r}; expected some of "
                             f"{', '.join(known)}")
        out.append(s.upper())
    if not out:
        raise ValueError(f"statuses must name at least one status (None means all "
                         f"{len(known)})")
    return list(dict.fromkeys(out))


def check_ids(name: str, values: Iterable[str] | str | None) -> list[str] | None:
    """Return ``values`` as a deduplicated list of non-empty strings (None stays None)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Iterable) or isinstance(values, (bytes, Mapping)):
        raise TypeError(f"{name} must be a string or a list of strings, got {values!r}")
    out = []
    for v in values:
        if not isinstance(v, str) or not v or v != v.strip():
            raise TypeError(f"{name} must hold non-empty strings, got {v!r}")
        out.append(v)
    return list(dict.fromkeys(out))


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise TypeError naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
