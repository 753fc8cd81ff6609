"""Exec output as data, with secrets kept out: exec_table, the catalogue, redaction."""

from __future__ import annotations

import pandas as pd
import pytest

import koyeb_analytics as ka
from koyeb_analytics.redact import LineRedactor, Redactor, is_secret_name

from .conftest import NOW

SECRET_SHAPES = [
    ("API_TOKEN=abc123def", "API_TOKEN=[redacted]"),
    ('export AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG"',
     "export AWS_SECRET_ACCESS_KEY=[redacted]"),
    ("DB_PASSWORD: hunter2", "DB_PASSWORD: [redacted]"),
    ("github_token=ghp_xxxxxxxxxxxx", "github_token=[redacted]"),
    ("DATABASE_URL=postgres://app:s3cr3t@db:5432/app",
     "DATABASE_URL=postgres://app:[redacted]@db:5432/app"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Authorization: Bearer [redacted]"),
    ("redis://:p4ss@cache:6379/0", "redis://:[redacted]@cache:6379/0"),
    ("amqp://guest:guest@rabbit/", "amqp://guest:[redacted]@rabbit/"),
]
LOOK_ALIKES = ["KEYBOARD_LAYOUT=us", "PWD=/app", "MONKEY=banana", "TOKENIZER_PATH=/m",
               "PATH=/usr/bin:/bin", "HOME=/root", "SSH_AUTH_SOCK=/tmp/agent",
               "https://example.com/path?q=1"]


@pytest.mark.parametrize("raw, want", SECRET_SHAPES)
def test_secret_shapes_are_redacted(raw, want):
    assert Redactor().redact(raw)[0] == want


@pytest.mark.parametrize("raw", LOOK_ALIKES)
def test_look_alikes_stay(raw):
    assert Redactor().redact(raw) == (raw, 0)


def test_private_keys_extra_patterns_and_off():
    pem = ("a\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
           "-----END OPENSSH PRIVATE KEY-----\nz\n")
    assert Redactor().redact(pem) == ("a\n[redacted]\nz\n", 1)
    lines = LineRedactor(Redactor())
    assert "".join(lines.line(t) for t in pem.splitlines(keepends=True)) == \
        "a\n[redacted]\nz\n"
    assert Redactor(patterns=[r"ACME-\d{4}"]).redact("id ACME-1234 ok") == \
        ("id [redacted] ok", 1)
    assert Redactor(enabled=False).redact("API_TOKEN=x") == ("API_TOKEN=x", 0)
    with pytest.raises(ValueError, match="patterns"):
        Redactor(patterns=["("])
    assert is_secret_name("STRIPE_SECRET_KEY") and not is_secret_name("KEYBOARD")


@pytest.fixture(scope="module")
def fleet():
    with ka.simulate(seed=3, days=1, services=3, now=NOW) as sim:
        client = sim.client()
        running = ka.load_instances(client, statuses="HEALTHY", progress=False)
        yield sim, client, running.head(4)


@pytest.mark.parametrize("name", list(ka.diagnostics()["name"]))
def test_each_diagnostic_parses_on_several_instances(fleet, name):
    _, client, running = fleet
    df = ka.exec_table(client, name, instances=running, timeout=30)
    assert not df.attrs["failed"], df.attrs["failed"]
    assert set(df["instance_id"]) == set(running["id"])
    assert list(df.columns[:3]) == ["instance_id", "service_id", "region"]
    numeric = {"processes": ["pid", "rss_bytes", "cpu_percent"],
               "disk": ["bytes", "used_bytes", "available_bytes"],
               "memory": ["total", "used", "free"], "meminfo": ["MemTotal_bytes"],
               "load": ["load_1m", "running"], "uptime": ["users", "load_1m"],
               "sockets": ["local_port"], "environment": []}[name]
    for col in numeric:
        assert pd.api.types.is_numeric_dtype(df[col]), (col, df[col].dtype)
    durations = {"processes": ["time"], "uptime": ["uptime"]}.get(name, [])
    for col in durations:
        assert pd.api.types.is_timedelta64_dtype(df[col]) and df[col].notna().all(), col


def test_secrets_never_reach_any_storage(fleet, tmp_path):
    sim, client, running = fleet
    env = ka.exec_table(client, "environment", instances=running)
    values = dict(zip(env["name"], env["value"], strict=False))
    assert values["API_TOKEN"] == "[redacted]" and values["KEYBOARD_LAYOUT"] == "us"
    assert "[redacted]@db.internal" in values["DATABASE_URL"]
    raw = ka.exec_command(client, "env", instance_id=running["id"].iloc[0], redact=False)
    assert "tok_fake_" in raw.stdout_text and raw.redacted is None
    res = ka.exec_command(client, "env", instance_id=running["id"].iloc[0])
    assert "tok_fake_" not in res.stdout_text and res.redacted >= 3
    runs = ka.exec_many(client, "env", instances=running)
    assert not runs["stdout"].str.contains("tok_fake_|pw-0|sk_test_fake").any()
    assert (runs["redacted"] >= 3).all()
    # The widget: its cells, transcript, Markdown and a snapshot of the transcript.
    w = ka.ExecWidget(client, instances=running)
    w.run("env; printf '%s\\n' '-----BEGIN RSA PRIVATE KEY-----' \"$(echo TUlJRQ== | "
          "base64 -d)\" '-----END RSA PRIVATE KEY-----'", instances=list(running["id"][:2]))
    shown = "".join(o.get("text", "") for box in w._cells.children
                    for o in box.children[1].outputs)
    assert "value(s) redacted]" in shown and "MIIE" not in shown
    t = w.transcript
    assert (t["redacted"] >= 4).all()
    md = w.to_markdown()
    folder = ka.save_snapshot(tmp_path / "snap", transcript=t)
    back = ka.load_snapshot(folder)["transcript"]
    for text in (shown, md, t.to_string(), back.to_string(),
                 "".join((tmp_path / "snap").rglob("*.parquet").__next__().read_bytes()
                         .decode("latin-1"))):
        for secret in ("tok_fake_", "-fake@db", "sk_test_fake", "MIIE"):
            assert secret not in text, secret


def test_a_failure_on_one_instance_leaves_the_others(fleet):
    _, client, running = fleet
    stopped = "5b1f7f0e-1111-4222-8333-444455556666"  # unknown to the server
    df = ka.exec_table(client, "load", instances=[*running["id"][:2], stopped])
    assert set(df["instance_id"]) == set(running["id"][:2])
    assert [f["instance_id"] for f in df.attrs["failed"]] == [stopped]
    bad = ka.exec_table(client, "printf 'not a table'", instances=running["id"][:1], parser="df")
    assert bad.empty or bad.attrs["failed"]


def test_unknown_commands_name_the_supported_ones(fleet):
    _, client, running = fleet
    with pytest.raises(ValueError, match="no parser known for 'frobnicate'.*processes"):
        ka.exec_table(client, "frobnicate --now", instances=running)
    with pytest.raises(ValueError, match="not a jc parser"):
        ka.exec_table(client, "ps", instances=running, parser="no-such-parser")


def test_the_widget_shows_a_table_and_keeps_the_parsed_rows(fleet, tmp_path):
    _, client, running = fleet
    ids = list(running["id"][:3])
    w = ka.ExecWidget(client, instances=running)
    w.run("cat /proc/loadavg", instances=ids, as_table=True)
    tables = [box for box in w._cells.children
              if "as a table" in getattr(box.children[0], "value", "")]
    assert len(tables) == 1
    html_table = tables[0].children[1].value
    assert html_table.count("<tr") == 1 + len(ids) and "load_1m" in html_table
    t = w.transcript
    assert (t["parsed"] != "").all() and t["stdout"].str.contains(r"\d").all()
    back = ka.load_transcript(ka.save_transcript(t, tmp_path / "t.parquet"))
    assert back["parsed"].tolist() == t["parsed"].tolist()
    # Output is escaped in the table, never rendered.
    w.run("env -i 'X=<img src=x onerror=alert(1)>' env", instances=ids[:1], as_table=True)
    last = w._cells.children[-1].children[1].value
    assert "<img" not in last and "&lt;img" in last
