"""Snapshots: the frames come back equal, and so do the numbers computed from them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import koyeb_analytics as ka

from .conftest import NOW, fast_client


@pytest.fixture(scope="module")
def frames(sim):
    client = fast_client(sim)
    inst = ka.load_instances(client, details=True, progress=False)
    ev = ka.load_events(client, progress=False)
    iv = ka.lifecycles(inst, ev, until=NOW)
    transcript = pd.DataFrame({"run_id": [1], "command": ["uptime"], "stdout": ["ok\n"]})
    return inst, ev, iv, transcript


def test_round_trip_is_identical(frames, tmp_path):
    inst, ev, iv, transcript = frames
    ka.save_snapshot(tmp_path / "snap", instances=inst, events=ev, intervals=iv,
                     transcript=transcript, note="incident 42")
    back = ka.load_snapshot(tmp_path / "snap")
    for name, original in (("instances", inst), ("events", ev), ("intervals", iv),
                           ("transcript", transcript)):
        pd.testing.assert_frame_equal(back[name], original, check_exact=True)
        assert back[name].attrs.keys() == original.attrs.keys()
    assert back["instances"].attrs["fetched_at"] == inst.attrs["fetched_at"]
    assert back["events"]["metadata"].tolist() == ev["metadata"].tolist()  # dicts, exact
    manifest = ka.read_manifest(tmp_path / "snap")
    assert manifest["frames"]["events"]["rows"] == len(ev)
    assert manifest["note"] == "incident 42" and manifest["version"] == ka.__version__
    assert len(manifest["frames"]["instances"]["sha256"]) == 64


def test_rerun_from_snapshot_gives_the_same_numbers(frames, tmp_path):
    inst, ev, iv, _ = frames
    ka.save_snapshot(tmp_path / "s", instances=inst, events=ev)
    snap = ka.load_snapshot(tmp_path / "s")
    again = ka.lifecycles(snap["instances"], snap["events"], until=NOW)
    pd.testing.assert_frame_equal(again, iv)
    pd.testing.assert_frame_equal(ka.uptime(again), ka.uptime(iv))
    pd.testing.assert_frame_equal(ka.incidents(again), ka.incidents(iv))


def test_damaged_or_partial_snapshots_name_the_file(frames, tmp_path):
    inst, ev, _, _ = frames
    root = ka.save_snapshot(tmp_path / "s", instances=inst, events=ev)
    data = (root / "events.parquet").read_bytes()
    (root / "events.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ka.SnapshotError, match="events.parquet does not match its checksum"):
        ka.load_snapshot(root)
    (root / "events.parquet").unlink()
    with pytest.raises(ka.SnapshotError, match="events.parquet is missing"):
        ka.load_snapshot(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(ka.SnapshotError, match="manifest.json is not valid JSON"):
        ka.load_snapshot(root)
    (root / "manifest.json").unlink()
    with pytest.raises(ka.SnapshotError, match="manifest.json is missing"):
        ka.load_snapshot(root)
    with pytest.raises(ka.SnapshotError, match="no snapshot"):
        ka.load_snapshot(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="nothing to save"):
        ka.save_snapshot(tmp_path / "empty")


def test_manifest_holds_no_token(frames, tmp_path, sim):
    inst, ev, _, _ = frames
    root = ka.save_snapshot(tmp_path / "s", instances=inst, events=ev)
    for file in root.iterdir():
        assert sim.token.encode() not in file.read_bytes()
    assert json.loads((root / "manifest.json").read_text())["frames"]["instances"]["attrs"][
        "source"] == sim.url
