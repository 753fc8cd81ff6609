"""KoyebClient: configuration, retries, error mapping, and keeping the token secret."""

from __future__ import annotations

import logging
import time

import pytest

import koyeb_analytics as ka
from koyeb_analytics.api._client import discover_credentials

from .conftest import fast_client


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for name in ("KOYEB_TOKEN", "KOYEB_API_TOKEN", "KOYEB_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KOYEB_CONFIG", str(tmp_path / "absent.yaml"))
    return tmp_path


def test_from_env_precedence(no_env, monkeypatch):
    cfg = no_env / "koyeb.yaml"
    cfg.write_text("token: from-config\nurl: http://127.0.0.1:9\norganization: ''\n")
    monkeypatch.setenv("KOYEB_CONFIG", str(cfg))
    assert discover_credentials() == ("from-config", "http://127.0.0.1:9")
    monkeypatch.setenv("KOYEB_API_TOKEN", "from-api-token")
    assert discover_credentials()[0] == "from-api-token"
    monkeypatch.setenv("KOYEB_TOKEN", "from-token")
    monkeypatch.setenv("KOYEB_URL", "http://127.0.0.1:8")
    assert discover_credentials() == ("from-token", "http://127.0.0.1:8")
    client = ka.KoyebClient.from_env()
    assert client.base_url == "http://127.0.0.1:8"


def test_default_base_url(no_env, monkeypatch):
    monkeypatch.setenv("KOYEB_TOKEN", "t" * 64)
    assert ka.KoyebClient.from_env().base_url == "https://app.koyeb.com"


def test_no_token_says_where_it_looked(no_env):
    with pytest.raises(ka.ConfigurationError) as err:
        ka.KoyebClient.from_env()
    msg = str(err.value)
    assert "KOYEB_TOKEN" in msg and "KOYEB_API_TOKEN" in msg and "absent.yaml" in msg
    assert "not found" in msg


def test_bad_options_raise_before_anything(no_env):
    with pytest.raises(ValueError, match="concurrency"):
        ka.KoyebClient("t", concurrency=0)
    with pytest.raises(ValueError, match="base_url"):
        ka.KoyebClient("t", base_url="ftp://example")
    with pytest.raises(ValueError, match="timeout"):
        ka.KoyebClient("t", timeout=0)


def test_token_never_in_repr_logs_or_errors(fresh_sim, caplog):
    sim = fresh_sim
    client = fast_client(sim, max_retries=1)
    assert sim.token not in repr(client) and "hidden" in repr(client)
    assert sim.token not in repr(client.network) + str(client)
    caplog.set_level(logging.DEBUG)
    ka.load_instances(client, progress=False)
    sim.inject("401")
    with pytest.raises(ka.AuthenticationError) as e1:
        client.get("/v1/instances")
    sim.inject("503", times=None)
    with pytest.raises(ka.ServerError) as e2:
        client.get("/v1/instances")
    sim.clear_faults()
    bad = ka.KoyebClient("x" * 64, base_url=sim.url)
    with pytest.raises(ka.AuthenticationError) as e3:
        bad.get("/v1/instances")
    text = caplog.text + str(e1.value) + str(e2.value) + repr(e3.value)
    assert "GET /v1/instances" in caplog.text  # DEBUG logging did happen
    assert sim.token not in text and "x" * 64 not in text + repr(bad)


def test_retries_recover_from_429_and_503(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim)
    sim.faults.retry_after = 0
    sim.inject("429", times=2)
    sim.inject("503", times=1, after=2)
    sim.inject("502", times=1, after=3)
    n = len(sim.requests)
    body = client.get("/v1/instances")
    assert body["count"] > 0
    assert [r.status for r in sim.requests[n:]] == [429, 429, 503, 502, 200]


def test_retry_after_is_honoured_up_to_backoff_max(fresh_sim):
    sim = fresh_sim
    sim.faults.retry_after = 1
    sim.inject("429")
    start = time.perf_counter()
    fast_client(sim, backoff_max=5).get("/v1/instances")
    assert time.perf_counter() - start >= 0.9
    # A server asking for an hour is waited on for backoff_max, not an hour.
    sim.faults.retry_after = 3600
    sim.inject("429")
    start = time.perf_counter()
    fast_client(sim, backoff_max=0.2).get("/v1/instances")
    assert time.perf_counter() - start < 5


def test_dropped_connection_is_retried(fresh_sim):
    sim = fresh_sim
    sim.inject("drop", times=2)
    assert fast_client(sim).get("/v1/instances")["count"] > 0


@pytest.mark.parametrize("status, cls", [
    ("400", ka.BadRequestError), ("403", ka.PermissionDeniedError), ("404", ka.NotFoundError),
    ("500", ka.ServerError)])
