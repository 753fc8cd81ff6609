"""Exec: run commands on instances over the exec websocket, one or many.

Four modules with one job each: :mod:`.codec` (the protocol's frames, pure functions
shared with the simulator), :mod:`.stream` (a live session over the websocket, every
wait under a deadline), :mod:`.run` (one command: capture, cancel, result) and
:mod:`.fanout` (many instances, outputs compared).
"""

from __future__ import annotations

from ..errors import ExecFailedError, ExecInterrupted, InstanceNotRunningError
from .codec import (
    EXEC_PATH,
    STDIN_CHUNK,
    Closed,
    ErrorFrame,
    Event,
    Exit,
    Output,
    ServerError,
    command_frame,
    decode_frame,
    error_for,
    error_frame,
    resize_frame,
    result_frame,
    stdin_close_frame,
    stdin_frames,
)
from .fanout import MANY_COLUMNS, exec_many, group_outputs, instance_targets
from .run import DEFAULT_MAX_OUTPUT, CancelToken, ExecResult, exec_command
from .stream import ExecStream, exec_stream, normalize_command

__all__ = [
    "DEFAULT_MAX_OUTPUT", "EXEC_PATH", "MANY_COLUMNS", "STDIN_CHUNK", "CancelToken", "Closed",
    "ErrorFrame", "Event", "ExecFailedError", "ExecInterrupted", "ExecResult", "ExecStream",
    "Exit", "InstanceNotRunningError", "Output", "ServerError", "command_frame",
    "decode_frame", "error_for", "error_frame", "exec_command", "exec_many", "exec_stream",
    "group_outputs", "instance_targets", "normalize_command", "resize_frame", "result_frame",
    "stdin_close_frame", "stdin_frames",
]
