"""Wire protocol between the trusted grader and the sandboxed worker.

A frame is ``MAGIC | json length (u32) | payload length (u64) | json | payload``. The JSON
part carries the message; tensors inside it are placeholders that point into the payload
(raw bytes + dtype + shape). Nothing is ever pickled. Both sides import this module, so it
depends on the standard library, torch and numpy only.

Value encoding (JSON on the wire):
    None, bool, int, float, str, list  -> themselves
    tuple                              -> {"$tuple": [...]}
    dict with str keys                 -> {"$dict": {...}}
    tensor                             -> {"$tensor": [offset, nbytes], "dtype": str, "shape": [...]}
    object left in the worker          -> {"$handle": int, "type": str}
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

VERSION = 1
MAGIC = b"DLG" + bytes([VERSION])
_HEAD = struct.Struct(">4sIQ")
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024
MAX_TENSORS = 100_000
CHECK_EVERY_S = 0.25   # how often a receive with a check (Channel.recv) calls it while waiting

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class ProtocolError(Exception):
    """A frame or value that does not follow the protocol (from a broken or hostile peer)."""


class PeerClosed(ProtocolError):
    """The other side closed the channel (for a worker: it exited or was killed)."""


class RecvTimeout(ProtocolError):
    """No complete frame arrived before the deadline."""


@dataclass(frozen=True)
class Handle:
    """An object that lives in the worker; only its id and type name cross the pipe."""

    id: int
    type: str


# ----------------------------------------------------------------------------- encoding


def _encode_value(value: Any, blobs: list[bytes], offset: list[int], depth: int = 0) -> Any:
    if depth > 64:
        raise ProtocolError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (np.generic,)):
        return _encode_value(value.item(), blobs, offset, depth + 1)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        if t.dtype not in _DTYPE_NAMES:
            raise ProtocolError(f"tensors of dtype {t.dtype} cannot be sent")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        blobs.append(raw)
        start = offset[0]
        offset[0] += len(raw)
        return {"$tensor": [start, len(raw)], "dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape)}
    if isinstance(value, Handle):
        return {"$handle": value.id, "type": value.type}
    if isinstance(value, tuple):
        return {"$tuple": [_encode_value(v, blobs, offset, depth + 1) for v in value]}
    if isinstance(value, list):
        return [_encode_value(v, blobs, offset, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"dict keys must be strings, got {type(k).__name__}")
            out[k] = _encode_value(v, blobs, offset, depth + 1)
        return {"$dict": out}
    raise ProtocolError(f"values of type {type(value).__name__} cannot be sent")


def encode(message: dict[str, Any]) -> bytes:
    """One frame for ``message`` (a dict of encodable values)."""
    blobs: list[bytes] = []
    body = _encode_value(message, blobs, [0])
    text = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    payload = b"".join(blobs)
    if len(text) > MAX_JSON_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("message too large")
    return _HEAD.pack(MAGIC, len(text), len(payload)) + text + payload


# ----------------------------------------------------------------------------- decoding


class _Decoder:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.tensors = 0

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > 64:
            raise ProtocolError("value nested too deeply")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v
        if isinstance(v, list):
            return [self.value(x, depth + 1) for x in v]
        if isinstance(v, dict):
            if "$tensor" in v:
                return self.tensor(v)
            if "$tuple" in v and len(v) == 1 and isinstance(v["$tuple"], list):
                return tuple(self.value(x, depth + 1) for x in v["$tuple"])
            if "$dict" in v and len(v) == 1 and isinstance(v["$dict"], dict):
                return {str(k): self.value(x, depth + 1) for k, x in v["$dict"].items()}
            if "$handle" in v and len(v) == 2:
                hid, typ = v["$handle"], v.get("type")
                if isinstance(hid, int) and not isinstance(hid, bool) and isinstance(typ, str):
                    return Handle(hid, typ[:200])
            raise ProtocolError("malformed tagged value")
        raise ProtocolError(f"unexpected JSON value of type {type(v).__name__}")

    def tensor(self, v: dict[str, Any]) -> torch.Tensor:
        self.tensors += 1
        if self.tensors > MAX_TENSORS:
            raise ProtocolError("too many tensors in one message")
        if set(v) != {"$tensor", "dtype", "shape"}:
            raise ProtocolError("malformed tensor")
        span, dtype_name, shape = v["$tensor"], v["dtype"], v["shape"]
        if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
            raise ProtocolError(f"unknown dtype {dtype_name!r}")
        if not (isinstance(shape, list) and len(shape) <= 16
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)):
            raise ProtocolError("malformed tensor shape")
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(s, int) for s in span)):
            raise ProtocolError("malformed tensor span")
        start, nbytes = span
        dtype = DTYPES[dtype_name]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if start < 0 or nbytes != math.prod(shape) * itemsize or start + nbytes > len(self.payload):
            raise ProtocolError("tensor bytes do not match its shape and dtype")
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        raw = bytearray(self.payload[start:start + nbytes])
        return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)


def decode(text: bytes, payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(body, dict):
        raise ProtocolError("a message must be a tagged dict")
    try:
        message = _Decoder(payload).value(body)
    except RecursionError:
        raise ProtocolError("value nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a dict")
    return message


# ----------------------------------------------------------------------------- channel


class Channel:
    """Frames over a connected stream socket, with an optional deadline on receive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode(message))
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise PeerClosed(str(exc)) from None

    def _recv_exact(self, n: int, deadline: float | None, check: Callable[[], None] | None) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RecvTimeout("deadline passed")
                self.sock.settimeout(min(left, CHECK_EVERY_S) if check is not None else left)
            else:
                self.sock.settimeout(CHECK_EVERY_S if check is not None else None)
            try:
                chunk = self.sock.recv(min(n - len(chunks), 1 << 20))
            except TimeoutError:
                if check is None:
                    raise RecvTimeout("deadline passed") from None
                check()  # raises RecvTimeout when the caller's other limit (the worker's CPU time) is used up
                continue
            except (ConnectionResetError, OSError) as exc:
                raise PeerClosed(str(exc)) from None
            if not chunk:
                raise PeerClosed("channel closed")
            chunks += chunk
        return bytes(chunks)

    def recv(self, deadline: float | None = None, check: Callable[[], None] | None = None) -> dict[str, Any]:
        """The next frame. ``deadline`` (time.monotonic()) bounds the wait; ``check``, when given, is called about every
        CHECK_EVERY_S seconds while nothing arrives and may raise RecvTimeout to end the wait early."""
        head = self._recv_exact(_HEAD.size, deadline, check)
        magic, n_text, n_payload = _HEAD.unpack(head)
        if magic != MAGIC:
            raise ProtocolError("bad frame magic (protocol version mismatch or garbage)")
        if n_text > MAX_JSON_BYTES or n_payload > MAX_PAYLOAD_BYTES:
            raise ProtocolError("frame too large")
        text = self._recv_exact(n_text, deadline, check)
        payload = self._recv_exact(n_payload, deadline, check) if n_payload else b""
        return decode(text, payload)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