def test_non_retryable_errors_raise_their_class_once(fresh_sim, status, cls):
    sim = fresh_sim
    client = fast_client(sim)
    sim.inject(status, times=None)
    n = len(sim.requests)
    with pytest.raises(cls) as err:
        client.get("/v1/instances")
    assert len(sim.requests) - n == 1
    assert err.value.status == int(status)
    assert str(status) in str(err.value) and "/v1/instances" in str(err.value)
    if status == "400":
        assert err.value.fields and "simulated" in str(err.value)


def test_retryable_errors_give_up_after_max_retries(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim, max_retries=2)
    sim.faults.retry_after = 0
    sim.inject("429", times=None)
    n = len(sim.requests)
    with pytest.raises(ka.RateLimitError) as err:
        client.get("/v1/instances")
    assert len(sim.requests) - n == 3
    assert err.value.code == "rate_limit_exceeded"  # empty body, still a useful error


def test_404_accepts_both_codes_and_real_404(sim, client):
    with pytest.raises(ka.NotFoundError) as err:
        ka.get_instance(client, "5b1f7f0e-1111-4222-8333-444455556666")
    assert err.value.code == "not_found"


def test_non_json_bodies_are_reported(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim, max_retries=0)
    sim.inject("text")
    with pytest.raises(ka.MalformedResponseError, match="not a JSON object"):
        client.get("/v1/instances")
    sim.inject("malformed")
    with pytest.raises(ka.MalformedResponseError):
        client.get("/v1/instances")
    sim.inject("500", body="text")
    with pytest.raises(ka.ServerError, match="non-JSON error body"):
        client.get("/v1/instances")
    sim.inject("truncated")
    with pytest.raises(ka.TransportError):
        client.get("/v1/instances")


def test_unreachable_api_is_a_transport_error():
    client = ka.KoyebClient("t" * 64, base_url="http://127.0.0.1:9", max_retries=0, timeout=2)
    with pytest.raises(ka.TransportError, match="GET /v1/instances failed"):
        client.get("/v1/instances")


def pages_of_five(n: int) -> list[list[tuple[str, str]]]:
    return [[("limit", "5"), ("offset", str(5 * i)), ("order", "asc")] for i in range(n)]


def test_get_each_sends_the_next_request_before_handing_over_a_reply(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim)
    params = pages_of_five(6)
    want = [client.get("/v1/instances", p) for p in params]
    n = len(sim.requests)
    got = []
    for k, reply in enumerate(client.get_each("/v1/instances", params)):
        got.append(reply)
        # The request for the following page is already on its way (or answered).
        expected = n + min(k + 2, len(params))
        deadline = time.monotonic() + 5
        while len(sim.requests) < expected and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(sim.requests) == expected
    assert got == want
    seen = sim.requests[n:]
    assert [dict(r.query)["offset"] for r in seen] == [p[1][1] for p in params]
    assert max(r.in_flight for r in seen) == 1  # one request at a time on the wire


def test_get_each_sends_failed_requests_again_through_get(fresh_sim):
    sim = fresh_sim
    client = fast_client(sim)
    params = pages_of_five(14)
    want = [client.get("/v1/instances", p) for p in params]
    sim.faults.retry_after = 0
    sim.inject("503", after=2)
    sim.inject("drop", after=4)
    sim.inject("429", times=2, after=6)
    sim.inject("truncated", after=9)
    n = len(sim.requests)
    assert list(client.get_each("/v1/instances", params)) == want
    statuses = [r.status for r in sim.requests[n:]]
    # 503, drop (no status) and 429 twice are sent again; so is the truncated 200.
    assert sorted(s for s in statuses if s != 200) == [0, 429, 429, 503]
    assert statuses.count(200) == len(params) + 1


@pytest.mark.parametrize("kind, cls", [("404", ka.NotFoundError),
                                       ("malformed", ka.MalformedResponseError)])
def test_get_each_raises_after_yielding_what_came_before(fresh_sim, kind, cls):
    sim = fresh_sim
    client = fast_client(sim, max_retries=0)
    params = pages_of_five(8)
    want = [client.get("/v1/instances", p) for p in params[:3]]
    sim.inject(kind, times=None, after=3)
    got = []
    with pytest.raises(cls):
        for reply in client.get_each("/v1/instances", params):
            got.append(reply)
    assert got == want


def test_https_connections_verify_certificates_and_hostnames():
    import ssl

    client = ka.KoyebClient("t" * 64, base_url="https://api.example.test/prefix")
    ctx = client.network.ssl_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert client.websocket_url("/v1/x") == "wss://api.example.test/prefix/v1/x"
