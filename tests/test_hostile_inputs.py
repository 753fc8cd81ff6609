"""Classes 4 (the widget), 6, 7 and 8: analysis on events nobody invented, arguments
checked before any I/O, terminal text and Markdown that cannot escape their blocks."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.analysis._summary import analyse
from koyeb_analytics.report._html import render_report
from koyeb_analytics.simulator._vocabulary import STATUSES, EventVocabulary

from .conftest import NOW
from .hostile import TOKEN, HostileServer

IID = "5b1f7f0e-1111-4222-8333-444455556666"


# -- class 6: events of types nothing knows ---------------------------------------
@pytest.fixture(scope="module")
def foreign_fleet():
    """A fleet whose event types and metadata keys the toolkit has never seen."""
    vocab = EventVocabulary(
        status_types={s: f"koyeb.instance.event_{i}" for i, s in enumerate(STATUSES)},
        info_types={"koyeb.instance.progress": "Download progress: 100%"},
        status_key="phase", previous_key="was")
    with ka.simulate(seed=5, days=2, services=4, now=NOW, vocabulary=vocab) as sim:
        c = sim.client()
        inst = ka.load_instances(c, details=True, progress=False)
        ev = ka.load_events(c, progress=False)
    return inst, ev


def test_unknown_event_types_fall_back_to_timestamps_and_say_so(foreign_fleet):
    inst, ev = foreign_fleet
    # The messages still tell the statuses (known texts) ...
    assert set(ka.lifecycles(inst, ev)["source"]) == {"events"}
    # ... but events with nothing any rule knows fall back to the timestamps.
    ev = ev.assign(message="opaque text " + ev["type"])
    iv = ka.lifecycles(inst, ev)
    assert len(iv) and set(iv["source"]) == {"timestamps"}
    assert set(iv["instance_id"]) == set(inst["id"])
    found = ka.findings(iv)
    unknown = found[found["kind"] == "unknown_event_types"]
    assert len(unknown) == 1 and f"{len(ev)} of {len(ev)} events" in unknown["detail"].iloc[0]
    # Everything downstream still runs and gives numbers.
    up = ka.uptime(iv)
    assert up["availability"].between(0, 1).all()
    ka.incidents(iv)
    ka.capacity(iv)
    html = render_report(analyse(inst, ev))
    assert "unknown_event_types" in html


def test_events_of_instances_missing_from_the_listing_are_a_finding(foreign_fleet):
    inst, ev = foreign_fleet
    mapping = {f"koyeb.instance.event_{i}": s for i, s in enumerate(STATUSES)}
    iv = ka.lifecycles(inst.iloc[:0], ev, mapping=mapping)
    assert len(iv) == 0
    kinds = set(ka.findings(iv)["kind"])
    assert "events_without_instance" in kinds
    # With the mapping the same events rebuild spans from events.
    full = ka.lifecycles(inst, ev, mapping=mapping)
    assert "events" in set(full["source"])


def test_an_empty_event_frame_and_no_events_at_all(foreign_fleet):
    inst, ev = foreign_fleet
    for events in (ev.iloc[:0], None):
        iv = ka.lifecycles(inst, events)
        assert set(iv["source"]) == {"timestamps"} and len(iv)


# -- class 7: arguments ------------------------------------------------------------
@pytest.fixture(scope="module")
def silent():
    """A server that records whether anything reached it (nothing should)."""
    def handler(conn, srv):
        srv.next_request(conn)
    with HostileServer(handler) as srv:
        yield srv


@pytest.mark.parametrize("call, name", [
    (lambda c: ka.load_instances(None), "client"),
    (lambda c: ka.load_events("not a client"), "client"),
    (lambda c: ka.get_instance(None, IID), "client"),
    (lambda c: ka.exec_command(None, "id", instance_id=IID), "client"),
    (lambda c: ka.exec_many(None, "id", instances=[IID]), "client"),
    (lambda c: ka.get_instance(c, IID + "\n"), "instance_id"),
    (lambda c: ka.exec_command(c, "id", instance_id=IID + "\n"), "instance_id"),
    (lambda c: ka.exec_many(c, "id", instances=[IID + "\n"]), "instance ids"),
    (lambda c: ka.exec_many(c, "id", instances=[IID], concurrency=True), "concurrency"),
    (lambda c: ka.exec_many(c, "id", instances=[IID], timeout=math.nan), "timeout"),
    (lambda c: ka.exec_command(c, "id", instance_id=IID, timeout="5"), "timeout"),
    (lambda c: ka.exec_command(c, "id", instance_id=IID, max_output=True), "max_output"),
    (lambda c: ka.load_instances(c, statuses=123), "statuses"),
    (lambda c: ka.load_events(c, types=5), "types"),
    (lambda c: ka.load_events(c, instance_ids=123), "instance_ids"),
    (lambda c: ka.load_events(c, instance_ids=[IID + " "]), "instance_ids"),
    (lambda c: ka.load_events(c, window="999999999d"), "window"),
    (lambda c: ka.load_instances(c, window="100000d"), "window"),
])
def test_bad_arguments_are_named_before_any_request(silent, call, name):
    client = ka.KoyebClient(TOKEN, base_url=silent.url, max_retries=0, timeout=2)
    before = silent.connections
    with pytest.raises((TypeError, ValueError)) as err:
        call(client)
    assert name in str(err.value)
    assert silent.connections == before


@pytest.mark.parametrize("option, value", [
    ("timeout", math.nan), ("timeout", -1), ("timeout", "3"), ("backoff_factor", -0.5),
    ("backoff_max", math.inf), ("backoff_factor", "1"), ("concurrency", True),
    ("max_retries", 1.5), ("max_response_bytes", 0), ("read_ahead", "fast"),
])
def test_client_options_are_checked(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        ka.KoyebClient(TOKEN, base_url="http://127.0.0.1:9", **{option: value})


# -- class 8: terminal text and Markdown ---------------------------------------------
@pytest.mark.parametrize("raw, clean", [
    ("a\x1bcb", "ab"), ("a\x1b7b\x1b8c", "abc"), ("a\x1b(0b", "ab"), ("a\x9b2Jb", "ab"),
    ("a\x1b]0;title\x07b", "ab"), ("a\x1bP1$r\x1b\\b", "ab"), ("a\x1b[2Kb", "ab"),
    ("\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"), ("naïve é", "naïve é"),
])
def test_clean_terminal_text_keeps_only_colours(raw, clean):
    from koyeb_analytics.widgets._exec import clean_terminal_text

    assert clean_terminal_text(raw) == clean


def test_markdown_output_cannot_close_its_fence():
    from koyeb_analytics.execute._transcript import transcript_markdown

    payload = "before\n````\n<img src=x onerror=alert(1)>\n```````\nafter"
    transcript = pd.DataFrame([{"run_id": 1, "instance_id": IID, "command": "cat x",
                                "exit_code": 0, "stdout": payload, "stderr": ""}])
    md = transcript_markdown(transcript)
    fence = md.split("\n")[1].removesuffix("text")
    assert set(fence) == {"`"} and len(fence) == 8
    body = md.split(fence + "text\n", 1)[1]
    assert body.rstrip("\n").endswith(fence) and body.count(fence) == 1


# -- class 4: the widget's cell output --------------------------------------------
def test_a_huge_single_line_is_linear_and_capped_in_the_cell():
    import ipywidgets as widgets

    from koyeb_analytics.widgets._exec import _CellOutput

    def feed(total: int) -> tuple[float, widgets.Output]:
        out = widgets.Output()
        cell = _CellOutput(out, head_lines=200, tail_lines=50, interval=0.0)
        chunk = b"x" * 65536
        start = time.perf_counter()
        for _ in range(total // len(chunk)):
            cell.feed("stdout", chunk)
        cell.close()
        return time.perf_counter() - start, out

    small, _ = feed(2 * 2**20)
    big, out = feed(32 * 2**20)
    shown = sum(len(o.get("text", "")) for o in out.outputs)
    assert shown < 64 * 1024
    assert "more bytes of this line not shown" in "".join(o.get("text", "")
                                                          for o in out.outputs)
    # 16x the data: linear work takes ~16x; the old quadratic join took ~256x.
    assert big < max(small * 64, 2.0)
