"""A local simulator of the Koyeb instance API, for demos, notebooks and tests.

It serves ``GET /v1/instances``, ``GET /v1/instances/{id}`` and
``GET /v1/instance_events`` on 127.0.0.1 over a seeded fleet whose ground truth
(:meth:`Simulator.truth_intervals`) is known, with fault injection built in.
"""

from __future__ import annotations

from typing import Any

from ..vocabulary import DEFAULT_VOCABULARY, STATUS_MESSAGES, STATUSES, EventVocabulary
from .exec import ExecFaults
from .faults import FAULT_KINDS, Faults
from .server import RequestRecord, Simulator

__all__ = [
    "DEFAULT_VOCABULARY",
    "FAULT_KINDS",
    "STATUSES",
    "STATUS_MESSAGES",
    "EventVocabulary",
    "ExecFaults",
    "Faults",
    "RequestRecord",
    "Simulator",
    "simulate",
]


def simulate(seed: int = 0, days: float = 7, services: int = 12, **options: Any) -> Simulator:
    """Create a simulator; use it in a ``with`` block, which starts and stops it.

    Parameters
    ----------
    seed, days, services
        The fleet's seed, days of history and number of services.
    **options
        Everything else :class:`Simulator` accepts (``now``, ``faults``, ``emit_nulls``,
        ``vocabulary``, ``time_digits``…).

    Returns
    -------
    Simulator
        Not started: ``with`` starts it (or ``.start()``).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=7, days=2, services=3) as sim:
    ...     n = len(ka.load_instances(sim.client(), progress=False))
    >>> n > 0
    True
    """
    return Simulator(seed=seed, days=days, services=services, **options)
