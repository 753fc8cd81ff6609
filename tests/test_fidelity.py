"""The simulator does not flatter the client: REST replies as the real API writes them,
and exec as every known Koyeb client speaks it (koyeb-api-facts.md §15)."""

from __future__ import annotations

import base64
import json
import re
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.api._websocket import OP_CLOSE, WebSocket

from .conftest import NOW, fast_client, validator


@pytest.fixture(scope="module")
def mixed():
    with ka.simulate(seed=9, days=2, services=4, now=NOW, time_digits="mixed",
                     vocabulary="opaque") as sim:
        yield sim


def test_mixed_fraction_digits_in_one_reply_parse_to_the_same_frames(mixed):
    reply = mixed.client().get("/v1/instance_events", {"limit": 100})
    digits = {len(m.group(1) or "") for e in reply["events"]
              for m in [re.search(r"(?:\.(\d+))?Z$", e["when"])]}
    # Microsecond times need six digits at least; a quarter are written with nine.
    assert {6, 9} <= digits
    for event in reply["events"]:
        validator("InstanceEvent").validate(event)
    with ka.simulate(seed=9, days=2, services=4, now=NOW, vocabulary="opaque") as plain:
        pd.testing.assert_frame_equal(
            ka.load_events(fast_client(plain), progress=False).drop(columns="id"),
            ka.load_events(fast_client(mixed), progress=False).drop(columns="id"))
        a = ka.load_instances(fast_client(plain), details=True, progress=False)
        b = ka.load_instances(fast_client(mixed), details=True, progress=False)
    cols = ["id", "created_at", "updated_at", "started_at", "succeeded_at", "terminated_at"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_validation_errors_carry_fields_and_types_are_free_strings(mixed):
    client = fast_client(mixed)
    with pytest.raises(ka.BadRequestError) as err:
        client.get("/v1/instances", {"limit": 1000})
    assert err.value.fields and {"field", "description"} <= set(err.value.fields[0])
    assert ka.load_events(client, types=["never.seen.type"], progress=False).empty


def test_the_official_sdk_parses_every_reply(mixed):
    koyeb = pytest.importorskip("koyeb.api")
    modes = [("mixed", True, "opaque"), ("auto", False, "invented"),
             ("mixed", False, "invented"), ("auto", True, "opaque")]
    for digits, nulls, vocabulary in modes:
        with ka.simulate(seed=9, days=1, services=2, now=NOW, time_digits=digits,
                         emit_nulls=nulls, vocabulary=vocabulary) as sim:
            cfg = koyeb.Configuration(host=sim.url)
            cfg.api_key["Bearer"] = sim.token
            cfg.api_key_prefix["Bearer"] = "Bearer"
            api = koyeb.InstancesApi(koyeb.ApiClient(cfg))
            listed = api.list_instances(limit="100")
            assert int(listed.count) == len(listed.instances) or listed.instances
            one = api.get_instance(listed.instances[0].id)
            assert one.instance.id == listed.instances[0].id
            events = api.list_instance_events(limit="100")
            assert len(events.events) == 100


# -- exec: each known client's exact frames -----------------------------------------
def healthy(sim) -> str:
    return next(i for i, s in zip(sim.fleet.inst["id"], sim.fleet.inst["status"],
                                  strict=True) if ka.STATUSES[s] == "HEALTHY")


def stdin(data: bytes, **extra) -> str:
    return json.dumps({**extra, "body": {**extra.pop("body", {}), "stdin": {
        "data": base64.b64encode(data).decode()}}})


def replay(sim, frames: list[str], query: str = "") -> tuple[bytes, int | None, list[dict]]:
    """Send ``frames`` as a client would; return stdout, the exit code and the frames."""
    client = sim.client()
    ws = WebSocket.connect(client.network, client.websocket_url(
        "/v1/streams/instances/exec") + query, subprotocols=client.auth_subprotocols(),
        deadline=time.monotonic() + 10, max_message=2**20)
    ws.set_deadline(time.monotonic() + 20)
    out, code, seen = b"", None, []
    try:
        for frame in frames:
            ws.send(frame)
        while code is None:
            opcode, data = ws.recv()
            if opcode == OP_CLOSE:
                break
            msg = json.loads(data)
            seen.append(msg)
            result = msg.get("result") or {}
            if result.get("stdout"):
                out += base64.b64decode(result["stdout"]["data"])
            if result.get("exited") is True:
                code = result["exit_code"]
    except ka.TransportError:
        pass
    finally:
        ws.close()
    return out, code, seen


def test_the_cli_frames(exec_sim):
    iid = healthy(exec_sim)
    head = {"id": iid, "idType": "INSTANCE_ID"}
    cmd = ["sh", "-c", "read line; echo got:$line; exit 3"]
    out, code, seen = replay(exec_sim, [
        json.dumps({**head, "body": {"command": cmd, "disableTty": True}}),
        stdin(b"hello\n", **head, body={"command": cmd}),
    ])
    assert out == b"got:hello\n" and code == 3
    # Every result frame carries all four keys; streams are null when absent.
    assert all(set(m["result"]) == {"stdout", "stderr", "exited", "exit_code"} for m in seen)
    assert all(m["result"]["exited"] is False and m["result"]["exit_code"] == 0
               for m in seen[:-1])


@pytest.mark.parametrize("client", ["console", "mcp"])
def test_the_console_and_mcp_frames(exec_sim, client):
    iid = healthy(exec_sim)
    first = {"id": iid, "id_type": "INSTANCE_ID", "body": {"command": ["sh"]}}
    if client == "mcp":
        first.pop("id")  # the id in the URL only
    out, code, _ = replay(exec_sim, [
        json.dumps(first),
        json.dumps({"body": {"tty_size": {"height": 40, "width": 120}}}),
        stdin(b"stty size; exit 5\n"),
    ], query=f"?id={iid}")
    assert code == 5 and b"40 120" in out  # no disableTty: a TTY, resized


def test_the_early_python_sdk_frames(exec_sim):
    iid = healthy(exec_sim)
    out, code, _ = replay(exec_sim, [
        json.dumps({"id": iid, "body": {"command": ["echo", "sdk"], "disableTty": True}}),
        json.dumps({"body": {"stdin": {"close": True}}}),
    ])
    assert out == b"sdk\n" and code == 0


def test_cannot_exec_is_failed_precondition_with_the_reason(exec_sim):
    stopped = next(i for i, s in zip(exec_sim.fleet.inst["id"], exec_sim.fleet.inst["status"],
                                     strict=True) if ka.STATUSES[s] == "STOPPED")
    _, code, seen = replay(exec_sim, [json.dumps(
        {"id": stopped, "idType": "INSTANCE_ID", "body": {"command": ["id"],
                                                         "disableTty": True}})])
    assert code is None and seen[0]["error"]["message"] == "failed_precondition"
    assert "not running" in seen[0]["error"]["details"][0]["message"]
    with pytest.raises(ka.InstanceNotRunningError, match="not running"):
        ka.exec_command(exec_sim.client(), ["id"], instance_id=stopped, timeout=10)
