"""Exec benchmark, ratios measured side by side in one run.

* Capturing a 64 MB stdout with ``exec_command`` (redaction on, as by default) versus a
  bare websocket-client loop that only receives the same frames (the floor): throughput
  ratio, target >= 0.85. The same capture with ``redact=False`` is timed beside them, so
  that what redaction costs is a figure of its own.
* The same three over 64 MB of log-like text (JSON and logfmt lines, ``ps`` lines, env
  lines, a few secrets), which every redaction rule has to read: no target, the cost of
  redaction proper; and ``Redactor().redact_bytes`` alone over each 64 MB, in MB/s.
* ``exec_many`` over 50 instances running ``sleep 1`` at concurrency 10, against the
  ideal 5 s: target <= 1.5x.
* ``exec_table`` over 50 instances with ``ps aux`` at concurrency 10 against
  ``exec_many`` of the same command (parsing must not dominate): target <= 1.2.

The simulator runs in its own process (``koyeb-analytics simulate``), so the server's
work does not share the measuring process's interpreter.

Run: ``python benchmarks/bench_exec.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import websocket
from _common import describe, ratio, simulator_process, timed

import koyeb_analytics as ka
from koyeb_analytics.execute import command_frame, stdin_close_frame

SIZE = 64 * 2**20
CMD = ["sh", "-c", f"head -c {SIZE} /dev/zero | tr '\\0' x"]
CHUNK = 2**20


def log_text() -> bytes:
    """1 MB of lines of the kinds real commands print, two secrets every 500 lines."""
    lines, i, size = [], 0, 0
    while size < CHUNK:
        i += 1
        lines.append([
            f'{{"ts":"2026-11-20T12:00:{i % 60:02d}Z","level":"info","msg":"request served",'
            f'"status":200,"duration_ms":{i % 97}.5,"user_id":"u{i}"}}\n',
            f"time=2026-11-20T12:00:{i % 60:02d}Z level=info msg=\"cache miss\" "
            f"path=/api/v1/orders/{i} status=200 bytes={i * 7}\n",
            f"app {i:6d}  0.1  1.2 123456 45678 ?  Ssl 12:00 0:01 /usr/bin/python3 -m gunicorn "
            f"app:wsgi --workers 4 --bind 0.0.0.0:8000\n",
            "KOYEB_REGION=fra\nPATH=/usr/local/bin:/usr/bin:/bin\nHOME=/root\n",
            f"2026-11-20 12:00:{i % 60:02d},123 WARNING [worker-{i % 8}] health check passed "
            f"after {i % 5} retries\n",
            f'  "name": "svc-{i}", "region": "fra", "created_at": "2026-11-20T12:00:00Z",\n',
        ][i % 6])
        size += len(lines[-1])
        if i % 500 == 0:
            lines.append(f'DB_PASSWORD=pw-{i}\n{{"access_token": "tok-{i}", "id": {i}}}\n')
    return "".join(lines).encode()[:CHUNK]


def floor(url: str, token: str, iid: str, cmd: list[str] = CMD) -> int:
    """Receive every frame until the exit frame; decode nothing else.

    UTF-8 validation is skipped here as in ``exec_command`` (websocket-client's
    pure-Python validator would otherwise dominate both).
    """
    ws = websocket.create_connection(url.replace("http://", "ws://")
                                     + "/v1/streams/instances/exec",
                                     subprotocols=["Bearer", token], timeout=60,
                                     skip_utf8_validation=True)
    ws.send(command_frame(iid, cmd))
    ws.send(stdin_close_frame())
    received = 0
    try:
        while True:
            frame = ws.recv()
            received += len(frame)
            if '"exited": true' in frame[-40:] or '"exited":true' in frame[-40:]:
                return received
    finally:
        ws.close()


def capture(client: ka.KoyebClient, url: str, token: str, iid: str, label: str,
            cmd: list[str], rounds: int, *, target: bool) -> None:
    """exec_command with and without redaction against the bare loop, interleaved."""
    on, off, bare = [], [], []
    raw = b""
    for _ in range(rounds):
        start = time.perf_counter()
        res = ka.exec_command(client, cmd, instance_id=iid, max_output=SIZE * 2, timeout=300)
        on.append(time.perf_counter() - start)
        assert res.ok and res.stdout_dropped == 0, res
        start = time.perf_counter()
        plain = ka.exec_command(client, cmd, instance_id=iid, max_output=SIZE * 2,
                                timeout=300, redact=False)
        off.append(time.perf_counter() - start)
        assert plain.ok and len(plain.stdout) == SIZE, plain
        raw = plain.stdout
        start = time.perf_counter()
        floor(url, token, iid, cmd)
        bare.append(time.perf_counter() - start)
    print(f"{label} ({res.redacted} secrets redacted):")
    print(f"   exec_command               {describe(on)}")
    print(f"   exec_command, redact=False {describe(off)}")
    print(f"   bare loop                  {describe(bare)}")
    med, lo, hi = ratio(bare, on)
    goal = "target >= 0.85" if target else "no target"
    print(f"   throughput of exec_command / bare loop: {med:.2f}x "
          f"(paired {lo:.2f}-{hi:.2f}); {goal}; "
          f"exec_command {SIZE / 2**20 / min(on):.0f} MB/s at best")
    med, lo, hi = ratio(bare, off)
    print(f"   the same without redaction: {med:.2f}x (paired {lo:.2f}-{hi:.2f})")
    alone, _ = timed(lambda: ka.Redactor().redact_bytes(raw), rounds)
    print(f"   redaction alone: {SIZE / 2**20 / statistics.median(alone):.0f} MB/s "
          f"(median of {rounds}; {min(alone):.3f}-{max(alone):.3f} s per 64 MB)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with simulator_process(seed=3, days=3, services=40) as (url, token):
        client = ka.KoyebClient(token, base_url=url)
        healthy = ka.load_instances(client, statuses=["HEALTHY"], progress=False)
        iid = healthy["id"].iloc[0]
        with tempfile.TemporaryDirectory() as tmp:
            logs = Path(tmp) / "logs.txt"
            logs.write_bytes(log_text())
            log_cmd = ["sh", "-c", f"for i in $(seq {SIZE // CHUNK}); do cat {logs}; done"]
            for label, cmd in (("64 MB stdout of one byte", CMD),
                               ("64 MB stdout of log lines", log_cmd)):
                capture(client, url, token, iid, label, cmd, args.rounds,
                        target=cmd is CMD)

        targets = healthy.head(50)
        assert len(targets) == 50, len(targets)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            runs = ka.exec_many(client, ["sleep", "1"], instances=targets, concurrency=10,
                                timeout=30)
            times.append(time.perf_counter() - start)
            assert runs["exit_code"].eq(0).all()
        print(f"\nexec_many, 50 x sleep 1 at concurrency 10: {describe(times)}")
        print(f"   time / ideal 5 s: {sorted(times)[len(times) // 2] / 5:.2f}x "
              f"(runs {min(times) / 5:.2f}-{max(times) / 5:.2f}); target <= 1.5")

        # Parsing must not dominate: exec_table against exec_many of the same command,
        # interleaved round by round.
        table, many = [], []
        ka.exec_table(client, "processes", instances=targets, concurrency=10)  # warm jc's parser
        for _ in range(args.rounds):
            start = time.perf_counter()
            parsed = ka.exec_table(client, "processes", instances=targets, concurrency=10)
            table.append(time.perf_counter() - start)
            assert not parsed.attrs["failed"] and parsed["instance_id"].nunique() == 50
            start = time.perf_counter()
            ka.exec_many(client, "ps aux", instances=targets, concurrency=10)
            many.append(time.perf_counter() - start)
        print(f"\nps aux on 50 instances at concurrency 10 ({len(parsed)} rows parsed):")
        print(f"   exec_table {describe(table)}")
        print(f"   exec_many  {describe(many)}")
        med, lo, hi = ratio(table, many)
        print(f"   exec_table / exec_many: {med:.2f}x (paired {lo:.2f}-{hi:.2f}); "
              "target <= 1.2")


if __name__ == "__main__":
    main()
