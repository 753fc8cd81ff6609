"""The ``koyeb-analytics`` command.

Long because each subcommand (demo, report, export, sync, simulate, watch) is a few lines of
wiring plus its own help text, and they share the error handling and the source
options (API, simulator or history store).

Everything it prints goes through :func:`~koyeb_analytics.textsafe.visible`: names,
messages and error texts come from the API, and their control characters are shown
(``\\x1b``), never sent to the terminal as escape sequences."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigurationError, KoyebError
from .textsafe import visible, write_csv


def _say(message: str) -> None:
    """Print a progress or status line on stderr, control characters shown as text."""
    print(visible(message), file=sys.stderr, flush=True)


def _tell(text: str) -> None:
    """Print a result on stdout, control characters shown as text."""
    print(visible(text), flush=True)


def _name(text: object) -> str:
    """Show a name or a message from the API as one line of text."""
    return visible(text, newlines=False)


def _demo(args: argparse.Namespace) -> int:
    from .analysis._summary import analyse
    from .report._html import write_report
    from .report._text import text_summary
    from .simulator._server import simulate
    from .sources import load_changes, load_window

    started = time.perf_counter()
    _say(f"[1/4] Starting the simulator on 127.0.0.1 (seed {args.seed}, {args.days} days, "
         f"{args.services} services)...")
    with simulate(seed=args.seed, days=args.days, services=args.services,
                  outages=max(1, args.services // 6), vocabulary=args.vocabulary) as sim:
        client = sim.client()
        _say("[2/4] Loading every instance and event...")
        data = load_window(client, window=f"{args.days}d", progress=_progress(args))
        ch = load_changes(client, since=data.since, until=data.until)
    inst, ev = data.instances, data.events
    _say(f"      {len(inst)} instances ({inst.attrs['pages']} pages), {len(ev)} events "
         f"({ev.attrs['pages']} pages)")
    _say("[3/4] Rebuilding lifecycles; uptime, incidents, capacity, what changed...")
    a = analyse(data, changes=ch)
    _say("[4/4] Writing the report...")
    out = write_report(a, args.out, title="Koyeb services report (simulated fleet)")
    _tell(text_summary(a, out))
    _say(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


def _client(args: argparse.Namespace) -> tuple[Any, Any]:
    if getattr(args, "store", None):
        if getattr(args, "simulate", False):
            raise ValueError("--store and --simulate are two sources: give one")
        from .store._history import HistoryStore

        store = HistoryStore(args.store)
        store.manifest()  # a missing or foreign store fails before anything else
        return store, None
    return _api(args)


def _api(args: argparse.Namespace) -> tuple[Any, Any]:
    """The real API, or a simulator started for this command."""
    from .api._client import KoyebClient

    if getattr(args, "simulate", False):
        from .simulator._server import simulate

        live = getattr(args, "command", None) == "watch"  # a fleet that keeps changing
        sim = simulate(seed=args.seed, days=max(7, _days(args.window)), services=12,
                       vocabulary=args.vocabulary, live=live, speed=60).start()
        return sim.client(), sim
    return KoyebClient.from_env(), None


def _days(window: str) -> int:
    from .timewindow import parse_duration

    return int(parse_duration(window).total_seconds() // 86400) + 1


def _target(text: str | None) -> float | None:
    """``--target``: ``99.9``, ``99.9%`` or ``0.999`` (a fraction below 1)."""
    if text is None:
        return None
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value >= 1 or text.strip().endswith("%"):
        value /= 100
    if not 0 < value < 1:
        raise ValueError(f"--target={text!r}: give the availability objective as a "
                         "percentage (99.9) or a fraction (0.999), below 100 %")
    return value


def _report_window(args: argparse.Namespace) -> dict[str, Any]:
    """``--since``/``--until`` (a post-mortem's own window) beside ``--window``, checked
    before anything starts."""
    from .timewindow import parse_duration, resolve_window

    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None:
        if args.window_given:
            raise ValueError("--since and --window together are ambiguous: give --since "
                             "(and --until), or --window (and --until)")
        tw = resolve_window(since=since, until=until)  # says when since is not before
        return {"since": tw.since, "until": tw.until}
    parse_duration(args.window)  # a bad window fails before anything starts
    if until is not None:
        tw = resolve_window(until=until, window=args.window)
        return {"since": tw.since, "until": tw.until}
    return {"window": args.window}


def _report(args: argparse.Namespace) -> int:
    from .analysis._metrics import UptimePolicy
    from .analysis._summary import analyse
    from .errors import KoyebError
    from .report._html import write_report
    from .report._text import text_summary
    from .sources import load_changes, load_window

    span = _report_window(args)
    target = _target(getattr(args, "target", None))
    policy = UptimePolicy(target=target) if target is not None else None
    client, sim = _client(args)
    ch = None
    try:
        data = load_window(client, service_id=args.service, progress=_progress(args), **span)
        try:
            ch = load_changes(client, since=data.since, until=data.until,
                              progress=_progress(args))
        except KoyebError as exc:
            # What changed is context: a listing the API refuses, or that fails part
            # way, leaves it out and says why; the report itself still stands.
            _say(f"What changed is left out of the report: {exc}")
    finally:
        if sim is not None:
            sim.stop()
    if getattr(args, "store", None):
        _say(f"From the history store {args.store} (last sync "
             f"{data.instances.attrs.get('fetched_at')})")
    if args.service and data.instances.empty:
        raise ValueError(f"--service {', '.join(args.service)} matches no instance in the "
                         f"last {args.window}: check the id (koyeb service list)")
    if ch is not None and args.service:
        ch = ch[ch["service_id"].isin(args.service)].reset_index(drop=True)
    a = analyse(data, policy=policy, changes=ch)
    out = write_report(a, args.out)
    _tell(text_summary(a, out))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .load._loaders import load_events, load_instances
    from .store._history import HistoryStore
    from .timewindow import parse_duration

    parse_duration(args.window)
    client, sim = _client(args)
    if isinstance(client, HistoryStore):
        store = client

        def instances(**kw: Any) -> pd.DataFrame:
            kw.pop("names", None)
            kw.pop("progress", None)
            return store.instances(**kw)

        def events(**kw: Any) -> pd.DataFrame:
            kw.pop("progress", None)
            return store.events(**kw)
    else:
        def instances(**kw: Any) -> pd.DataFrame:
            return load_instances(client, **kw)

        def events(**kw: Any) -> pd.DataFrame:
            return load_events(client, **kw)
    try:
        if args.what == "instances" and args.service:
            parts = [instances(window=args.window, service_id=svc, progress=_progress(args))
                     for svc in args.service]
            df = pd.concat(parts, ignore_index=True)
            df.attrs = parts[0].attrs
        elif args.service:
            ids = pd.concat([instances(window=args.window, service_id=svc, names=False,
                                       progress=_progress(args))
                             for svc in args.service])["id"].tolist()
            if not ids:
                raise ValueError(f"--service {', '.join(args.service)} matches no "
                                 f"instance in the last {args.window}")
            df = events(window=args.window, instance_ids=ids, progress=_progress(args))
        else:
            load = instances if args.what == "instances" else events
            df = load(window=args.window, progress=_progress(args))
    finally:
        if sim is not None:
            sim.stop()
    out = Path(args.out or f"{args.what}.{args.format}")
    if args.format == "parquet":
        from .store._snapshots import json_columns, json_safe

        flat = df.copy()
        for col in json_columns(df):
            flat[col] = [json.dumps(json_safe(v)) for v in df[col]]
        flat.attrs = {}
        flat.to_parquet(out, index=False)
    else:
        flat = df.copy()
        for col in ("messages", "metadata"):
            if col in flat:
                flat[col] = [json.dumps(v) for v in flat[col]]
        write_csv(flat, out, safe=not args.raw_csv)
    _tell(f"Wrote {len(df)} {args.what} to {out}")
    return 0


def _path_latency(text: str) -> tuple[str, float]:
    path, sep, ms = text.partition("=")
    try:
        value = float(ms)
    except ValueError:
        value = -1.0
    if not sep or not path.startswith("/") or not value >= 0:
        raise argparse.ArgumentTypeError(
            f"expected PATH=MILLISECONDS with PATH starting with '/', got {text!r}")
    return path, value


def _progress(args: argparse.Namespace) -> bool:
    # Bars redraw with carriage returns: only on a terminal, not in logs or pipes.
    return not args.quiet and sys.stderr.isatty()


def _simulate(args: argparse.Namespace) -> int:
    from .simulator._faults import Faults
    from .simulator._server import Simulator

    sim = Simulator(seed=args.seed, days=args.days, services=args.services, port=args.port,
                    vocabulary=args.vocabulary, faults=Faults(latency=args.latency / 1000,
                                  path_latency={p: ms / 1000 for p, ms in args.path_latency}))
    token_file = Path(args.token_file)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(sim.token)
    sim.start()
    _tell(f"Simulated Koyeb API on {sim.url} ({len(sim.fleet.inst['id'])} instances, "
          f"{len(sim.fleet.ev['when'])} events); token in {token_file} (mode 0600).")
    _tell(f"Use it with: KOYEB_URL={sim.url} KOYEB_TOKEN=$(cat {token_file})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


def _sync(args: argparse.Namespace) -> int:
    from .store._history import HistoryStore

    store = HistoryStore(args.store, overlap=args.overlap)
    client, sim = _api(args)
    try:
        _say(f"Syncing {store.path} from {client.base_url}...")
        result = store.sync(client, progress=_progress(args), metrics=args.metrics,
                            step=args.step, logs=args.logs,
                            max_log_bytes=int(args.max_log_mib * 2**20),
                            platform=not args.no_platform)
    finally:
        if sim is not None:
            sim.stop()
    start = "the whole history" if result.since is None else \
        f"events since {result.since:%Y-%m-%d %H:%M:%S} UTC"
    _tell(f"Read {start}: {result.events_read} events, {result.events_added} new; "
          f"{result.instances_listed} instances, {result.instance_records_added} new or "
          "changed records.")
    manifest = store.manifest()
    _tell(f"The store holds {manifest['events']['rows']} events (newest "
          f"{result.high_water}) and {manifest['instances']['rows']} instance records.")
    if args.metrics:
        _tell(f"Metrics: {result.metric_samples_read} samples read, "
              f"{result.metric_samples_added} new.")
    if args.logs:
        _tell(f"Logs: {result.log_lines_read} lines read, {result.log_lines_added} new; "
              f"{result.log_bytes / 2**20:.1f} MiB kept.")
    if not args.no_platform:
        _tell(f"Platform lines of lost events: {result.platform_gaps_read} gap(s) read, "
              f"{result.platform_lines_added} new line(s).")
    for note in result.notes:
        _tell(f"  note: {_name(note)}")
    return 0


def _service_id(client: Any, given: str | None) -> str | None:
    """A service id from an id or a name (``app/service``, or a unique service name)."""
    from .labels import service_labels
    from .load._loaders import load_instances
    from .schema import is_full_id

    if given is None or is_full_id(given):
        return given
    inst = load_instances(client, progress=False)
    labels = service_labels(inst)
    names = dict(zip(inst["service_id"], inst["service_name"], strict=True))
    found = sorted({sid for sid, label in labels.items()
                    if given in (label, names.get(sid))})
    if len(found) != 1:
        raise ValueError(f"--service {given}: {'no' if not found else 'more than one'} "
                         "service by that name; give its id")
    return found[0]


def _watch(args: argparse.Namespace) -> int:
    from .poller import Poller, format_change
    from .timewindow import parse_duration

    every = parse_duration(args.every, "--every").total_seconds()
    client, sim = _api(args)
    colour = sys.stdout.isatty()
    seen = polls = 0
    # Ctrl-C asks to stop: the poll in progress ends (every request has a deadline), then
    # the loop does, without an exception thrown through the readers' threads; a
    # second Ctrl-C interrupts at once.
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        poller = Poller(client, window=args.window, every=args.every,
                        service_id=_service_id(client, args.service))
        first = poller.poll()
        polls += 1
        board = poller.board()
        _tell(f"Watching {len(poller.instances)} instances of {len(board)} services "
              f"from {_name(client.base_url)}; polling every {every:g} s. Ctrl-C to stop.")
        if first.error:
            _tell(f"  poll failed: {_name(first.error)}; backing off {first.delay:g} s")
        summary_at = time.monotonic() + 60
        delay = first.delay
        while not stop.wait(delay):
            result = poller.poll()
            polls += 1
            for _, row in result.changes.iterrows():
                # Not through _tell: format_change shows the data's control characters
                # as text itself, then adds our colour, which must reach the terminal.
                print(format_change(row, colour=colour), flush=True)
            seen += len(result.changes)
            if result.error:
                _tell(f"  poll failed: {_name(result.error)}; backing off "
                      f"{result.delay:g} s")
            if time.monotonic() >= summary_at:
                counts = poller.instances["status"].astype(str).value_counts()
                _tell(f"[{pd.Timestamp.now(tz='UTC'):%H:%M} UTC] " + ", ".join(
                    f"{n} {_name(s)}" for s, n in counts.items())
                    + f"; {seen} change(s) so far")
                summary_at = time.monotonic() + 60
            delay = result.delay
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
        if sim is not None:
            sim.stop()
    _tell(f"\nStopped: {seen} status change(s) in {polls} poll(s).")
    return 0


def _source_options(parser: argparse.ArgumentParser, store: bool = True) -> None:
    """Where the data comes from: the window, and the real API or the simulator."""
    parser.add_argument("--window", default="7d", help="e.g. 24h, 7d (default 7d)")
    if store:
        parser.add_argument("--store", metavar="PATH",
                            help="read a history store (koyeb-analytics sync) instead of "
                                 "the API; the window ends at its last sync")
    parser.add_argument("--simulate", action="store_true", help="use the simulator")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument("--vocabulary", choices=["invented", "opaque"], default="invented",
                      help="simulated event types: invented ones with the status in "
                           "metadata, or opaque ones with real message texts only")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (shown on a terminal only)")


class _Help(argparse.HelpFormatter):
    """Help that states every default worth stating (not None, not False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="koyeb-analytics",
        description="Understand what happened to services on Koyeb, from the instance API.")
    from ._version import __version__

    parser.add_argument("--version", action="version",
                        version=f"koyeb-analytics {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", formatter_class=_Help,
                          help="run the toolkit end to end on the simulator",
                          description="Start the simulator (a week, a dozen services, an "
                          "incident), load everything, analyse it and write an HTML report.")
    demo.add_argument("--seed", type=int, default=7, help="the simulated fleet's seed")
    demo.add_argument("--days", type=int, default=7, help="days of history")
    demo.add_argument("--services", type=int, default=12, help="number of services")
    demo.add_argument("--out", default="koyeb-report.html", help="report path")
    demo.add_argument("--vocabulary", choices=["invented", "opaque"], default="invented",
                      help="simulated event types: invented ones with the status in "
                           "metadata, or opaque ones with real message texts only")
    demo.add_argument("--quiet", action="store_true",
                      help="no progress bars (shown on a terminal only)")
    demo.set_defaults(func=_demo)

    report = sub.add_parser("report", formatter_class=_Help,
                            help="write the HTML report for a window",
                            description="Against the real API (token from KOYEB_TOKEN, "
                            "KOYEB_API_TOKEN or ~/.koyeb.yaml), or the simulator with "
                            "--simulate.")
    _source_options(report)
    report.add_argument("--service", action="append", help="only this service (repeatable)")
    report.add_argument("--since", help="a post-mortem's own window: its start (ISO time, "
                        "UTC unless it says otherwise); --window is then not used")
    report.add_argument("--until", help="the window's end (ISO time or now; default now)")
    report.add_argument("--target", help="availability objective, e.g. 99.9 or 0.999 "
                        "(default 99.9)")
    report.add_argument("--out", default="koyeb-report.html", help="report path")
    report.set_defaults(func=_report)

    export = sub.add_parser("export", formatter_class=_Help,
                            help="export instances or events to CSV or Parquet")
    export.add_argument("what", choices=["instances", "events"], help="what to export")
    _source_options(export)
    export.add_argument("--service", action="append",
                        help="only this service's instances (or their events); repeatable")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv",
                        help="file format")
    export.add_argument("--out", help="file path (default: <what>.<format>)")
    export.add_argument("--raw-csv", action="store_true",
                        help="write text cells exactly as received; by default a cell "
                             "that starts with = + - @, a tab or a carriage return (or "
                             "with ') gets a leading ' so a spreadsheet does not run it "
                             "as a formula")
    export.set_defaults(func=_export)

    sync = sub.add_parser("sync", formatter_class=_Help,
                          help="keep what is new from the API in a history store",
                          description="Read the events newer than the store's newest one "
                          "(less --overlap) and the instance listing, and append them to "
                          "the store at --store (a directory, or an fsspec URL).")
    sync.add_argument("--store", required=True, metavar="PATH",
                      help="the store's directory or URL (made on the first sync)")
    sync.add_argument("--overlap", default="10min",
                      help="how far back each sync reads again, for events that arrive late")
    sync.add_argument("--metrics", action="store_true",
                      help="also keep every service's metrics (all nine, at --step)")
    sync.add_argument("--step", default="5m", help="the metrics' step (one per store)")
    sync.add_argument("--logs", action="store_true",
                      help="also keep every service's runtime logs, within --max-log-mib")
    sync.add_argument("--max-log-mib", type=float, default=256, metavar="MIB",
                      help="the logs' budget on disk: past it the oldest days are dropped")
    sync.add_argument("--no-platform", action="store_true",
                      help="do not read the platform's lines of lost events (a query per "
                      "gap); lost events then keep the median's guess")
    _source_options(sync, store=False)
    sync.set_defaults(func=_sync)

    watch = sub.add_parser("watch", formatter_class=_Help,
                           help="print status changes as they happen, until Ctrl-C",
                           description="Poll the API for new events (one request when "
                           "nothing happened) and print one line per status change; a "
                           "summary every minute.")
    watch.add_argument("--service", help="only this service (its id, or app/service)")
    watch.add_argument("--every", default="15s", help="polling interval")
    _source_options(watch, store=False)
    watch.set_defaults(func=_watch, window="2h")
    sim = sub.add_parser("simulate", formatter_class=_Help,
                         help="serve the simulated Koyeb API until Ctrl-C")
    sim.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    sim.add_argument("--seed", type=int, default=0, help="the simulated fleet's seed")
    sim.add_argument("--days", type=float, default=7, help="days of history")
    sim.add_argument("--services", type=int, default=12, help="number of services")
    sim.add_argument("--latency", type=float, default=0.0,
                     help="milliseconds added to every request")
    sim.add_argument("--path-latency", type=_path_latency, action="append", default=[],
                     metavar="PATH=MS",
                     help="further milliseconds for paths starting with PATH (repeatable), "
                          "e.g. /v1/instance_events=200")
    sim.add_argument("--vocabulary", choices=["invented", "opaque"], default="invented",
                      help="simulated event types: invented ones with the status in "
                           "metadata, or opaque ones with real message texts only")
    sim.add_argument("--token-file", default="koyeb-sim.token",
                     help="where to write the run's token (mode 0600)")
    sim.set_defaults(func=_simulate)
    return parser


