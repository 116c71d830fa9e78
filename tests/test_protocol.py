"""The wire protocol between grader and worker: round trips, hostile frames, and no pickle."""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import random
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

import dlgrade
from dlgrade import protocol
from dlgrade.protocol import DTYPES, MAGIC, Channel, Handle, PeerClosed, ProtocolError, RecvTimeout, decode, encode

HEAD = struct.Struct(">4sIQ")


def split(frame: bytes) -> tuple[bytes, bytes]:
    """(json text, payload) of one frame."""
    magic, n_text, n_payload = HEAD.unpack(frame[:HEAD.size])
    assert magic == MAGIC and len(frame) == HEAD.size + n_text + n_payload
    return frame[HEAD.size:HEAD.size + n_text], frame[HEAD.size + n_text:]


def roundtrip(message: dict[str, Any]) -> dict[str, Any]:
    return decode(*split(encode(message)))


def frame(fields: dict[str, Any], payload: bytes = b"") -> tuple[bytes, bytes]:
    """A hand-made (json text, payload) pair holding a message with these (encoded) fields."""
    return json.dumps({"$dict": fields}).encode(), payload


def tensor_ref(offset: int, nbytes: int, dtype: str = "float32", shape: list[int] | None = None) -> dict[str, Any]:
    return {"$tensor": [offset, nbytes], "dtype": dtype, "shape": [nbytes // 4] if shape is None else shape}


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    a, b = socket.socketpair()
    yield Channel(a), Channel(b)
    a.close()
    b.close()


# ----------------------------------------------------------------------------- round trips


def sample(dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.tensor([[True, False, True], [False, False, True]])
    if dtype.is_floating_point:
        return torch.tensor([[0.5, -1.25, 3.0], [float("inf"), -0.0, 1e-3]], dtype=dtype)
    info = torch.iinfo(dtype)
    return torch.tensor([[info.min, -1 if info.min < 0 else 0, 0], [1, 7, info.max]], dtype=dtype)


def raw(t: torch.Tensor) -> list[int]:
    return t.contiguous().reshape(-1).view(torch.uint8).tolist()


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_dtype_round_trips_bit_for_bit(name: str) -> None:
    t = sample(DTYPES[name])
    back = roundtrip({"t": t, "column": t[:, 1], "scalar": t[0, 0].clone()})
    for key, want in (("t", t), ("column", t[:, 1]), ("scalar", t[0, 0])):
        got = back[key]
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape, key
        assert raw(got) == raw(want), key


def test_nan_and_special_floats_survive() -> None:
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=torch.float64)
    back = roundtrip({"t": t, "x": float("nan"), "y": float("-inf")})
    assert torch.equal(torch.isnan(back["t"]), torch.isnan(t)) and back["t"][1:].tolist() == t[1:].tolist()
    assert math.copysign(1, back["t"][3].item()) == -1
    assert math.isnan(back["x"]) and back["y"] == -math.inf


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 5), (2, 0, 0)])
def test_empty_tensors(shape: tuple[int, ...]) -> None:
    for dtype in (torch.float32, torch.int64, torch.bool, torch.bfloat16):
        back = roundtrip({"t": torch.empty(shape, dtype=dtype)})["t"]
        assert back.shape == shape and back.dtype == dtype


