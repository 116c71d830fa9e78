"""Helpers shared by the hidden tests of seq2seq_translation (trusted side only; never sent to the worker).

Weights are moved between the student's modules and the reference by creation order: the
matrices (2-D and up) of both are paired in the order they were created, and so are the
vectors, each pair's shapes checked. Students who create all weights before all biases are
aligned the same way as those who follow the handout's interleaved order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from dlgrade.errors import Feedback
from dlgrade.harness import expect
from dlgrade.harness.remote import ParamInfo, RemoteObject, Submission

MODULES = {
    "rnn": "models/naive/RNN", "lstm": "models/naive/LSTM", "encoder": "models/seq2seq/Encoder",
    "decoder": "models/seq2seq/Decoder", "seq2seq": "models/seq2seq/Seq2Seq", "transformer": "models/Transformer",
}


def same(actual: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Does ``actual`` (anything the worker returned) match ``expected``? Never raises."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return False
    return bool(torch.allclose(actual.double(), expected.double(), atol=atol, rtol=rtol))


def random_values(named: Sequence[tuple[str, torch.Tensor]], gen: torch.Generator, scale: float = 1.0) -> list[torch.Tensor]:
    """Fresh values for parameters: N(0, 1/fan) matrices; vectors N(0, 0.5²), around 1 for norm scales."""
    out = []
    for name, p in named:
        shape = tuple(p.shape)
        if len(shape) >= 2:
            t = torch.randn(*shape, generator=gen) * (scale / math.sqrt(min(shape[-2:])))
        else:
            t = 0.5 * torch.randn(*shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                t = t + 1.0
        out.append(t)
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def align(stu: Sequence[ParamInfo], ref: Sequence[tuple[str, torch.Tensor]], what: str, hint: str = "") -> list[int]:
    """For each student parameter (registration order), the index of its reference parameter.

    Matrices are paired with matrices and vectors with vectors, each in creation order; a
    count or shape mismatch raises Feedback naming the parameter and both shapes.
    """
    mapping = [-1] * len(stu)
    for kind, test in (("matrix", lambda s: len(s) >= 2), ("vector", lambda s: len(s) < 2)):
        s_idx = [i for i, p in enumerate(stu) if test(p.shape)]
        r_idx = [i for i, (_, p) in enumerate(ref) if test(tuple(p.shape))]
        if len(s_idx) != len(r_idx):
            expect.fail(f"{what} has {len(s_idx)} {kind}-shaped parameters, expected {len(r_idx)} "
                        f"({len(stu)} parameters in all, expected {len(ref)}){hint}",
                        "wrong layers or parameters")
        for k, (i, j) in enumerate(zip(s_idx, r_idx, strict=True)):
            want = tuple(ref[j][1].shape)
            if tuple(stu[i].shape) != want:
                expect.fail(f"{what}: the {_ordinal(k + 1)} {kind} parameter you create, {stu[i].name}, has shape "
                            f"{tuple(stu[i].shape)}, expected {want} (creation order matters: matrices and vectors are "
                            f"each matched in the order they are created){hint}", "parameters created in another order or shape")
            mapping[i] = j
    return mapping


def candidates(stu: Sequence[ParamInfo], ref: Sequence[tuple[str, torch.Tensor]], fixed: Sequence[str], what: str,
               limit: int = 24) -> list[list[int]]:
    """Possible pairings when some layer names are free: `fixed` names must exist with their shapes;
    the other parameters are paired by creation order first, then by any shape-consistent permutation."""
    ref_index = {n: j for j, (n, _) in enumerate(ref)}
    stu_index = {p.name: i for i, p in enumerate(stu)}
    base = [-1] * len(stu)
    for name in fixed:
        j = ref_index[name]
        if name not in stu_index:
            expect.fail(f"{what} has no parameter {name} (the handout names this layer)", "prescribed layer missing")
        i = stu_index[name]
        if tuple(stu[i].shape) != tuple(ref[j][1].shape):
            expect.fail(f"{what}: {name} has shape {tuple(stu[i].shape)}, expected {tuple(ref[j][1].shape)}", "wrong layer size")
        base[i] = j
    free_s = [i for i in range(len(stu)) if base[i] < 0]
    free_r = [j for j in range(len(ref)) if j not in set(base)]
    out: list[list[int]] = []
    try:
        sub_map = align([stu[i] for i in free_s], [ref[j] for j in free_r], what)
        first = list(base)
        for k, i in enumerate(free_s):
            first[i] = free_r[sub_map[k]]
        out.append(first)
        failure = None
    except Feedback as exc:
        failure = exc
    groups: dict[tuple[int, ...], tuple[list[int], list[int]]] = {}
    for i in free_s:
        groups.setdefault(tuple(stu[i].shape), ([], []))[0].append(i)
    for j in free_r:
        groups.setdefault(tuple(ref[j][1].shape), ([], []))[1].append(j)
    if all(len(a) == len(b) for a, b in groups.values()):
        per_group = [[list(zip(a, perm, strict=True)) for perm in itertools.permutations(b)] for a, b in groups.values()]
        for combo in itertools.islice(itertools.product(*per_group), limit):
            m = list(base)
            for pairs in combo:
                for i, j in pairs:
                    m[i] = j
            if m not in out:
                out.append(m)
    if not out:
        assert failure is not None
        raise failure
    return out


def transplant(obj: RemoteObject, ref_module: torch.nn.Module, gen: torch.Generator, what: str, hint: str = "",
               mapping: list[int] | None = None, values: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Give the reference module fresh random weights and the student's module the same ones.

    Returns the reference values (in the reference's parameter order), for reuse with another mapping.
    """
    ref_named = list(ref_module.named_parameters())
    stu = obj.parameters()
    if mapping is None:
        mapping = align(stu, ref_named, what, hint)
    if values is None:
        values = random_values(ref_named, gen)
    with torch.no_grad():
        for (_, p), v in zip(ref_named, values, strict=True):
            p.copy_(v)
    obj.set_parameters([values[j] for j in mapping])
    return values


