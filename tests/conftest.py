from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

import koyeb_analytics as ka

SPEC = json.loads((Path(__file__).parent / "fixtures" / "koyeb-instances-openapi.json").read_text())
NOW = "2026-11-20T12:00:00Z"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def fast_client(sim: ka.Simulator, **options) -> ka.KoyebClient:
    """A client whose retries do not sleep long (tests run many of them)."""
    options.setdefault("backoff_factor", 0.01)
    options.setdefault("backoff_max", 0.05)
    options.setdefault("timeout", 10)
    return sim.client(**options)


@pytest.fixture(scope="session")
def sim():
    """One simulator for read-only tests: a fixed clock, a week, a dozen services."""
    with ka.simulate(seed=7, days=7, services=12, now=NOW) as s:
        yield s


@pytest.fixture(scope="session")
def exec_sim():
    """The same fleet, for exec and widget tests, which change its exec faults."""
    with ka.simulate(seed=7, days=7, services=12, now=NOW) as s:
        yield s


@pytest.fixture
def client(sim):
    c = fast_client(sim)
    yield c
    c.close()


@pytest.fixture
def fresh_sim():
    """A simulator a test may inject faults into or change."""
    with ka.simulate(seed=11, days=3, services=6, now=NOW) as s:
        yield s


ALWAYS_SET = {(d, "created_at") for d in ("Instance", "InstanceListItem", "AppListItem",
                                          "ServiceListItem")} | {("InstanceEvent", "when")}
"""Times every object has (it exists from a moment on): never null, even where unset
times are emitted as null."""


def validator(definition: str, *, nullable_times: bool = True) -> jsonschema.Draft4Validator:
    """Validate against a definition of the spec subset.

    Swagger 2.0 cannot say "nullable"; protojson emits ``null`` for unset timestamps
    (koyeb-api-facts.md §2), so with ``nullable_times`` a date-time may also be null.
    Everything else is checked as the spec says.
    """
    definitions = json.loads(json.dumps(SPEC["definitions"]))
    if nullable_times:
        for name, schema in definitions.items():
            for key, prop in schema.get("properties", {}).items():
                if prop.get("format") == "date-time" and (name, key) not in ALWAYS_SET:
                    prop["type"] = ["string", "null"]
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def _is_rfc3339(value) -> bool:
        return not isinstance(value, str) or bool(RFC3339.match(value))

    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    return jsonschema.Draft4Validator(schema, format_checker=checker)