def test_views_grads_and_numpy_arrive_as_plain_contiguous_tensors() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    w = torch.randn(3, 3, requires_grad=True)
    back = roundtrip({"transposed": base.t(), "strided": base[::2, 1::3], "grad": w * 2,
                      "array": np.arange(6, dtype=np.int16).reshape(2, 3), "np_scalar": np.float32(2.5),
                      "np_int": np.int64(7)})
    assert torch.equal(back["transposed"], base.t()) and back["transposed"].is_contiguous()
    assert torch.equal(back["strided"], base[::2, 1::3])
    assert not back["grad"].requires_grad and torch.allclose(back["grad"], w.detach() * 2)
    assert back["array"].dtype == torch.int16 and back["array"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back["np_scalar"] == 2.5 and back["np_int"] == 7 and type(back["np_int"]) is int


def test_decoded_tensors_are_writable_copies() -> None:
    text, payload = split(encode({"t": torch.ones(4)}))
    t = decode(text, payload)["t"]
    t += 1
    assert t.tolist() == [2.0] * 4
    assert decode(text, payload)["t"].tolist() == [1.0] * 4


def test_nested_containers_keep_their_types() -> None:
    h = Handle(12, "LSTM")
    message = {
        "op": "call", "none": None, "flag": True, "zero": 0, "big": 2**62, "neg": -3, "pi": 3.25, "text": "héllo ✓",
        "tuple": (1, (2.0, "three"), [4, (5,)]), "empty": ((), [], {}),
        "dict": {"a": {"b": {"c": [torch.zeros(2), h]}}, "": 1},
        "handles": [h, (h,), {"h": h}],
        "tagged_keys": {"$tuple": [1, 2], "$tensor": [0, 4], "$handle": 3, "$dict": {}},
    }
    back = roundtrip(message)
    assert back["flag"] is True and type(back["zero"]) is int and back["big"] == 2**62
    assert back["tuple"] == (1, (2.0, "three"), [4, (5,)]) and isinstance(back["tuple"][1], tuple)
    assert back["empty"] == ((), [], {})
    assert torch.equal(back["dict"]["a"]["b"]["c"][0], torch.zeros(2)) and back["dict"]["a"]["b"]["c"][1] == h
    assert back["handles"] == [h, (h,), {"h": h}] and isinstance(back["handles"][0], Handle)
    # user data that looks like the protocol's tags stays user data
    assert back["tagged_keys"] == {"$tuple": [1, 2], "$tensor": [0, 4], "$handle": 3, "$dict": {}}
    assert back["text"] == "héllo ✓" and back["dict"][""] == 1


def test_channel_carries_many_frames_and_large_tensors(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    big = torch.randn(512, 1024)  # 2 MB: more than a socket buffer holds
    sender = threading.Thread(target=lambda: [a.send({"i": i, "t": big if i == 1 else torch.tensor([i])}) for i in range(3)])
    sender.start()
    got = [b.recv(deadline=None) for _ in range(3)]
    sender.join()
    assert [m["i"] for m in got] == [0, 1, 2] and torch.equal(got[1]["t"], big)


# ----------------------------------------------------------------------------- what cannot be sent


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", 1 + 2j, torch.zeros(2, dtype=torch.complex64),
                                   {1: "int key"}, {("a",): 1}, lambda: 0, torch.nn.Linear(2, 2)])
def test_encode_rejects_values_that_are_not_plain_data(value: Any) -> None:
    with pytest.raises(ProtocolError):
        encode({"v": value})


def test_encode_rejects_deep_nesting_and_huge_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nested too deeply"):
        encode({"v": deep})
    monkeypatch.setattr(protocol, "MAX_PAYLOAD_BYTES", 1000)
    with pytest.raises(ProtocolError, match="too large"):
        encode({"v": torch.zeros(1000)})


# ----------------------------------------------------------------------------- hostile frames


GOOD_PAYLOAD = torch.arange(4, dtype=torch.float32).numpy().tobytes()


