"""The doctest namespace: the package's docstring examples run against one small simulator.

Every doctest sees ``ka`` (the package), ``pd`` (pandas), ``sim`` (a started simulator:
seed 7, two days, three services, a fixed clock), ``client`` (its client) and ``iid``
(one of its running instances, for exec), so an example can stay one or two lines long.
Tests under ``tests/`` have their own fixtures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

# jsonschema (tests/conftest.py, nbformat) imports rfc3987-syntax when it is installed
# (JupyterLab brings it), which builds its grammars at import: seconds of every pytest
# start, in each worker and each breakage run. No test checks an IRI format, so
# jsonschema is told the package is absent and leaves those two formats out.
sys.modules.setdefault("rfc3987_syntax", None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """Give ``-n auto`` one worker per core this process may run on.

    pytest-xdist asks psutil, which counts the host's cores, not those of a container or
    of a CPU affinity mask: more workers than cores would make the suite slower and its
    deadlines tighter. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


@pytest.fixture(scope="session")
def _doctest_simulator() -> Iterator[Any]:
    import koyeb_analytics as ka

    with ka.simulate(seed=7, days=2, services=3, now="2026-11-20T12:00:00Z") as sim:
        yield sim


@pytest.fixture(autouse=True)
def _doctest_globals(request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]) -> None:
    # Only doctests need the simulator; other tests do not start it.
    if type(request.node).__name__ != "DoctestItem":
        return
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    import koyeb_analytics as ka

    sim = request.getfixturevalue("_doctest_simulator")
    if "client" not in doctest_namespace:
        client = sim.client(timeout=10)
        inst = ka.load_instances(client)
        iid = inst.loc[inst["status"] == "HEALTHY", "id"].iloc[0]
        doctest_namespace.update(ka=ka, pd=pd, sim=sim, client=client, iid=iid)
