"""Display names: how a service is labelled on a chart, in a table or on a terminal.

Full ids stay in the data; a label is built only when something is shown.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["service_labels"]


def service_labels(instances: pd.DataFrame) -> dict[str, str]:
    """``{service_id: "app/service"}``, the short id added only where labels collide.

    Examples
    --------
    >>> inst = pd.DataFrame({"service_id": ["s1-aaaaaaaa", "s2-bbbbbbbb"],
    ...                      "app_name": ["shop", "shop"], "service_name": ["api", "api"]})
    >>> service_labels(inst)
    {'s1-aaaaaaaa': 'shop/api (s1-aaaaa)', 's2-bbbbbbbb': 'shop/api (s2-bbbbb)'}
    """
    if not {"service_id", "app_name", "service_name"} <= set(instances.columns):
        return {}
    pairs = instances[["service_id", "app_name", "service_name"]].dropna(
        subset=["service_id"]).drop_duplicates("service_id")
    labels = {r.service_id: f"{r.app_name}/{r.service_name}"
              for r in pairs.itertuples(index=False)}
    counts = pd.Series(list(labels.values())).value_counts()
    return {sid: (f"{label} ({sid[:8]})" if counts[label] > 1 else label)
            for sid, label in labels.items()}
