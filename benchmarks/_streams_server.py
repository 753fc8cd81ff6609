"""A simulator of one large service, in its own process, for the logs and metrics benchmarks.

The parent asks over a pipe: ``("latency", seconds)`` sets the simulated latency;
``("stop", None)`` ends it. The child answers the start with the server's URL, token,
service id, instance count and the story's line rate.
"""

from __future__ import annotations

import multiprocessing as mp
from contextlib import contextmanager
from typing import Any

NOW = "2026-11-20T12:00:00Z"


def _serve(conn: Any, days: float, replicas: int, lines_per_hour: int | None) -> None:
    import pandas as pd

    import koyeb_analytics as ka
    from koyeb_analytics.simulator import Faults

    options: dict[str, Any] = dict(services=1, now=NOW, max_replicas=replicas,
                                   redeploys_per_day=0, autoscale_share=0,
                                   scale_to_zero_share=0, outages=0)
    # One service of about `replicas` instances: the replica count is drawn before the
    # fleet's history, so seeds are tried on a tiny history, then the real one is built.
    for seed in range(1000):
        svc = ka.simulate(seed=seed, days=0.0001, **options).fleet.services[0]
        if 0.93 * replicas <= svc.replicas * len(svc.regions) <= 1.07 * replicas:
            break
    sim = ka.simulate(seed=seed, days=days, **options)
    svc = sim.fleet.services[0]
    sim.start()
    story = sim.streams.story
    truth = sim.truth_intervals()
    hour = sim.now - pd.Timedelta("1h")
    alive = truth[(truth["status"].isin(["HEALTHY", "UNHEALTHY"]))
                  & (truth["end"].isna() | (truth["end"] > hour))]["instance_id"].nunique()
    if lines_per_hour:
        story.rate = lines_per_hour / (alive * 3600)
    conn.send((sim.url, sim.token, svc.service_id, alive, story.rate, seed))
    while True:
        cmd, arg = conn.recv()
        if cmd == "latency":
            sim.faults = Faults(latency=arg)
            conn.send("ok")
        else:
            break
    sim.stop()


@contextmanager
def big_service(*, days: float, replicas: int = 300, lines_per_hour: int | None = None):
    """Yield ``(info, set_latency)``; info is (url, token, service_id, instances, rate, seed)."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, days, replicas,
                                                                lines_per_hour), daemon=True)
    proc.start()
    try:
        info = parent.recv()

        def set_latency(seconds: float) -> None:
            parent.send(("latency", seconds))
            parent.recv()

        yield info, set_latency
    finally:
        parent.send(("stop", None))
        proc.join(timeout=20)
        if proc.is_alive():
            proc.terminate()