USAGE_ERROR, RUNTIME_ERROR = 2, 1


def _what_to_do(exc: BaseException) -> str:
    """An error as a line that leads with what to do, never with internals."""
    from .errors import (
        AuthenticationError,
        ConfigurationError,
        IncompleteListingError,
        MalformedResponseError,
        PermissionDeniedError,
        TransportError,
    )

    cause = exc.cause if isinstance(exc, IncompleteListingError) else exc
    if isinstance(cause, AuthenticationError):
        return ("the token was rejected (401): set KOYEB_TOKEN, or log in with the Koyeb "
                "CLI")
    if isinstance(cause, PermissionDeniedError):
        return ("the token may not read this (403): use a token of the organization that "
                "owns these services")
    if isinstance(cause, TransportError):
        return (f"cannot reach the API ({cause}): check your network, HTTPS_PROXY/NO_PROXY "
                "and KOYEB_URL")
    if isinstance(cause, MalformedResponseError):
        return f"the API answered something unexpected; try again later ({cause})"
    if isinstance(exc, IncompleteListingError):
        return (f"the listing stopped after {exc.pages} page(s): {cause}; try again, or "
                "a shorter --window")
    if isinstance(exc, ConfigurationError):
        return str(exc)
    return str(exc)


def _check_out(path: str | None) -> None:
    """Fail before any loading when the output cannot be written."""
    if path is None:
        return
    out = Path(path)
    parent = out.resolve().parent
    if out.is_dir():
        raise ValueError(f"--out {path} is a directory: give a file name")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"--out {path}: cannot write in {parent}")


class _VisibleFormatter(logging.Formatter):
    """Log lines (retries quote the API's errors) with control characters shown."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = list(argv) if argv is not None else sys.argv[1:]
    args.window_given = any(a == "--window" or a.startswith("--window=") for a in given)
    # Retries are announced, so a slow or unreachable API is never silence.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_VisibleFormatter("koyeb-analytics: %(message)s"))
    logger = logging.getLogger("koyeb_analytics")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    # Warnings quote data too (a font without a glyph for a name's ESC names the ESC).
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda *a, **k: visible(formatwarning(*a, **k))
    error: BaseException
    try:
        _check_out(getattr(args, "out", None))
        return int(args.func(args))
    except (ValueError, TypeError, ConfigurationError) as exc:
        code, text, error = USAGE_ERROR, str(exc), exc
    except (KoyebError, OSError) as exc:
        code, text, error = RUNTIME_ERROR, _what_to_do(exc), exc
    finally:
        logger.removeHandler(handler)
        warnings.formatwarning = formatwarning
    if args.debug:
        sys.stderr.write(visible("".join(traceback.format_exception(error))))
    # One line, whatever the server put in the message it quotes.
    print(f"koyeb-analytics: error: {_name(text)}", file=sys.stderr)
    return code