@pytest.mark.parametrize("body, payload, match", [
    ({"t": {"$tensor": [8, 16], "dtype": "float32", "shape": [4]}}, GOOD_PAYLOAD, "do not match"),  # past the end
    ({"t": {"$tensor": [-4, 16], "dtype": "float32", "shape": [4]}}, GOOD_PAYLOAD, "do not match"),  # before the start
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [5]}}, GOOD_PAYLOAD, "do not match"),  # shape vs bytes
    ({"t": {"$tensor": [0, 16], "dtype": "float64", "shape": [4]}}, GOOD_PAYLOAD, "do not match"),  # dtype vs bytes
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [2**20, 2**20, 2**20]}}, GOOD_PAYLOAD, "do not match"),
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [-4]}}, GOOD_PAYLOAD, "shape"),
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [True, 4]}}, GOOD_PAYLOAD, "shape"),
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [4.0]}}, GOOD_PAYLOAD, "shape"),
    ({"t": {"$tensor": [0, 4], "dtype": "float32", "shape": [1] * 17}}, GOOD_PAYLOAD, "shape"),
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": "4"}}, GOOD_PAYLOAD, "shape"),
    ({"t": {"$tensor": [0, 16], "dtype": "object", "shape": [4]}}, GOOD_PAYLOAD, "unknown dtype"),
    ({"t": {"$tensor": [0, 16], "dtype": "pickle", "shape": [4]}}, GOOD_PAYLOAD, "unknown dtype"),
    ({"t": {"$tensor": [0, 16], "dtype": ["float32"], "shape": [4]}}, GOOD_PAYLOAD, "unknown dtype|malformed"),
    ({"t": {"$tensor": "0:16", "dtype": "float32", "shape": [4]}}, GOOD_PAYLOAD, "span"),
    ({"t": {"$tensor": [0, 16, 3], "dtype": "float32", "shape": [4]}}, GOOD_PAYLOAD, "span"),
    ({"t": {"$tensor": [0, 16], "dtype": "float32", "shape": [4], "requires_grad": True}}, GOOD_PAYLOAD, "malformed tensor"),
    ({"t": {"$tuple": 5}}, b"", "malformed tagged"),
    ({"t": {"$tuple": [1], "extra": 1}}, b"", "malformed tagged"),
    ({"t": {"$dict": [1, 2]}}, b"", "malformed tagged"),
    ({"t": {"$handle": "7", "type": "LSTM"}}, b"", "malformed tagged"),
    ({"t": {"$handle": True, "type": "LSTM"}}, b"", "malformed tagged"),
    ({"t": {"$handle": 7}}, b"", "malformed tagged"),
    ({"t": {"plain": "dict without a tag"}}, b"", "malformed tagged"),
])
def test_decode_rejects_malformed_values(body: dict[str, Any], payload: bytes, match: str) -> None:
    decode(*frame({"t": None}, payload))  # the same frame with a harmless value is fine
    with pytest.raises(ProtocolError, match=match):
        decode(*frame(body, payload))


