"""Following the fleet as it changes: one poller for the notebook view and the terminal.

Koyeb offers no event feed, so :class:`Poller` polls, politely: each poll reads only the
events newer than the newest one seen (less a small overlap, deduplicated by id), which
costs one request when nothing happened, and lists the instances again only when new
events show a change. On a failure it keeps everything already received and backs off,
from the polling interval up to 30 s; it never stops by itself.

:func:`~koyeb_analytics.follow` (the notebook's live view) and ``koyeb-analytics watch``
are both built on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .analysis._classify import classify_events
from .analysis._lifecycle import lifecycles
from .analysis._startstatus import start_status
from .api._checks import check_client, check_str
from .api._client import KoyebClient
from .errors import DeadlineExceeded, IncompleteListingError, KoyebError
from .labels import service_labels
from .load._frames import build_frame
from .load._loaders import load_events, load_instances
from .load._platform import empty_platform, read_platform
from .schema import EVENT_COLUMNS, INSTANCE_COLUMNS, STATUSES
from .sources import read_with_lookbehind
from .store._history import HistoryStore
from .textsafe import visible
from .timewindow import DurationLike, parse_duration, utcnow

MAX_BACKOFF = 30.0
"""Seconds: the longest wait between polls while the API fails (as the console does)."""
CHANGE_COLUMNS = ("when", "service", "service_id", "instance_id", "old", "new", "message",
                  "event_id", "late")


@dataclass(frozen=True)
class PollResult:
    """What one poll brought: the new status changes, or the failure it met."""

    changes: pd.DataFrame
    new_events: int
    error: str | None
    delay: float
    """Seconds until the next poll (the interval, or longer while backing off)."""


class Poller:
    """Keep a window's instances and events up to date, reading only what is new.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    window
        How far back the frames reach (``"2h"``); older events are dropped as time
        passes.
    every
        The polling interval (``"15s"``); after a failed poll the wait doubles from
        twice it, up to 30 s.
    service_id, app_id
        Only this service's (or app's) instances and their events.
    store
        A :class:`~koyeb_analytics.HistoryStore` that every poll also appends to.
    overlap
        How far before the newest event seen each poll reads again (default 10 min):
        the horizon for late events. The events endpoint lists newest first, and an
        event can arrive after newer ones of its instance: such a late event is placed
        where its ``when`` says (the window's history is corrected, the current state
        is not changed), reported once with ``late=True`` and counted in
        :attr:`late_events`. An event later than the horizon is never seen.
    lookbehind
        How far before the window's start the first poll reads, for each instance's
        status then (as :func:`~koyeb_analytics.load_window`; ``0`` reads none). Events
        that later fall out of the window keep telling it.
    platform
        Read the platform's lines where two events betray a lost one between them
        (as ``load_window``'s default ``platform="lost"``; each gap once): the
        intervals place the lost change where its line is. False reads none.

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> from koyeb_analytics.poller import Poller
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     p = Poller(sim.client(), window="6h", every="5s")
    ...     first = p.poll()
    ...     again = p.poll()
    >>> first.new_events > 0, again.new_events
    (True, 0)
    """

    def __init__(self, client: KoyebClient, *, window: DurationLike = "2h",
                 every: DurationLike = "15s",
                 service_id: str | None = None, app_id: str | None = None,
                 store: Any = None, overlap: DurationLike = "10min",
                 lookbehind: DurationLike | int = "6h", platform: bool = True) -> None:
        self.client = check_client(client)
        self.window = parse_duration(window, "window")
        self.every = parse_duration(every, "every").total_seconds()
        self.overlap = parse_duration(overlap, "overlap")
        self.lookbehind = pd.Timedelta(0) if lookbehind == 0 or lookbehind == "0" else \
            parse_duration(lookbehind, "lookbehind")
        # The last status-telling event of each instance before the window: the status
        # at the window's start, as it slides.
        self._before = build_frame({}, EVENT_COLUMNS)
        if not isinstance(platform, bool):
            raise TypeError(f"platform must be True or False, got {platform!r}")
        self.platform = platform
        self._platform = empty_platform()  # lines read around lost events
        self._gaps_read: set[tuple[str, pd.Timestamp, pd.Timestamp]] = set()
        self.service_id = check_str("service_id", service_id)
        self.app_id = check_str("app_id", app_id)
        if store is not None:
            if not isinstance(store, HistoryStore):
                raise TypeError(f"store must be a HistoryStore, got {type(store).__name__}")
        self.store = store
        self.instances = load_instances_empty()
        self.events = build_frame({}, EVENT_COLUMNS)
        self.changes = pd.DataFrame({c: pd.Series(dtype=object) for c in CHANGE_COLUMNS})
        self.polls = 0
        self.failures = 0
        self.last_success: pd.Timestamp | None = None
        self.last_error: str | None = None
        self.delay = self.every
        self._newest: pd.Timestamp | None = None
        self._status: dict[str, str] = {}
        self._seen_when: dict[str, pd.Timestamp] = {}  # newest status event per instance
        self.late_events = 0
        """Events that arrived after newer ones of their instance (see ``overlap``)."""
        self._primed = False  # where each instance stands is known (a listing succeeded)
        self._lock = threading.Lock()

    @property
    def backing_off(self) -> bool:
        """True while polls fail and the interval is stretched."""
        return self.failures > 0

    def intervals(self) -> pd.DataFrame:
        """The window's status intervals (:func:`~koyeb_analytics.lifecycles`), the
        status at its start from the instance records and the events before it."""
        with self._lock:
            inst, ev, before = self.instances, self.events, self._before
        now = utcnow()
        since = now - self.window
        # the window's events classify those before it too (types learned from all)
        start = start_status(inst, pd.concat([before, ev], ignore_index=True), since) \
            if len(inst) else None
        ev = ev[~(ev["when"] < since)]
        iv = lifecycles(inst, ev, since=since, until=now, start_status=start,
                        platform=self._platform)
        if not self.platform:
            return iv
        new = [g for g in iv.attrs["lost_events"] if g["betrayed"] and not g["placed"]
               and (g["instance_id"], g["after"], g["before"]) not in self._gaps_read]
        if not new:
            return iv
        # Each gap is read once (a failure, or lines that say nothing, leave the guess).
        self._gaps_read |= {(g["instance_id"], g["after"], g["before"]) for g in new}
        try:
            said = read_platform(self.client, new)
        except KoyebError:
            return iv
        horizon = since - self.lookbehind  # older gaps and lines left the window
        with self._lock:
            kept = self._platform[self._platform["ts"] >= horizon]
            self._platform = pd.concat([kept, said], ignore_index=True) if len(kept) \
                else said
            self._gaps_read = {k for k in self._gaps_read if k[2] >= horizon}
        return lifecycles(inst, ev, since=since, until=now, start_status=start,
                          platform=self._platform)

    def poll(self) -> PollResult:
        """Read what is new; return the status changes it brought (or the failure)."""
        self.polls += 1
        now = utcnow()
        since = now - self.window if self._newest is None else \
            max(self._newest - self.overlap, now - self.window)
        received: pd.DataFrame | None = None
        error: str | None = None
        complete = True
        first = self._newest is None and not len(self.events)
        try:
            if first and self.lookbehind > pd.Timedelta(0):
                # Once: the events before the window too, for the status at its start
                # (as load_window reads them).
                self._list_instances()
                received, _ = read_with_lookbehind(self.client, self.instances, since,
                                                   since - self.lookbehind)
            else:
                received = load_events(self.client, since=since, progress=False)
        except IncompleteListingError as exc:
            # Keep the newest pages; the mark does not move, so the next poll reads the
            # rest again.
            received, complete = exc.partial, False
            error = self._reason(exc, "/v1/instance_events")
        except KoyebError as exc:
            error = self._reason(exc, "/v1/instance_events")
        new = self._merge(received, complete) if received is not None else \
            build_frame({}, EVENT_COLUMNS)
        if (len(new) or not self._primed or self._unknown(new)) and error is None:
            try:
                self._list_instances()
            except KoyebError as exc:
                error = self._reason(exc, "/v1/instances")
        changes = self._changes(new, prime=error is None and not self._primed)
        if self.store is not None and (len(new) or not self._primed):
            try:
                self.store.append(events=received if received is not None else None,
                                  instances=self.instances if error is None else None,
                                  read_since=since, complete=complete and error is None,
                                  simulated=bool(self.client.simulated))
            except (KoyebError, OSError) as exc:
                error = f"history store: {exc}"
        if error is None:
            self.failures, self.last_error = 0, None
            self.last_success = now
            self.delay = self.every
        else:
            self.failed(error)
        return PollResult(changes, len(new), error, self.delay)

    def _reason(self, exc: KoyebError, path: str) -> str:
        """Why a poll failed, in words: an API that stops answering is named as such,
        with the URL it did not answer on and after how long."""
        chain: list[BaseException | None] = [exc, getattr(exc, "cause", None),
                                             exc.__cause__]
        if any(isinstance(e, DeadlineExceeded) for e in chain):
            tries = self.client.max_retries + 1
            lead = "did not answer" if self.last_success is None else "stopped answering"
            text = (f"the API {lead}: GET {self.client.base_url}{path} "
                    f"timed out after {self.client.timeout:g} s"
                    + (f" (each of {tries} tries)" if tries > 1 else ""))
            partial = getattr(exc, "partial", None)
            if partial is not None and len(partial):
                text += f"; the {len(partial)} row(s) received before are kept"
            return str(self.client.scrub(text))
        return str(self.client.scrub(str(exc)))

    def failed(self, error: str) -> None:
        """Count a failed poll and stretch the interval (doubling, up to 30 s)."""
        self.failures += 1
        self.last_error = error
        self.delay = min(MAX_BACKOFF, max(self.every, self.every * 2 ** self.failures))

    def _merge(self, received: pd.DataFrame, complete: bool) -> pd.DataFrame:
        known = set(self.events["id"])
        new = received[~received["id"].isin(known) & received["id"].notna()]
        with self._lock:
            horizon = utcnow() - self.window
            both = pd.concat([self.events, new], ignore_index=True) if len(new) else \
                self.events
            self._keep_before(both[(both["when"] < horizon).to_numpy()])
            both = both[~(both["when"] < horizon)]
            both = both.sort_values(["when", "id"], kind="stable").reset_index(drop=True)
            both.attrs = dict(received.attrs)
            self.events = both
        complete = complete and bool(received.attrs.get("complete", True))
        if complete and received["when"].notna().any():
            # Never past our own clock: a server clock ahead would hide what follows.
            newest = min(received["when"].max(), utcnow())
            if self._newest is None or newest > self._newest:
                self._newest = newest
        return new.reset_index(drop=True)

    def _keep_before(self, old: pd.DataFrame) -> None:
        """Keep, per instance, the last event before the window that tells a status."""
        if not len(old):
            return
        told = old[classify_events(old)["status"].notna().to_numpy()]
        both = pd.concat([self._before, told], ignore_index=True) if len(self._before) \
            else told
        self._before = both.sort_values(["when", "id"], kind="stable").drop_duplicates(
            "instance_id", keep="last").reset_index(drop=True)

    def _unknown(self, new: pd.DataFrame) -> bool:
        return bool(len(new)) and not set(new["instance_id"].dropna()) <= set(
            self.instances["id"])

    def _list_instances(self) -> None:
        inst = load_instances(self.client, window=self.window, service_id=self.service_id,
                              app_id=self.app_id, progress=False)
        with self._lock:
            self.instances = inst
            if self.service_id is not None or self.app_id is not None:
                ids = set(inst["id"])
                self.events = self.events[self.events["instance_id"].isin(ids)].reset_index(
                    drop=True)

    def _changes(self, new: pd.DataFrame, prime: bool = False) -> pd.DataFrame:
        """Status changes in ``new``, in time order: old -> new per instance.

        ``prime``: the first successful poll, whose events are the window's history,
        not news; the listing then says where each instance stands."""
        if prime:
            self._primed = True
        if not len(new) or not self._primed:
            if prime:
                self._stand()
            return self.changes.iloc[0:0]
        ids = set(self.instances["id"])
        new = new[new["instance_id"].isin(ids)].sort_values(["when", "id"], kind="stable")
        status = classify_events(new)["status"]
        labels = service_labels(self.instances)
        service_of = dict(zip(self.instances["id"], self.instances["service_id"],
                              strict=True))
        told = status.notna().to_numpy()
        ev = new[told].reset_index(drop=True)
        st = status[told].astype(str).to_numpy(dtype=object)
        iid = ev["instance_id"].to_numpy(dtype=object)
        # Events are in time order, so only the newest event an earlier poll showed can
        # make one late: a late event is history, not the present, and moves nothing.
        seen = pd.to_datetime(pd.Series(iid, dtype=object).map(self._seen_when), utc=True)
        late = np.zeros(len(ev), bool) if prime else \
            (ev["when"] < seen).to_numpy(dtype=bool)
        # The old status of a present change: its instance's previous event here, or
        # where the instance stood before this poll.
        now = pd.DataFrame({"iid": iid[~late], "st": st[~late]})
        before = now.groupby("iid", sort=False)["st"].shift()
        first = before.isna().to_numpy()
        old = np.full(len(ev), None, dtype=object)
        previous = before.to_numpy(dtype=object, copy=True)
        previous[first] = [self._status.get(i) for i in now["iid"][first]]
        old[~late] = previous
        old[late] = [self._status_before(i, w, e) for i, w, e in
                     zip(iid[late], ev["when"][late], ev["id"][late], strict=True)]
        self.late_events += int(late.sum())
        last = now.assign(when=ev["when"][~late].array).drop_duplicates("iid", keep="last")
        self._status.update(zip(last["iid"], last["st"], strict=True))
        self._seen_when.update(zip(last["iid"], last["when"], strict=True))
        keep = late | (old != st)
        svc = pd.Series(iid[keep], dtype=object).map(service_of)
        named = svc.map(labels).astype(object)
        short = svc.map(lambda v: v[:8] if isinstance(v, str) else "?")
        found = pd.DataFrame({
            "when": list(ev["when"][keep]),
            "service": list(named.where(named.notna(), short)),
            "service_id": list(svc.astype(object).where(svc.notna(), None)),
            "instance_id": list(iid[keep]), "old": list(old[keep]), "new": list(st[keep]),
            "message": list(ev["message"][keep]), "event_id": list(ev["id"][keep]),
            "late": list(late[keep])}, columns=list(CHANGE_COLUMNS))
        if prime:
            self._stand()
            return found.iloc[0:0]
        with self._lock:
            self.changes = pd.concat([self.changes, found], ignore_index=True) if len(
                self.changes) else found
        return found

    def _status_before(self, iid: str, when: pd.Timestamp, event_id: Any) -> str | None:
        """The status an instance had just before ``when``, from the events held."""
        with self._lock:
            ev = self.events
        mine = ev[(ev["instance_id"] == iid).to_numpy() & (ev["when"] <= when).to_numpy()
                  & (ev["id"] != event_id).to_numpy()]
        told = classify_events(mine)["status"].dropna() if len(mine) else mine
        return str(told.iloc[-1]) if len(told) else None

    def _stand(self) -> None:
        """Where each instance stands now, from the listing (also those whose last
        event is older than the window): the old status of the next changes."""
        self._status.update(zip(self.instances["id"], self.instances["status"].astype(str),
                                strict=True))

    def board(self) -> pd.DataFrame:
        """Per service: instances per status now, and the time of the last change."""
        with self._lock:
            inst, ev = self.instances, self.events
        if inst.empty:
            return pd.DataFrame(columns=["service", *STATUSES, "last_change"])
        labels = service_labels(inst)
        counts = pd.crosstab(inst["service_id"], inst["status"].astype(str))
        counts = counts.reindex(columns=list(STATUSES), fill_value=0)
        last = ev.merge(inst[["id", "service_id"]], left_on="instance_id",
                        right_on="id").groupby("service_id")["when"].max()
        out = counts.assign(last_change=last.reindex(counts.index))
        out.insert(0, "service", [labels.get(s, s[:8]) for s in out.index])
        return out.sort_values("service").reset_index(drop=True)


def load_instances_empty() -> pd.DataFrame:
    """An empty instance frame (the columns load_instances returns, names included)."""
    df = build_frame({}, INSTANCE_COLUMNS)
    df["app_name"] = pd.Series(dtype=df["id"].dtype)
    df["service_name"] = pd.Series(dtype=df["id"].dtype)
    return df


def format_change(row: Any, colour: bool = False) -> str:
    """Format one status change as a terminal line: time, service, instance, old -> new,
    message.

    Every field is data from the API: its control characters are shown as text
    (:func:`~koyeb_analytics.textsafe.visible`), so a message or a name cannot clear the
    screen, retitle the window or write the clipboard. The colour of the new status is
    ours, added after.
    """
    colours = {"HEALTHY": "32", "ERROR": "31", "UNHEALTHY": "33", "STOPPED": "90",
               "SLEEPING": "36"}
    new = visible(row["new"], newlines=False)
    if colour and new in colours:
        new = f"\x1b[{colours[new]}m{new}\x1b[0m"
    when = pd.Timestamp(row["when"]).strftime("%Y-%m-%d %H:%M:%S")
    # Cut before escaping, so that no escape is shown cut in half.
    message = visible(" ".join(str(row["message"]).split())[:120], newlines=False)
    service = visible(row["service"], newlines=False)
    instance = visible(str(row["instance_id"])[:8], newlines=False)
    old = visible(row["old"], newlines=False) if isinstance(row["old"], str) else "new"
    flag = row.get("late")
    late = "  (late)" if isinstance(flag, (bool, np.bool_)) and flag else ""
    return f"{when}  {service:<24} {instance}  {old} -> {new}  {message}{late}"
