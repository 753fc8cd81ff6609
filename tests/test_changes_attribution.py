"""ka.changes and ka.suspects: the diff (env keys, never values), and attribution
graded against the simulator's truth on three seeds, beside a baseline of randomly
timed incidents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW

SEEDS = (0, 1, 6)


@dataclass
class Grade:
    """Attribution of one simulated fleet's incidents against its truth."""

    caused: int
    named_right: int
    clean: int
    named_wrongly: int
    baseline: float
    deployments_per_service_day: float

    @property
    def hit_rate(self) -> float:
        return self.named_right / self.caused if self.caused else float("nan")

    @property
    def false_rate(self) -> float:
        return self.named_wrongly / self.clean if self.clean else float("nan")


def grade(seed: int, *, days: int = 7, services: int = 12, vocabulary: str = "invented",
          lookback: str = "1h", samples: int = 2000, **fleet) -> Grade:
    """Load a window (the fleet's last ``days - 1`` days: its first day is the birth of
    every service), find incidents and suspects, and compare with the truth.

    An incident is change-caused when a truth incident of its service with a cause
    overlaps it; it names the right change when its nearest suspect is that cause.
    The baseline is the share of ``samples`` randomly timed incidents (random times in
    the window, in services drawn like the real incidents') that name a change.
    """
    with ka.simulate(seed=seed, days=days, services=services, now=NOW,
                     vocabulary=vocabulary, **fleet) as sim:
        client = sim.client()
        w = ka.load_window(client, window=f"{days - 1}D", until=sim.now, progress=False)
        inc = ka.analyse(w).incidents
        dep = ka.load_deployments(client, since=w.since, until=w.until, progress=False)
        act = ka.load_activities(client, since=w.since, until=w.until, progress=False)
        truth = sim.changes.truth()
    ch = ka.changes(dep, act)
    first = ka.suspects(inc, ch, lookback=lookback)
    first = first[first["rank"] == 1].set_index("incident")["change_id"]
    caused = right = clean = wrong = 0
    for i, row in enumerate(inc.itertuples()):
        hit = truth[(truth["service_id"] == row.service_id) & (truth["start"] <= row.end)
                    & (truth["end"] >= row.start)]
        causes = set(hit["cause_id"].dropna())
        named = first.get(i)
        if causes:
            caused += 1
            right += named in causes
        else:
            clean += 1
            wrong += named is not None
    rng = np.random.default_rng(seed)
    span = (w.until - w.since).total_seconds()
    groups = inc["service_id"].astype(object).to_numpy()
    fake = pd.DataFrame({
        "service_id": rng.choice(groups, samples) if len(groups) else [],
        "start": w.since + pd.to_timedelta(rng.uniform(0, span, samples), unit="s")})
    base = ka.suspects(fake, ch, lookback=lookback)["incident"].nunique() / samples
    rolled = dep[dep["in_window"] & (dep["status"] != "STASHED")]
    per_day = len(rolled) / services / (span / 86400)
    return Grade(caused, right, clean, wrong, base, per_day)


@pytest.fixture(scope="module")
def grades():
    return [grade(seed) for seed in SEEDS]


def test_change_caused_incidents_name_the_right_change_first(grades):
    caused = sum(g.caused for g in grades)
    right = sum(g.named_right for g in grades)
    assert all(g.caused >= 5 for g in grades)
    assert right / caused >= 0.95, [(g.named_right, g.caused) for g in grades]


def test_incidents_without_a_change_rarely_name_one(grades):
    clean = sum(g.clean for g in grades)
    wrong = sum(g.named_wrongly for g in grades)
    assert clean >= 60
    assert wrong / clean <= 0.05, [(g.named_wrongly, g.clean) for g in grades]
    # the rate at which the simulator changes things is what the bound holds at
    assert all(0.5 <= g.deployments_per_service_day <= 1.5 for g in grades)
    # and attribution is far above what random timing gives
    assert all(g.hit_rate > 10 * g.baseline for g in grades)


def _dep(i, parent, definition, status="STOPPED", t="2026-01-01"):
    return {"id": i, "parent_id": parent, "service_id": "s", "app_id": "a", "status": status,
            "created_at": pd.Timestamp(t, tz="UTC"), "definition": definition}


def test_the_diff_names_env_keys_and_never_their_values():
    old = {"docker": {"image": "app:1"}, "env": [
        {"key": "DATABASE_URL", "value": "postgres://u:hunter2@db/x", "scopes": ["region:fra"]},
        {"key": "TOKEN", "secret": "tok-secret-ref"}, {"key": "GONE", "value": "bye-value"}],
        "regions": ["fra"], "instance_types": [{"scopes": ["region:fra"], "type": "nano"}],
        "scalings": [{"scopes": ["region:fra"], "min": 1, "max": 2}],
        "strategy": {"type": "DEPLOYMENT_STRATEGY_TYPE_DEFAULT"}}
    new = {"docker": {"image": "app:2"}, "env": [
        {"key": "DATABASE_URL", "value": "postgres://u:s3cret-NEW@db/x", "scopes": ["region:fra"]},
        {"key": "TOKEN", "secret": "tok-secret-ref"}, {"key": "ADDED", "value": "new-value"}],
        "regions": ["fra", "was"], "instance_types": [{"scopes": ["region:fra"], "type": "small"}],
        "scalings": [{"scopes": ["region:fra"], "min": 1, "max": 4}],
        "strategy": {"type": "DEPLOYMENT_STRATEGY_TYPE_ROLLING"}}
    dep = pd.DataFrame([_dep("d1", None, old), _dep("d2", "d1", new, "HEALTHY", "2026-01-02")])
    ch = ka.changes(dep)
    row = ch[(ch["change_id"] == "d2") & (ch["event"] == "created")].iloc[0]
    assert row["env_added"] == ["ADDED"] and row["env_removed"] == ["GONE"]
    assert row["env_changed"] == ["DATABASE_URL"]  # TOKEN's reference did not change
    assert row["what"] == ["image", "env", "instance_types", "scaling", "regions", "strategy"]
    assert (row["image_from"], row["image_to"]) == ("app:1", "app:2")
    assert "max 2 → 4" in row["summary"] and "nano → small" in row["summary"]
    text = ch.to_csv() + repr(ch.to_dict())
    for secret in ("hunter2", "s3cret-NEW", "bye-value", "new-value", "tok-secret-ref"):
        assert secret not in text