@pytest.mark.parametrize("body", [[1, 2, 3], "just a string", 7, None, {"op": "call"}, {"$tuple": [1]}])
def test_decode_requires_a_tagged_dict_at_the_top(body: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(json.dumps(body).encode(), b"")


@pytest.mark.parametrize("text", [b"", b"{", b"\xff\xfe not utf-8", b"{'single': 'quotes'}", b"[" * 100_000 + b"]" * 100_000])
def test_decode_rejects_text_that_is_not_json(text: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(text, b"")


def test_decode_rejects_deeply_nested_values() -> None:
    body: Any = 0
    for _ in range(70):
        body = {"$tuple": [body]}
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(*frame({"v": body}))


def test_decode_limits_the_number_of_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_TENSORS", 3)
    ref = {"$tensor": [0, 0], "dtype": "uint8", "shape": [0]}
    decode(*frame({"v": [ref] * 3}))
    with pytest.raises(ProtocolError, match="too many tensors"):
        decode(*frame({"v": [ref] * 4}))


def test_channel_rejects_bad_magic_and_other_versions(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    text = b'{"$dict": {"ok": true}}'
    for magic in (b"XXXX", b"DLG" + bytes([protocol.VERSION + 1]), b"\x80\x04\x95\x00"):  # the last: a pickle header
        a.sock.sendall(HEAD.pack(magic, len(text), 0) + text)
        with pytest.raises(ProtocolError, match="magic"):
            b.recv(deadline=None)
        assert b.sock.recv(len(text)) == text  # the rest of the bad frame was never read


def test_channel_refuses_absurd_sizes_before_reading(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    a.sock.sendall(HEAD.pack(MAGIC, 2**32 - 1, 0))
    with pytest.raises(ProtocolError, match="too large"):
        b.recv(deadline=None)
    a.sock.sendall(HEAD.pack(MAGIC, 2, 2**63))
    with pytest.raises(ProtocolError, match="too large"):
        b.recv(deadline=None)


def test_channel_truncated_frame_times_out_or_reports_the_peer_gone(pair) -> None:  # type: ignore[no-untyped-def]
    import time

    a, b = pair
    text = b'{"$dict": {"t": {"$tensor": [0, 100], "dtype": "uint8", "shape": [100]}}}'
    a.sock.sendall(HEAD.pack(MAGIC, len(text), 100) + text + b"x" * 10)  # 90 payload bytes never come
    started = time.monotonic()
    with pytest.raises(RecvTimeout):
        b.recv(deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 2
    a.close()
    with pytest.raises(PeerClosed):
        b.recv(deadline=time.monotonic() + 2)


def test_send_to_a_closed_peer_is_peer_closed(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    b.close()
    with pytest.raises(PeerClosed):
        for _ in range(100):  # the first sends may still land in the buffer
            a.send({"t": torch.zeros(100_000)})


# ----------------------------------------------------------------------------- no pickle, ever


class _Boom:
    """Unpickling this runs code: the test's canary."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, ("/tmp/dlgrade-pickle-canary-should-not-exist", "w"))


TRUST_BOUNDARY = ["protocol.py", "worker", "sandbox", "harness/remote.py", "harness/plugin.py", "harness/expect.py",
                  "grade.py", "results.py", "intake.py"]


def _python_files() -> list[Path]:
    pkg = Path(dlgrade.__file__).parent
    out: list[Path] = []
    for rel in TRUST_BOUNDARY:
        path = pkg / rel
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def test_no_module_on_the_trust_boundary_can_unpickle() -> None:
    banned_modules = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib", "copyreg"}
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n in banned_modules]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                call = ast.unparse(node.func)
                if call in ("torch.load", "np.load", "numpy.load", "torch.serialization.load") or call.endswith(".loads") \
                        and call not in ("json.loads",):
                    offenders.append(f"{path.name}:{node.lineno} calls {call}")
    assert not offenders, offenders


def test_pickle_bytes_in_a_frame_are_only_data(tmp_path: Path) -> None:
    canary = Path("/tmp/dlgrade-pickle-canary-should-not-exist")
    canary.unlink(missing_ok=True)
    evil = pickle.dumps(_Boom(), protocol=0)
    evil_text = evil.decode("latin-1")
    text = json.dumps({"$dict": {
        "op": "call", "pickled": evil_text,
        "blob": {"$tensor": [0, len(evil)], "dtype": "uint8", "shape": [len(evil)]},
        "looks_like_object": {"$dict": {"__reduce__": evil_text, "py/object": "os.system"}},
    }}).encode()
    with mock.patch("pickle.loads", side_effect=AssertionError("pickle.loads was called")), \
            mock.patch("pickle.load", side_effect=AssertionError("pickle.load was called")), \
            mock.patch("pickle.Unpickler", side_effect=AssertionError("an Unpickler was made")):
        msg = decode(text, evil)
        # a whole pickle stream as the frame itself is refused on its magic
        a, b = socket.socketpair()
        try:
            a.sendall(pickle.dumps({"ok": True}) + b"\0" * 16)
            with pytest.raises(ProtocolError):
                Channel(b).recv(deadline=None)
        finally:
            a.close()
            b.close()
    assert msg["pickled"] == evil_text
    assert bytes(msg["blob"].numpy()) == evil
    assert msg["looks_like_object"] == {"__reduce__": evil_text, "py/object": "os.system"}
    assert not canary.exists()


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    """JSON that looks like the protocol's tagged values, with wrong types in random places."""
    leaves = [None, True, -1, 0, 3, 2**70, 1.5, float("nan"), "", "float32", "uint8", "bool", [], {}]
    if depth > 4 or rng.random() < 0.3:
        return rng.choice(leaves)
    kind = rng.choice(["tensor", "tuple", "dict", "handle", "list", "plain"])
    sub = lambda: _random_json(rng, depth + 1)  # noqa: E731
    if kind == "tensor":
        v = {"$tensor": rng.choice([[0, 4], [rng.randint(-8, 8), rng.randint(-8, 40)], sub()]),
             "dtype": rng.choice(["float32", "uint8", "bool", "int64", sub()]),
             "shape": rng.choice([[1], [4], [2, 2], [rng.randint(-2, 5)], sub()])}
        if rng.random() < 0.2:
            v.pop(rng.choice(list(v)))
        return v
    if kind == "tuple":
        return {"$tuple": rng.choice([[sub(), sub()], sub()])}
    if kind == "dict":
        return {"$dict": rng.choice([{"a": sub(), "b": sub()}, sub()])}
    if kind == "handle":
        return {"$handle": rng.choice([1, sub()]), "type": rng.choice(["T", sub()])}
    if kind == "list":
        return [sub() for _ in range(rng.randint(0, 3))]
    return {rng.choice(["x", "$x", "$tensor", "$tuple"]): sub()}


def test_decode_raises_nothing_but_protocol_errors() -> None:
    rng = random.Random(0)
    payload = bytes(range(32))
    for _ in range(5000):
        text = json.dumps({"$dict": {"v": _random_json(rng)}}).encode()
        try:
            decode(text, payload)
        except ProtocolError:
            pass


def test_stdio_worker_keeps_student_prints_off_the_protocol_stream() -> None:
    """`python -m dlgrade.worker.main` (the one-shot worker for containers) speaks frames on stdout."""
    import subprocess
    import sys

    from dlgrade.protocol import _HEAD, decode, encode

    # As in a container: the submission is a mounted folder, and a worker started as root drops to the user it is told
    sub = Path(tempfile.mkdtemp(prefix="dlgrade-stdio-"))
    (sub / "m.py").write_text("print('student noise')\ndef double(x):\n    return x * 2\n")
    (sub / "tmp").mkdir(mode=0o1777)
    (sub / "tmp").chmod(0o1777)   # its work dir is made here (a container's is its own /tmp), and removed with sub
    sub.chmod(0o755)
    (sub / "m.py").chmod(0o644)
    proc = subprocess.Popen([sys.executable, "-m", "dlgrade.worker.main"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(sub / "tmp")})
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def ask(message: dict) -> dict:  # type: ignore[type-arg]
        proc.stdin.write(encode(message))  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        _, n_text, n_payload = _HEAD.unpack(proc.stdout.read(_HEAD.size))  # type: ignore[union-attr]
        return decode(proc.stdout.read(n_text), proc.stdout.read(n_payload) if n_payload else b"")  # type: ignore[union-attr]

    config: dict = {"modules": ["m"], "isolate": False, "submission_dir": str(sub)}  # type: ignore[type-arg]
    if os.geteuid() == 0:
        config.update(worker_uid=65534, worker_gid=65534)
    try:
        hello = ask({"op": "hello", "config": config, "files": {}})
        assert hello["ok"]
        reply = ask({"op": "call", "target": "m.double", "args": [torch.ones(3)]})
        assert reply["ok"] and torch.equal(reply["value"], torch.full((3,), 2.0))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        shutil.rmtree(sub, ignore_errors=True)
    assert proc.returncode == 0
    assert b"student noise" in proc.stderr.read()
