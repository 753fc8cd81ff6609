"""Fault injection for the simulator: random rates and planned, counted faults."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

FAULT_KINDS = frozenset({
    "400", "401", "403", "404", "429", "500", "502", "503", "504",
    "drop",        # close the connection without a response
    "malformed",   # 200 with half a JSON document
    "truncated",   # 200 whose Content-Length promises more than is sent
    "text",        # 200 with a plain-text body
})


@dataclass
class Faults:
    """Random faults, each drawn per request from the simulator's seeded generator.

    Attributes
    ----------
    latency
        Seconds added to every request.
    path_latency
        Further seconds for requests whose path starts with a key, e.g.
        ``{"/v1/instance_events": 0.2}`` for a slow events endpoint (the longest
        matching prefix wins).
    error_rate
        Share of requests answered with ``error_status``.
    rate_limit_rate
        Share of requests answered 429 with an empty body (and ``Retry-After`` when
        ``retry_after`` is set).
    drop_rate, malformed_rate
        Share of requests whose connection is dropped, or whose JSON is cut in half.
    churn_per_request
        New instances (each with its first event) created before every listing
        request, as if the fleet changed between pages.
    retry_after
        Value of the ``Retry-After`` header on 429 replies (seconds); ``None`` (the
        default) omits it, as the real API does as far as is known.
    """

    latency: float = 0.0
    path_latency: dict[str, float] = field(default_factory=dict)
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    churn_per_request: int = 0
    retry_after: float | None = None

    def delay(self, path: str) -> float:
        """Seconds to wait before answering a request for ``path``."""
        prefixes = [p for p in self.path_latency if path.startswith(p)]
        return self.latency + (self.path_latency[max(prefixes, key=len)] if prefixes else 0.0)


@dataclass
class _Planned:
    kind: str
    times: int | None
    after: int
    path: str | None
    body: str


@dataclass
class FaultPlan:
    """Counted faults: skip ``after`` matching requests, then hit the next ``times``."""

    seed: int = 0
    _plans: list[_Planned] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add(self, kind: str, times: int | None, after: int, path: str | None, body: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be a positive integer or None, got {times!r}")
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after!r}")
        if body not in ("json", "empty", "text"):
            raise ValueError(f"body must be 'json', 'empty' or 'text', got {body!r}")
        with self._lock:
            self._plans.append(_Planned(kind, times, after, path, body))

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def take(self, path: str) -> _Planned | None:
        """Return the planned fault for this request, if any, and count it."""
        with self._lock:
            hit = None
            for plan in self._plans:
                if plan.path is not None and not path.startswith(plan.path):
                    continue
                if plan.after > 0:
                    plan.after -= 1
                    continue
                if hit is None:
                    hit = plan
                    if plan.times is not None:
                        plan.times -= 1
            self._plans = [p for p in self._plans if p.times is None or p.times > 0]
            return hit
