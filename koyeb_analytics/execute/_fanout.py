"""The same command on many instances, and their outputs compared.

One instance failing, timing out or sending anything at all never stops the others:
:func:`exec_many` returns one row per instance, always.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from ..api._checks import check_client
from ..api._client import KoyebClient
from ..errors import KoyebError
from ..redact import Redactor
from ..schema import is_full_id
from ._run import DEFAULT_MAX_OUTPUT, CancelToken, ExecResult, as_redactor, exec_command
from ._stream import check_timeout, normalize_command

MANY_COLUMNS = ("instance_id", "service_id", "region", "exit_code", "exited", "timed_out",
                "error", "duration", "stdout", "stderr", "redacted", "truncated",
                "bytes_dropped")
INSTANCES_ACCEPTED = ("a DataFrame from load_instances (with an 'id' or 'instance_id' "
                      "column) or an iterable of instance id strings")


def check_command(command: Any, fn: str) -> None:
    """Raise a TypeError naming ``command``, what it accepts and what it got."""
    accepted = "command must be a string (run through sh -c) or a list of strings"
    if isinstance(command, str):
        return
    if isinstance(command, (bytes, bytearray)):
        raise TypeError(f"{accepted}, got {type(command).__name__} (decode it first)")
    if isinstance(command, pd.DataFrame):
        raise TypeError(f"{accepted}, got DataFrame: the command comes first, "
                        f"{fn}(client, command, instances=...)")
    if not isinstance(command, Sequence):
        raise TypeError(f"{accepted}, got {type(command).__name__}")
    for i, arg in enumerate(command):
        if not isinstance(arg, str):
            raise TypeError(f"command must be a list of strings: item {i} is "
                            f"{type(arg).__name__} ({str(arg)[:40]})")


def output_text(result: ExecResult, stream: str = "stdout") -> str:
    """A stream's text, with a line of its own where its middle was dropped.

    The line reads ``[… N bytes dropped here: raise max_output= to keep them …]``; it
    is at the end when the place of the cut is unknown. Without a cut, the text is the
    output as kept.
    """
    data = result.stdout if stream == "stdout" else result.stderr
    dropped = result.stdout_dropped if stream == "stdout" else result.stderr_dropped
    if not dropped:
        return data.decode("utf-8", "replace")
    cut = result.stdout_cut if stream == "stdout" else result.stderr_cut
    mark = f"[… {dropped} bytes dropped here: raise max_output= to keep them …]\n"
    head, tail = (data, b"") if cut is None else (data[:cut], data[cut:])
    text = head.decode("utf-8", "replace")
    return (text + ("\n" if text and not text.endswith("\n") else "") + mark
            + tail.decode("utf-8", "replace"))


def instance_targets(instances: pd.DataFrame | Iterable[str], *,
                     columns: Sequence[str] = ("service_id", "region"),
                     defaults: dict[str, Any] | None = None) -> pd.DataFrame:
    """The instances to run on, as a frame: ``instance_id`` and ``columns``.

    Accepts a frame from :func:`~koyeb_analytics.load_instances` (``id`` or
    ``instance_id``) or ids; checks every id is a full one, drops repeats, keeps the
    order, and fills absent ``columns`` from ``defaults`` (else None).

    Examples
    --------
    >>> iid = "0b1c2d3e-4f5a-4b7c-8d9e-0f1a2b3c4d5e"
    >>> ka.execute.instance_targets([iid, iid]).columns.tolist()
    ['instance_id', 'service_id', 'region']
    """
    if isinstance(instances, pd.DataFrame):
        if "id" in instances:
            df = instances.rename(columns={"id": "instance_id"})
        elif "instance_id" in instances:
            df = instances
        else:
            raise ValueError("the instances frame needs an 'id' or 'instance_id' column")
        df = df.drop_duplicates("instance_id")
    else:
        if isinstance(instances, str):
            instances = [instances]
        elif isinstance(instances, (bytes, bytearray)) or not isinstance(instances, Iterable):
            raise TypeError(f"instances must be {INSTANCES_ACCEPTED}, "
                            f"got {type(instances).__name__}")
        ids = list(instances)
        for iid in ids:  # before deduplicating, which needs hashable ids
            if not isinstance(iid, str) or not is_full_id(iid):
                raise ValueError(f"instance ids must be full ids (UUIDs), got {iid!r}")
        df = pd.DataFrame({"instance_id": list(dict.fromkeys(ids))})
    for col in columns:
        if col not in df:
            df = df.assign(**{col: (defaults or {}).get(col)})
    for iid in df["instance_id"]:
        if not isinstance(iid, str) or not is_full_id(iid):
            raise ValueError(f"instance ids must be full ids (UUIDs), got {iid!r}")
    return df[["instance_id", *columns]].reset_index(drop=True)


def exec_many(client: KoyebClient, command: str | Sequence[str], *,
              instances: pd.DataFrame | Iterable[str], concurrency: int = 8,
              timeout: float | None = 30, stdin: bytes | str | None = None,
              tty: bool = False, max_output: int = DEFAULT_MAX_OUTPUT,
              cancel: CancelToken | None = None,
              redact: Redactor | bool = True) -> pd.DataFrame:
    """Run the same command on many instances, ``concurrency`` at a time.

    One instance failing, timing out or hanging never stops the others, nor delays them
    beyond its own timeout.

    Parameters
    ----------
    client
        A :class:`~koyeb_analytics.KoyebClient`.
    command
        A list of arguments, or a string run through ``sh -c``.
    instances
        A frame from :func:`~koyeb_analytics.load_instances` (``id`` or
        ``instance_id`` column), or instance ids.
    concurrency
        How many instances at once.
    timeout, stdin, tty, max_output, cancel, redact
        As for :func:`~koyeb_analytics.exec_command`, per instance.

    Returns
    -------
    DataFrame
        One row per instance, in the order given: ``instance_id, service_id, region,
        exit_code, exited, timed_out, error, duration, stdout, stderr`` (text, secrets
        redacted), ``redacted`` (how many), ``truncated`` and ``bytes_dropped``.
        A stream longer than ``max_output`` keeps its head and tail: its row says
        ``truncated``, counts the bytes dropped from the middle (stdout and stderr),
        and its text has the line ``[… N bytes dropped here: raise max_output= to keep
        them …]`` where they were; one ``UserWarning`` says how many runs were cut.
        ``attrs["command"]`` holds the command (attrs keep JSON-safe provenance only;
        :func:`~koyeb_analytics.exec_command` gives the full :class:`ExecResult`).

    Examples
    --------
    >>> import koyeb_analytics as ka
    >>> with ka.simulate(seed=1, days=1, services=2) as sim:
    ...     c = sim.client()
    ...     running = ka.load_instances(c, statuses="HEALTHY", progress=False).head(2)
    ...     runs = ka.exec_many(c, ["echo", "hi"], instances=running, timeout=30)
    >>> runs["stdout"].tolist(), runs["exit_code"].tolist(), runs["truncated"].tolist()
    (['hi\\n', 'hi\\n'], [0, 0], [False, False])
    """
    targets, results = run_each(client, command, instances=instances,
                                concurrency=concurrency,
                                timeout=timeout, stdin=stdin, tty=tty,
                                max_output=max_output, cancel=cancel, redact=redact,
                                fn="exec_many")
    df = targets.assign(
        exit_code=pd.array([r.exit_code for r in results], dtype="Int64"),
        exited=[r.exited for r in results],
        timed_out=[r.timed_out for r in results],
        error=pd.Series([r.error for r in results], dtype=object),
        duration=pd.to_timedelta([r.duration for r in results]),
        stdout=[output_text(r, "stdout") for r in results],
        stderr=[output_text(r, "stderr") for r in results],
        redacted=pd.array([r.redacted for r in results], dtype="Int64"),
        truncated=pd.array([r.truncated for r in results], dtype=bool),
        bytes_dropped=pd.array([r.stdout_dropped + r.stderr_dropped for r in results],
                               dtype="int64"),
    )
    df = df[list(MANY_COLUMNS)]
    df.attrs["command"] = list(normalize_command(command))
    cut = int(df["truncated"].sum())
    if cut:
        warnings.warn(
            f"exec_many: the output of {cut} of {len(df)} run(s) passed "
            f"max_output={max_output} bytes per stream: {int(df['bytes_dropped'].sum())} "
            "bytes from the middle were dropped (rows marked truncated, each cut marked "
            "by a line in the text); pass a larger max_output= to keep them",
            UserWarning, stacklevel=2)
    return df


def run_each(client: KoyebClient, command: str | Sequence[str], *,
             instances: pd.DataFrame | Iterable[str], concurrency: int = 8,
             timeout: float | None = 30, stdin: bytes | str | None = None,
             tty: bool = False, max_output: int = DEFAULT_MAX_OUTPUT,
             cancel: CancelToken | None = None, redact: Redactor | bool = True,
             fn: str = "exec_many", then: Callable[[ExecResult], object] | None = None,
             ) -> tuple[pd.DataFrame, list[ExecResult]]:
    """Check the arguments, then run as :func:`exec_many` does.

    ``then`` is called with each result in the thread that ran it, as soon as it
    ended, so that work on one output (parsing it) overlaps with the runs still
    waiting on their instances; ``fn`` is the public function named in argument errors.

    Returns
    -------
    tuple
        The targets (from :func:`instance_targets`) and one :class:`ExecResult` per
        target, in order.
    """
    check_client(client)
    check_command(command, fn)
    argv = normalize_command(command)
    targets = instance_targets(instances)
    redactor = as_redactor(redact)
    check_timeout(timeout)
    if stdin is not None and not isinstance(stdin, (bytes, bytearray, str)):
        raise TypeError("stdin must be bytes, str or None")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 2:
        raise ValueError(f"max_output must be an integer of at least 2 bytes, got {max_output!r}")

    def one(iid: str) -> ExecResult:
        try:
            result = exec_command(client, argv, instance_id=iid, timeout=timeout,
                                  stdin=stdin, tty=tty, max_output=max_output,
                                  cancel=cancel, redact=redactor)
        except Exception as exc:  # noqa: BLE001 - one instance never sinks the others
            now = pd.Timestamp.now(tz="UTC")
            what = str(exc) if isinstance(exc, KoyebError) else f"{type(exc).__name__}: {exc}"
            result = ExecResult(instance_id=iid, command=argv, error=client.scrub(what),
                                started_at=now, ended_at=now)
        if then is not None:
            then(result)
        return result

    with ThreadPoolExecutor(max_workers=min(concurrency, max(len(targets), 1)),
                            thread_name_prefix="koyeb-exec") as pool:
        results = list(pool.map(one, targets["instance_id"]))
    return targets, results


def group_outputs(runs: pd.DataFrame) -> pd.DataFrame:
    """Collapse identical outputs; show how each outlier differs from the majority.

    Parameters
    ----------
    runs
        From :func:`exec_many`.

    Returns
    -------
    DataFrame
        One row per distinct (exit_code, stdout, stderr), largest group first:
        ``instances`` (count), ``instance_ids``, ``exit_code``, ``stdout``, ``stderr``,
        ``majority`` and ``diff_vs_majority`` (a unified diff against the majority's
        output).
        ``attrs["summary"]`` reads like "12 instances: 10 identical; 2 differ".

    Examples
    --------
    >>> runs = pd.DataFrame({"instance_id": ["a", "b", "c"], "exit_code": [0, 0, 1],
    ...                      "stdout": ["ok\\n", "ok\\n", "no\\n"], "stderr": ["", "", ""],
    ...                      "error": [None, None, None]})
    >>> group_outputs(runs).attrs["summary"]
    '3 instances: 2 identical; 1 differ (1 other output)'
    """
    import difflib

    if runs.empty:
        out = pd.DataFrame(columns=["instances", "instance_ids", "exit_code", "stdout",
                                    "stderr", "majority", "diff_vs_majority"])
        out.attrs["summary"] = "0 instances"
        return out
    key = runs.assign(_code=runs["exit_code"].astype(object).where(runs["exit_code"].notna(),
                                                                  None),
                      _err=runs["error"].fillna("") if "error" in runs else "")
    groups = []
    for (code, out, err, error), grp in key.groupby(["_code", "stdout", "stderr", "_err"],
                                                    sort=False, dropna=False):
        groups.append({"instances": len(grp), "instance_ids": list(grp["instance_id"]),
                       "exit_code": code, "stdout": out, "stderr": err,
                       "error": error or None})
    groups.sort(key=lambda g: (-g["instances"], g["instance_ids"][0]))
    major = groups[0]
    base = (major["stdout"] + major["stderr"]).splitlines(keepends=True)
    for i, g in enumerate(groups):
        g["majority"] = i == 0
        g["diff_vs_majority"] = "" if i == 0 else "".join(difflib.unified_diff(
            base, (g["stdout"] + g["stderr"]).splitlines(keepends=True),
            fromfile=f"majority ({major['instances']})",
            tofile=f"{g['instance_ids'][0][:8]} ({g['instances']})"))
    out = pd.DataFrame(groups)
    out["exit_code"] = out["exit_code"].astype("Int64")  # not float when one is missing
    n = len(runs)
    differ = n - major["instances"]
    out.attrs["summary"] = (f"{n} instances: identical" if differ == 0 else
                            f"{n} instances: {major['instances']} identical; {differ} differ "
                            f"({len(groups) - 1} other output{'s' if len(groups) > 2 else ''})")
    return out
