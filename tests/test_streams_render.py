"""The simulator renders a page's log lines a family at a time, and the loader codes a
page's labels column by column: both must give exactly what the line-by-line forms give."""

from __future__ import annotations

import numpy as np
import pytest

from koyeb_analytics.load._streams import _log_frame, _Slice
from koyeb_analytics.simulator._story import FAMILIES, Lines

# Integers at the edges of what the renderers mask, shift and format (negative ones too:
# the numpy forms must wrap as Python's masks do).
EDGES = [[0, 0, 0], [2**63 - 1, 2**63 - 1, 2**63 - 1], [-2**63, -1, -2**63],
         [2**32 - 1, 2**32, 2**16 - 1], [0xFFFF, 0x10000, 99999]]


@pytest.mark.parametrize("seed", [0, 1])
def test_lines_rendered_together_are_each_familys_own_texts(seed):
    rng = np.random.default_rng(seed)
    params = np.concatenate([rng.integers(0, 2**40, (4000, 3)),
                             rng.integers(-2**62, 2**62, (400, 3)),
                             np.array(EDGES * len(FAMILIES))])
    family = rng.integers(0, len(FAMILIES), len(params))
    family[-len(EDGES) * len(FAMILIES):] = np.repeat(np.arange(len(FAMILIES)), len(EDGES))
    lines = Lines(np.arange(len(params)), np.zeros(len(params), np.int64), family, params)
    want = [FAMILIES[f].render(a, b, c)
            for f, (a, b, c) in zip(family.tolist(), params.tolist(), strict=True)]
    assert lines.texts() == want
    assert Lines.empty().texts() == []


def _entry(t: int, msg: str, labels: object) -> dict[str, object]:
    return {"created_at": f"2026-11-20T10:00:00.{t:09d}Z", "msg": msg, "labels": labels}


def test_labels_of_every_shape_are_coded_as_each_line_says():
    page = [
        _entry(1, "a", {"stream": "stdout", "instance_id": "i-1", "service_id": "s"}),
        _entry(2, "b", {"stream": "koyeb", "service_id": "s"}),             # no instance
        _entry(3, "c", {"service_id": "s", "stream": "stderr", "instance_id": "i-2",
                        "region": "fra"}),                                    # extra label
        _entry(4, "d", {"stream": "stdout", "instance_id": 7, "service_id": "s"}),  # number
        _entry(5, "e", None),                                                 # no labels
        _entry(6, "f", {"stream": "stdout", "instance_id": "i-1", "service_id": "s"}),
    ]
    part = _Slice(0, 2**62)
    part.add(page)
    part.add([_entry(7, "g", {"stream": "stdout", "instance_id": "i-3", "service_id": "s"}),
              _entry(8, "h", {"stream": "stdout", "instance_id": ["i-4"],   # unhashable
                              "service_id": "s"})])
    df = _log_frame([part])
    assert df["msg"].tolist() == list("abcdefgh")
    assert df["instance_id"].astype(object).where(df["instance_id"].notna(), None).tolist() \
        == ["i-1", None, "i-2", "7", None, "i-1", "i-3", "['i-4']"]
    assert df["stream"].astype(object).where(df["stream"].notna(), None).tolist() \
        == ["stdout", "koyeb", "stderr", "stdout", None, "stdout", "stdout", "stdout"]
    assert df["region"].astype(object).where(df["region"].notna(), None).tolist() \
        == [None, None, "fra", None, None, None, None, None]
