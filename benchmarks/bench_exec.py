"""Exec benchmark, ratios measured side by side in one run.

* Capturing a 64 MB stdout with ``exec_command`` versus a bare websocket-client loop
  that only receives the same frames (the floor): throughput ratio, target >= 0.6.
* ``exec_many`` over 50 instances running ``sleep 1`` at concurrency 10, against the
  ideal 5 s: target <= 1.5x.
* ``exec_table`` over 50 instances with ``ps aux`` at concurrency 10 against
  ``exec_many`` of the same command (parsing must not dominate): target <= 1.3x.

The simulator runs in its own process (``koyeb-analytics simulate``), so the server's
work does not share the measuring process's interpreter.

Run: ``python benchmarks/bench_exec.py``.
"""

from __future__ import annotations

import argparse
import time

import websocket
from _common import describe, ratio, simulator_process

import koyeb_analytics as ka
from koyeb_analytics.execute import command_frame, stdin_close_frame

SIZE = 64 * 2**20
CMD = ["sh", "-c", f"head -c {SIZE} /dev/zero | tr '\\0' x"]


def floor(url: str, token: str, iid: str) -> int:
    """Receive every frame until the exit frame; decode nothing else.

    UTF-8 validation is skipped here as in ``exec_command`` (websocket-client's
    pure-Python validator would otherwise dominate both).
    """
    ws = websocket.create_connection(url.replace("http://", "ws://")
                                     + "/v1/streams/instances/exec",
                                     subprotocols=["Bearer", token], timeout=60,
                                     skip_utf8_validation=True)
    ws.send(command_frame(iid, CMD))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with simulator_process(seed=3, days=3, services=40) as (url, token):
        client = ka.KoyebClient(token, base_url=url)
        healthy = ka.load_instances(client, statuses=["HEALTHY"], progress=False)
        iid = healthy["id"].iloc[0]
        ours, bare = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            res = ka.exec_command(client, CMD, instance_id=iid, max_output=SIZE * 2, timeout=300)
            ours.append(time.perf_counter() - start)
            assert res.ok and len(res.stdout) == SIZE, res
            start = time.perf_counter()
            floor(url, token, iid)
            bare.append(time.perf_counter() - start)
        print(f"64 MB stdout: exec_command {describe(ours)}")
        print(f"              bare loop    {describe(bare)}")
        med, lo, hi = ratio(bare, ours)
        print(f"   throughput of exec_command / bare loop: {med:.2f}x "
              f"(paired {lo:.2f}-{hi:.2f}); target >= 0.6; "
              f"exec_command {SIZE / 2**20 / min(ours):.0f} MB/s at best")

        targets = healthy.head(50)
        assert len(targets) == 50, len(targets)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            runs = ka.exec_many(client, targets, ["sleep", "1"], concurrency=10, timeout=30)
            times.append(time.perf_counter() - start)
            assert runs["exit_code"].eq(0).all()
        print(f"\nexec_many, 50 x sleep 1 at concurrency 10: {describe(times)}")
        print(f"   time / ideal 5 s: {sorted(times)[len(times) // 2] / 5:.2f}x "
              f"(runs {min(times) / 5:.2f}-{max(times) / 5:.2f}); target <= 1.5")

        # Parsing must not dominate: exec_table against exec_many of the same command,
        # interleaved round by round.
        table, many = [], []
        ka.exec_table(client, targets, "processes", concurrency=10)  # warm jc's parser
        for _ in range(args.rounds):
            start = time.perf_counter()
            parsed = ka.exec_table(client, targets, "processes", concurrency=10)
            table.append(time.perf_counter() - start)
            assert not parsed.attrs["failed"] and parsed["instance_id"].nunique() == 50
            start = time.perf_counter()
            ka.exec_many(client, targets, "ps aux", concurrency=10)
            many.append(time.perf_counter() - start)
        print(f"\nps aux on 50 instances at concurrency 10 ({len(parsed)} rows parsed):")
        print(f"   exec_table {describe(table)}")
        print(f"   exec_many  {describe(many)}")
        med, lo, hi = ratio(table, many)
        print(f"   exec_table / exec_many: {med:.2f}x (paired {lo:.2f}-{hi:.2f}); "
              "target <= 1.3")


if __name__ == "__main__":
    main()