def test_an_unreadable_definition_is_kept_raw_and_said():
    dep = pd.DataFrame([_dep("d1", None, {"env": []}),
                        _dep("d2", "d1", "<<not a definition>>", "HEALTHY", "2026-01-02")])
    ch = ka.changes(dep)
    row = ch[(ch["change_id"] == "d2") & (ch["event"] == "created")].iloc[0]
    assert row["summary"] == "definition unreadable" and row["what"] == ["unreadable"]
    assert any("could not be read" in n for n in ch.attrs["notes"])
    assert dep["definition"][1] == "<<not a definition>>"


def test_events_activities_and_suspect_rules():
    t = pd.Timestamp("2026-01-01 12:00", tz="UTC")
    dep = pd.DataFrame([{**_dep("d1", None, {}, "ERROR"), "created_at": t - pd.Timedelta("50min"),
                         "succeeded_at": pd.NaT, "terminated_at": t - pd.Timedelta("5min")},
                        {**_dep("d0", None, {}, "STASHED"), "created_at": t}])
    act = pd.DataFrame({
        "id": ["a1", "a2", "a3", "a4", "a5"],
        "created_at": [t - pd.Timedelta(m) for m in ("40min", "30min", "20min", "10min", "2h")],
        "verb": ["autoscaled", "manually-scaled", "rotated", "created", "paused"],
        "object_type": ["service", "service", "service", "deployment", "service"],
        "object_id": ["s", "s", "s", "d1", "s"], "object_name": ["api"] * 5,
        "service_id": ["s"] * 5, "app_id": ["a"] * 5,
        "count": [3, 1, None, None, None], "previous_count": [2, 2, None, None, None],
        "region": ["fra", "fra", None, None, None], "actor_name": ["x"] * 5})
    ch = ka.changes(dep, act)
    assert "d0" not in set(ch["change_id"])                  # STASHED: never deployed
    assert (ch["change_id"] == "a4").sum() == 0              # d1's own activity: d1's rows
    assert set(ch.loc[ch["change_id"] == "d1", "event"]) == {"created", "failed"}
    assert ch.loc[ch["change_id"] == "a3", "kind"].iloc[0] == "other"   # unknown verb kept
    assert ch["changed_at"].is_monotonic_increasing
    inc = pd.DataFrame({"service_id": ["s", "other"], "start": [t, t],
                        "end": [t + pd.Timedelta("9min")] * 2})
    sus = ka.suspects(inc, ch)
    # nearest first; the failure (an outcome) and the scale-up are no suspects; the
    # pause is outside the hour
    assert sus["change_id"].tolist() == ["a3", "a2", "d1"]
    assert sus["rank"].tolist() == [1, 2, 3] and (sus["incident"] == 0).all()
    assert sus["before"].iloc[0] == pd.Timedelta("20min")
    assert ka.suspects(inc, ch, lookback="3h")["change_id"].tolist()[-1] == "a5"
    with pytest.raises(ValueError, match="lookback"):
        ka.suspects(inc, ch, lookback="soon")
    with pytest.raises(ValueError, match="lacks the column"):
        ka.suspects(inc.drop(columns="start"), ch)
    empty = ka.suspects(inc.iloc[:0], ch)
    assert empty.empty and "change_id" in empty


def test_changes_of_nothing_is_an_empty_frame_of_the_same_columns():
    out = ka.changes(None, None)
    assert out.empty and tuple(out.columns) == ka.analysis.CHANGE_COLUMNS
    assert str(out["changed_at"].dtype) == "datetime64[us, UTC]"


def test_a_manual_scale_up_is_never_a_suspect():
    t = pd.Timestamp("2026-01-01 12:00", tz="UTC")
    act = pd.DataFrame({"id": ["up", "down"],
                        "created_at": [t - pd.Timedelta("20min"), t - pd.Timedelta("10min")],
                        "verb": ["manually-scaled"] * 2, "object_type": ["service"] * 2,
                        "object_id": ["s"] * 2, "object_name": ["api"] * 2,
                        "service_id": ["s"] * 2, "app_id": ["a"] * 2, "count": [4, 1],
                        "previous_count": [2, 4], "region": ["fra"] * 2,
                        "actor_name": ["x"] * 2})
    inc = pd.DataFrame({"service_id": ["s"], "start": [t], "end": [t + pd.Timedelta("9min")]})
    assert ka.suspects(inc, ka.changes(pd.DataFrame(), act))["change_id"].tolist() == ["down"]
