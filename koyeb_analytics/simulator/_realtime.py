"""A fleet that keeps living after its seeded history: flaps, crashes, injected incidents.

With ``ka.simulate(..., live=True, speed=1.0)`` a background thread advances the fleet
on the wall clock: running instances flap (UNHEALTHY, then HEALTHY again or ERROR) and
crash (ERROR, then a new instance in the same replica slot: ALLOCATING, STARTING,
HEALTHY) at the fleet's configured rates, and :meth:`LiveFleet.inject_incident` forces
an incident on one service. Every change is a transition of the fleet, so records,
events and the ground truth stay one.

``speed`` compresses what happens, not the clock: behaviours are ``speed`` times as
frequent and ``speed`` times shorter, while timestamps stay the wall clock's, so a
client's ``window="2h"`` means the last two hours.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..timewindow import parse_duration
from ._fleet import HOUR, US, Fleet, S

TICK = 0.1
"""Seconds between two steps of the live fleet."""
INCIDENTS = ("crash_loop", "unhealthy", "scale_to_zero")
RUNNING = (S["STARTING"], S["HEALTHY"], S["UNHEALTHY"])


@dataclass(frozen=True)
class Incident:
    """An incident forced on a service: what, when, and the instances it hit."""

    service_id: str
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    instance_ids: tuple[str, ...]


class LiveFleet:
    """Advance a fleet on the wall clock (see the module's docstring).

    Every change is made holding ``lock`` (the one the server reads the fleet under),
    then ``on_change`` is called, still holding it, so the server forgets what it
    derived from the fleet before.
    """

    def __init__(self, fleet: Fleet, *, lock: threading.Lock, on_change: Callable[[], None],
                 speed: float = 1.0, seed: int = 0) -> None:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) \
                or not 0 < speed < float("inf"):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.fleet = fleet
        self._lock = lock
        self._on_change = on_change
        self.speed = float(speed)
        self.rng = random.Random(seed * 7919 + 17)
        self._pending: list[tuple[int, int, Callable[[int], None]]] = []
        self._order = itertools.count()
        self._busy: dict[str, int] = {}  # service id -> end of its forced incident (us)
        self._last = fleet.now_us
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.incidents: list[Incident] = []

    # -- clock -------------------------------------------------------------------

    def now_us(self) -> int:
        """The wall clock in microseconds, never behind what the fleet already holds."""
        return max(int(time.time() * US), self.fleet.now_us)

    def _scaled(self, seconds: float) -> int:
        return max(1, int(seconds * US / self.speed))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="koyeb-sim-live",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            self.step()

    # -- evolution ---------------------------------------------------------------

    def step(self, now: int | None = None) -> bool:
        """Apply what is due up to ``now`` and what happened by chance; True if anything
        changed."""
        fleet = self.fleet
        with self._lock:
            now = self.now_us() if now is None else now
            stamps = itertools.count(max(now, fleet.now_us))
            changed = False
            while self._pending and self._pending[0][0] <= now:
                _, _, action = heapq.heappop(self._pending)
                action(next(stamps))
                changed = True
            hours = (now - self._last) / HOUR * self.speed
            self._last = now
            if hours > 0:
                changed |= self._chance(hours, stamps)
            if changed:
                fleet.rebuild()
                self._on_change()
            return changed

    def _chance(self, hours: float, stamps: itertools.count[int]) -> bool:
        cfg, fleet, rng = self.fleet.config, self.fleet, self.rng
        p_crash = hours / cfg.crash_mtbf_hours
        p_flap = hours / cfg.flap_mtbf_hours
        changed = False
        statuses = fleet.inst["status"]
        services = fleet.inst["service"]
        for idx in range(len(statuses)):
            if statuses[idx] != S["HEALTHY"] or services[idx] in self._busy:
                continue
            roll = rng.random()
            if roll < p_crash:
                self._crash(idx, next(stamps))
                changed = True
            elif roll < p_crash + p_flap:
                self._flap(idx, next(stamps))
                changed = True
        return changed

    def _later(self, at: int, action: Callable[[int], None]) -> None:
        heapq.heappush(self._pending, (at, next(self._order), action))

    def _status(self, idx: int) -> int:
        return self.fleet.status_of(idx)

    def _if(self, idx: int, expected: int, action: Callable[[int], None]
            ) -> Callable[[int], None]:
        """``action``, unless the instance moved on meanwhile (an incident, a crash)."""
        def guarded(when: int) -> None:
            if self._status(idx) == expected:
                action(when)
        return guarded

    def _back(self, idx: int) -> Callable[[int], None]:
        fleet = self.fleet

        def healthy(when: int) -> None:
            fleet.change(idx, when, "HEALTHY")
        return healthy

    def _wake(self, idx: int) -> Callable[[int], None]:
        fleet = self.fleet

        def wake(when: int) -> None:
            fleet.change(idx, when, "STARTING")
            self._later(when + self._scaled(self.rng.uniform(0.2, 5)), self._if(
                idx, S["STARTING"], lambda t: fleet.change(idx, t, "HEALTHY")))
        return wake

    def _flap(self, idx: int, when: int) -> None:
        fleet, rng = self.fleet, self.rng
        fleet.change(idx, when, "UNHEALTHY")

        def recover(at: int) -> None:
            if rng.random() < 0.8:
                fleet.change(idx, at, "HEALTHY")
            else:
                self._crash(idx, at)
        self._later(when + self._scaled(rng.uniform(30, 600)),
                    self._if(idx, S["UNHEALTHY"], recover))

    def _crash(self, idx: int, when: int, *, fail_until: int = 0) -> None:
        """ERROR, then a new instance in the slot; it fails too while ``fail_until``."""
        fleet, rng = self.fleet, self.rng
        fleet.change(idx, when, "ERROR")

        def replace(at: int) -> None:
            new = fleet.continue_slot(idx, at, "ALLOCATING")
            started = at + self._scaled(rng.uniform(1, 5))

            def starting(t: int) -> None:
                fleet.change(new, t, "STARTING")
                settle = t + self._scaled(rng.uniform(5, 40))
                if settle < fail_until:
                    self._later(settle, self._if(new, S["STARTING"], lambda u: self._crash(
                        new, u, fail_until=fail_until)))
                else:
                    self._later(max(settle, fail_until), self._if(
                        new, S["STARTING"], lambda u: fleet.change(new, u, "HEALTHY")))
            self._later(started, self._if(new, S["ALLOCATING"], starting))
        self._later(when + self._scaled(rng.uniform(5, 30)), replace)

    # -- incidents ---------------------------------------------------------------

    def inject_incident(self, service_id: str, kind: str = "crash_loop",
                        duration: str | pd.Timedelta = "5min") -> Incident:
        """Force an incident on every running instance of a service, starting now."""
        if kind not in INCIDENTS:
            raise ValueError(f"kind must be one of {', '.join(INCIDENTS)}, got {kind!r}")
        span = parse_duration(duration, "duration")
        fleet = self.fleet
        known = {s.service_id: s for s in fleet.services}
        by_name = {f"{fleet.app_names[s.app_id]}/{fleet.service_names[s.service_id]}":
                   s.service_id for s in fleet.services}
        service_id = by_name.get(service_id, service_id)
        if service_id not in known:
            raise ValueError(f"service_id {service_id!r} is not a service of this fleet")
        with self._lock:
            now = self.now_us()
            stamps = itertools.count(max(now, fleet.now_us))
            end = now + self._scaled(span.total_seconds())
            hit = [i for i in range(len(fleet.inst["status"]))
                   if fleet.inst["service"][i] == service_id
                   and self._status(i) in RUNNING]
            self._busy[service_id] = end
            for idx in hit:
                when = next(stamps)
                if kind == "unhealthy":
                    fleet.change(idx, when, "UNHEALTHY")
                    self._later(end, self._if(idx, S["UNHEALTHY"], self._back(idx)))
                elif kind == "scale_to_zero":
                    fleet.change(idx, when, "SLEEPING")
                    self._later(end, self._if(idx, S["SLEEPING"], self._wake(idx)))
                else:
                    self._crash(idx, when, fail_until=end)
            def calm(_: int, service: str = service_id) -> None:
                self._busy.pop(service, None)
            self._later(end, calm)
            fleet.rebuild()
            self._on_change()
            ids = tuple(str(fleet.inst["id"][i]) for i in hit)
        incident = Incident(service_id, kind, pd.Timestamp(now * 1000, tz="UTC"),
                            pd.Timestamp(end * 1000, tz="UTC"), ids)
        self.incidents.append(incident)
        return incident
