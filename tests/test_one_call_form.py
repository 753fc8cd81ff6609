"""One way to call each thing: exec entry points take ``(client, command, *, targets...)``,
and no old call form, alias or deprecated option is left behind."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import koyeb_analytics as ka  # noqa: E402
from koyeb_analytics import execute, timewindow  # noqa: E402
from koyeb_analytics.api import KoyebClient  # noqa: E402
from koyeb_analytics.execute import _fanout  # noqa: E402

IID = "5b1f7f0e-1111-4222-8333-444455556666"
TARGETS = {"instance_id", "service_id", "instances"}
"""The keywords that say where a command runs: one instance or service (a full id), or
many instances (a frame or ids)."""


def _takes_a_client(obj: object) -> bool:
    try:
        params = inspect.signature(obj).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return "client" in params


def exec_entry_points() -> dict[str, object]:
    """Every public callable of ``ka.execute`` (and ``ka.exec_*``) that takes a client,
    plus the private ``run_each`` that exec_many and exec_table share (the widget, which
    takes no command, has a test of its own)."""
    found = {name: getattr(execute, name) for name in execute.__all__
             if callable(getattr(execute, name)) and _takes_a_client(getattr(execute, name))}
    found.update({name: getattr(ka, name) for name in ka.__all__
                  if name.startswith("exec_") and _takes_a_client(getattr(ka, name))})
    found["run_each"] = _fanout.run_each
    return found


def test_the_entry_points_are_all_found():
    assert {"exec_command", "exec_stream", "exec_many", "exec_table", "ExecStream",
            "run_each"} <= set(exec_entry_points())


@pytest.mark.parametrize("name", sorted(exec_entry_points()))
def test_an_exec_entry_point_takes_client_and_command_then_keywords(name):
    fn = exec_entry_points()[name]
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:2]] == ["client", "command"], name
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:2]), name
    rest = params[2:]
    assert rest and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), \
        f"{name}: {[(p.name, p.kind.name) for p in rest if p.kind is not p.KEYWORD_ONLY]}"
    targets = {p.name for p in rest} & TARGETS
    assert targets in ({"instance_id", "service_id"}, {"instances"}), (name, targets)
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    assert hints["client"] is KoyebClient, name


def test_the_widget_takes_the_client_then_keywords_and_runs_a_command_first():
    widget = ka.ExecWidget
    params = list(inspect.signature(widget).parameters.values())
    assert params[0].name == "client"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    assert {"instances", "service_id"} <= {p.name for p in params[1:]}
    assert typing.get_type_hints(widget.__init__)["client"] is KoyebClient
    run = list(inspect.signature(widget.run).parameters.values())
    assert [p.name for p in run[:2]] == ["self", "command"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in run[2:])
    assert "instances" in {p.name for p in run[2:]}


def test_the_old_argument_orders_fail_before_any_request():
    # Port 9 (discard) refuses connections: a call that got past its checks would fail
    # with a transport error instead of the TypeError asserted here.
    client = ka.KoyebClient("tok-one-call", base_url="http://127.0.0.1:9", timeout=2,
                            max_retries=0)
    with pytest.raises(TypeError, match=r"exec_command\(\) takes 2 positional arguments"):
        ka.exec_command(client, IID, ["id"])
    with pytest.raises(TypeError, match=r"exec_stream\(\) takes 2 positional arguments"):
        ka.exec_stream(client, IID, ["id"])
    with pytest.raises(TypeError, match=r"exec_many\(\) takes 2 positional arguments"):
        ka.exec_many(client, [IID], ["id"])
    with pytest.raises(TypeError, match=r"exec_table\(\) takes 2 positional arguments"):
        ka.exec_table(client, [IID], "ps aux")
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: "
                                        r"'instances'"):
        ka.exec_many(client, ["id"])
    import pandas as pd

    frame = pd.DataFrame({"id": [IID]})
    with pytest.raises(TypeError, match=r"got DataFrame: the command comes first, "
                                        r"exec_many\(client, command, instances=\.\.\.\)"):
        ka.exec_many(client, frame, instances=[IID])  # type: ignore[arg-type]


def test_no_shim_is_left():
    assert not (Path(ka.__file__).parent / "_compat.py").exists()  # positional_deprecated
    assert not hasattr(execute, "ServerError")  # the frame is ErrorFrame; ServerError is HTTP
    assert "ServerError" not in execute.__all__
    assert not hasattr(timewindow, "WindowLike")
    assert timewindow.DurationLike == "str | timedelta | pd.Timedelta"
    with pytest.raises(TypeError, match="unexpected keyword argument 'session'"):
        ka.KoyebClient("t", session=object())  # type: ignore[call-arg]


def test_the_figures_and_charts_take_only_their_data_positionally():
    for fn in (ka.uptime, ka.incidents, ka.capacity, ka.crash_loops, ka.timeline,
               ka.error_budget, ka.overall_availability, ka.peak_capacity,
               ka.plot_lifecycles, ka.plot_capacity, ka.plot_uptime, ka.plot_events):
        first, *rest = inspect.signature(fn).parameters.values()
        assert first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, fn.__name__
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), fn.__name__
        # no wrapper between the name and the function (a shim would hide behind one)
        assert not hasattr(fn, "__wrapped__"), fn.__name__