def accepts(sig: list[tuple[str, str, bool]] | None, name: str) -> bool:
    """Does a remote signature take a parameter `name` (or **kwargs)?"""
    return sig is not None and any(n == name or kind == "VAR_KEYWORD" for n, kind, _ in sig)


def new_decoder(sub: Submission, emb: int, enc_h: int, dec_h: int, vocab: int, model_type: str,
                attention: bool) -> tuple[RemoteObject, bool]:
    """The student's Decoder, and whether it has the attention layer.

    `attention` goes to __init__ when it takes it; older versions of the course read it only in
    forward, and always create the attention layer.
    """
    kw: dict[str, Any] = {"dropout": 0.0, "model_type": model_type}
    in_init = accepts(sub.signature("models.seq2seq.Decoder.Decoder"), "attention")
    if in_init:
        kw["attention"] = attention
    dec = sub.new("models.seq2seq.Decoder.Decoder", emb, enc_h, dec_h, vocab, **kw)
    dec.call("eval")
    return dec, attention or not in_init


def decoder_step(dec: RemoteObject, input: torch.Tensor, hidden: Any, encoder_outputs: torch.Tensor | None, attention: bool) -> Any:
    """One call of the student's Decoder.forward, passing `attention` when forward takes it."""
    kw = {"attention": attention} if accepts(dec.signature("forward"), "attention") else {}
    return dec(input, hidden, encoder_outputs, **kw)


def new_seq2seq(sub: Submission, encoder: RemoteObject, decoder: RemoteObject, attention: bool) -> RemoteObject:
    """The student's Seq2Seq over the student's encoder and decoder (older versions take `attention` here)."""
    kw = {"attention": attention} if accepts(sub.signature("models.seq2seq.Seq2Seq.Seq2Seq"), "attention") else {}
    s2s = sub.new("models.seq2seq.Seq2Seq.Seq2Seq", encoder, decoder, "cpu", **kw)
    s2s.call("eval")
    return s2s


def heatmap(title: str, matrix: torch.Tensor, xlabel: str, ylabel: str) -> dict[str, Any]:
    """A small picture for the report (at most 32 x 32)."""
    m = matrix.detach().double()[:32, :32]
    return {"title": title, "matrix": [[round(float(v), 4) for v in row] for row in m], "xlabel": xlabel, "ylabel": ylabel}
