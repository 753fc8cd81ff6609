"""A local simulator of the Koyeb instance API, for demos, notebooks and tests.

It serves ``GET /v1/instances``, ``GET /v1/instances/{id}`` and
``GET /v1/instance_events`` (and the exec websocket) on 127.0.0.1 over a seeded fleet
whose ground truth (:meth:`Simulator.truth_intervals`) is known, with fault injection
built in; ``/v1/deployments``, ``/v1/deployments/{id}`` and ``/v1/activities``, whose
changes cause some of the fleet's incidents (``sim.changes.truth()`` says which); and
what the fleet says (``sim.streams``): the logs query and tail, the metrics and the
instance catalog, with the causes behind its troubles as ground truth
(``sim.streams.truth()``). Its event vocabularies (:class:`EventVocabulary`) are its
own: the toolkit never reads them.
"""

from __future__ import annotations

from ._exec import ExecFaults
from ._faults import FAULT_KINDS, Faults
from ._realtime import Incident, LiveFleet
from ._server import RequestRecord, Simulator, simulate
from ._streams import Streams
from ._vocabulary import DEFAULT_VOCABULARY, STATUS_MESSAGES, STATUSES, EventVocabulary

__all__ = [
    "DEFAULT_VOCABULARY",
    "FAULT_KINDS",
    "STATUSES",
    "STATUS_MESSAGES",
    "EventVocabulary",
    "ExecFaults",
    "Faults",
    "Incident",
    "LiveFleet",
    "RequestRecord",
    "Simulator",
    "Streams",
    "simulate",
]
