"""Exec: run commands on instances over the exec websocket, one or many; their output as data.

Modules with one job each: ``_codec`` (the protocol's frames, pure functions shared
with the simulator), ``_stream`` (an open session over the websocket: the connection
under a deadline, the whole session under ``timeout`` when one is given), ``_run`` (one
command: capture, cancel, result), ``_fanout`` (many instances, outputs compared),
``_diagnostics`` (outputs parsed with ``jc`` into one frame) and ``_transcript`` (every
run kept as a row, saved and loaded).
"""

from __future__ import annotations

from ..errors import ExecFailedError, ExecInterrupted, InstanceNotRunningError
from ._codec import (
    EXEC_PATH,
    STDIN_CHUNK,
    Closed,
    ErrorFrame,
    Event,
    Exit,
    Output,
    command_frame,
    decode_frame,
    error_for,
    error_frame,
    resize_frame,
    result_frame,
    stdin_close_frame,
    stdin_frames,
)
from ._diagnostics import Diagnostic, diagnostics, exec_table
from ._fanout import MANY_COLUMNS, exec_many, group_outputs, instance_targets
from ._run import DEFAULT_MAX_OUTPUT, CancelToken, ExecResult, exec_command
from ._stream import ExecStream, exec_stream, normalize_command
from ._transcript import (
    TRANSCRIPT_COLUMNS,
    load_transcript,
    save_transcript,
    transcript_frame,
    transcript_markdown,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT", "EXEC_PATH", "MANY_COLUMNS", "STDIN_CHUNK", "TRANSCRIPT_COLUMNS",
    "CancelToken", "Closed", "Diagnostic", "ErrorFrame", "Event", "ExecFailedError",
    "ExecInterrupted", "ExecResult", "ExecStream", "Exit", "InstanceNotRunningError",
    "Output", "command_frame", "decode_frame", "diagnostics", "error_for",
    "error_frame", "exec_command", "exec_many", "exec_stream", "exec_table",
    "group_outputs", "instance_targets", "load_transcript", "normalize_command",
    "resize_frame", "result_frame", "save_transcript", "stdin_close_frame", "stdin_frames",
    "transcript_frame", "transcript_markdown",
]
