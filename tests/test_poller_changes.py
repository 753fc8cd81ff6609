"""The poller's status changes, found with whole-column operations, equal the former
row-by-row walk's (kept below as the reference), poll after poll: late events, repeated
statuses, events that tell no status, instances of no known service, a first poll."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._classify import classify_events
from koyeb_analytics.labels import service_labels
from koyeb_analytics.poller import CHANGE_COLUMNS, Poller

T0 = pd.Timestamp("2026-11-20T12:00:00Z")
MESSAGES = {"ALLOCATING": "Instance created. Preparing to start...",
            "STARTING": "Instance is starting",
            "HEALTHY": "Instance is healthy. All health checks are passing.",
            "UNHEALTHY": "Instance is unhealthy",
            None: "Download progress: 40%"}  # tells no status


def reference(poller: Poller, new: pd.DataFrame, prime: bool) -> pd.DataFrame:
    """The former ``Poller._changes`` (state updated in place)."""
    if prime:
        poller._primed = True
    ids = set(poller.instances["id"])
    new = new[new["instance_id"].isin(ids)].sort_values(["when", "id"], kind="stable")
    status = classify_events(new)["status"]
    labels = service_labels(poller.instances)
    service_of = dict(zip(poller.instances["id"], poller.instances["service_id"],
                          strict=True))
    rows = []
    for (_, ev), st in zip(new.iterrows(), status, strict=True):
        if not isinstance(st, str):
            continue
        iid = ev["instance_id"]
        seen = poller._seen_when.get(iid)
        late = not prime and seen is not None and ev["when"] < seen
        if late:
            old = poller._status_before(iid, ev["when"], ev["id"])
            poller.late_events += 1
        else:
            old = poller._status.get(iid)
            poller._status[iid] = st
            poller._seen_when[iid] = ev["when"]
            if old == st:
                continue
        svc = service_of.get(iid)
        label = labels.get(svc, str(svc)[:8]) if isinstance(svc, str) else "?"
        rows.append({"when": ev["when"], "service": label, "service_id": svc,
                     "instance_id": iid, "old": old, "new": st, "message": ev["message"],
                     "event_id": ev["id"], "late": late})
    found = pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
    if prime:
        poller._stand()
        return found.iloc[0:0]
    poller.changes = pd.concat([poller.changes, found], ignore_index=True) if len(
        poller.changes) else found
    return found


def poller_with(instances: pd.DataFrame) -> Poller:
    p = Poller(ka.KoyebClient("t" * 64, base_url="http://127.0.0.1:9"), window="1d")
    p.instances = instances
    p._primed = True
    return p


def batch(rng: np.random.Generator, start: int, n: int, ids: list[str],
          minutes: float) -> pd.DataFrame:
    statuses = list(MESSAGES)
    picks = rng.integers(0, len(statuses), n)
    return pd.DataFrame({
        "id": [f"e{start + k:06d}" for k in range(n)],
        "instance_id": pd.array(rng.choice(ids, n), dtype=object),
        "when": (T0 + pd.to_timedelta(rng.uniform(0, minutes, n).round(), unit="min")
                 ).astype("datetime64[us, UTC]"),
        "type": "instance.event", "metadata": [{} for _ in range(n)],
        "message": [MESSAGES[statuses[k]] for k in picks]})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_changes_equal_the_row_by_row_walk(seed):
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(12)]
    instances = pd.DataFrame({
        "id": ids, "service_id": [f"svc-{k % 4}-0000-aaaa" for k in range(11)] + [None],
        "status": ["HEALTHY"] * 12, "app_name": "app",
        "service_name": ["api", "web", "db", None] * 3})
    ours, theirs = poller_with(instances), poller_with(instances)
    events = pd.DataFrame()
    total = 0
    for round_ in range(6):
        # Each poll reaches further; some of its events are older than ones shown before.
        new = batch(rng, total, 40, ids + ["stranger"], minutes=30 + 30 * round_)
        total += len(new)
        events = pd.concat([events, new], ignore_index=True)
        ours.events = theirs.events = events
        prime = round_ == 0
        expected = reference(theirs, new, prime)
        got = ours._changes(new, prime=prime)
        assert len(expected) or prime
        pd.testing.assert_frame_equal(got, expected)
        pd.testing.assert_frame_equal(ours.changes, theirs.changes)
        assert ours._status == theirs._status
        assert ours._seen_when == theirs._seen_when
        assert ours.late_events == theirs.late_events
    assert ours.late_events > 0  # the late path was taken


def test_no_status_in_the_batch_gives_no_change():
    instances = pd.DataFrame({"id": ["i0"], "service_id": ["s"], "status": ["HEALTHY"],
                              "app_name": "a", "service_name": "api"})
    p = poller_with(instances)
    new = batch(np.random.default_rng(0), 0, 3, ["i0"], 5).assign(
        message=MESSAGES[None])
    p.events = new
    got = p._changes(new)
    assert got.empty and list(got.columns) == list(CHANGE_COLUMNS)
    assert p._status == {} and p.late_events == 0
