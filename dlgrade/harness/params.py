"""Comparing answers and moving weights between a student's modules and the reference (trusted side).

- :func:`same` and :func:`close_scalar`: does what the worker returned match, never raising on odd types;
- :func:`random_values` / :func:`randomize`: fresh, well-scaled random weights (one way for every suite);
- :func:`align`, :func:`candidates`, :func:`transplant`: pair the student's parameters with the reference's by
  creation order (matrices and vectors as separate sequences, so "all weights, then all biases" aligns too),
  or by any shape-consistent pairing where the handout leaves layer names free;
- :func:`attention_wirings`: the ways four affine maps (q, k, v, output) can be laid out in a student's
  parameters (four square maps in any order or orientation, or a fused q/k/v map in either layout).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from dlgrade.errors import Feedback
from dlgrade.harness import expect
from dlgrade.harness.remote import ParamInfo, RemoteObject

Roles = list[tuple[torch.Tensor, torch.Tensor]]


def same(actual: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Does ``actual`` (anything the worker returned) match ``expected``? Never raises."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return False
    return bool(torch.allclose(actual.double(), expected.double(), atol=atol, rtol=rtol))


def close_scalar(actual: Any, expected: float, what: str, diagnoses: dict[str, float] | None = None,
                 atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """A one-number answer (Python number, 0-d or one-element tensor, any float dtype) near ``expected``."""
    value = expect.scalar(actual, what)

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= atol + rtol * abs(b)

    if near(value, expected):
        return value
    for name, alt in (diagnoses or {}).items():
        if near(value, alt) and not near(alt, expected):
            expect.fail(f"{what} is wrong: {name}", name)
    # no difference is shown: with one number it would give the expected value away
    expect.fail(f"{what} does not match the expected value (tolerance {atol:g} + {rtol:g}·|value|)")
    return value


_SCALE_NAMES = ("weight", "gamma", "scale", "g")


def random_values(named: Sequence[tuple[str, Any]], gen: torch.Generator, scale: float = 1.0) -> list[torch.Tensor]:
    """Fresh values for parameters given as (name, tensor or shape).

    Matrices get N(0, scale²/fan) entries with fan the smaller of their last two sizes (activations stay O(1)
    whichever way round the matrix is used); vectors get N(0, 0.5²), around 1 when named like a
    normalisation scale (``weight``, ``gamma``, ``scale``, ``g``), so that LayerNorm weights matter.
    """
    out = []
    for name, p in named:
        shape = tuple(p.shape) if isinstance(p, torch.Tensor) else tuple(p)
        if len(shape) >= 2:
            t = torch.randn(*shape, generator=gen) * (scale / math.sqrt(min(shape[-2:])))
        elif len(shape) == 1:
            t = 0.5 * torch.randn(*shape, generator=gen)
            if name.rsplit(".", 1)[-1] in _SCALE_NAMES:
                t = t + 1.0
        else:
            t = torch.randn((), generator=gen)
        out.append(t)
    return out


def randomize(obj: RemoteObject, gen: torch.Generator, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Give every parameter of a remote module fresh random values; returns them by name, in registration order."""
    infos = obj.parameters()
    values = random_values([(p.name, p.shape) for p in infos], gen, scale)
    obj.set_parameters(values)
    return {p.name: v for p, v in zip(infos, values, strict=True)}


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
    failure: Feedback | None = None
    try:
        sub_map = align([stu[i] for i in free_s], [ref[j] for j in free_r], what)
        first = list(base)
        for k, i in enumerate(free_s):
            first[i] = free_r[sub_map[k]]
        out.append(first)
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


def attention_wirings(params: dict[str, torch.Tensor], d: int, num_heads: int) -> Iterator[tuple[str, Roles]]:
    """Plausible assignments of a student's attention parameters to (W, b) for q, k, v[, output].

    Yields (description, roles), each role a (weight as used in ``x @ W.T + b``, bias) pair. Handles three
    or four (d, d) weights with as many (d,) biases (every ordering; both orientations for raw parameters,
    which may be used as ``x @ W``), and a fused (3d, d) q/k/v weight with its (3d,) bias plus a (d, d)
    output weight and (d,) bias (chunked [q|k|v] or per-head [q_h|k_h|v_h] layouts, every ordering).
    """
    mats = [(n, t) for n, t in params.items() if t.dim() == 2]
    vecs = [(n, t) for n, t in params.items() if t.dim() == 1]
    others = [n for n, t in params.items() if t.dim() not in (1, 2)]
    if others or len(mats) != len(vecs):
        return

    def prefix(name: str) -> str:
        return name.rsplit(".", 1)[0] if "." in name else name

    def linear_like(ws: list[tuple[str, torch.Tensor]], bs: list[tuple[str, torch.Tensor]]) -> bool:
        """Names like nn.Linear's (`<module>.weight` beside `<module>.bias`): weights are (out, in)."""
        by_prefix = {prefix(n) for n, _ in bs}
        return (len(by_prefix) == len(bs) and all(n.endswith(".weight") and prefix(n) in by_prefix for n, _ in ws)
                and all(n.endswith(".bias") for n, _ in bs))

    def pair(ws: list[tuple[str, torch.Tensor]], bs: list[tuple[str, torch.Tensor]]) -> Roles:
        """Bias for each weight: by shared module prefix when that is one-to-one, else by creation order."""
        by_prefix = {prefix(n): t for n, t in bs}
        if len(by_prefix) == len(bs) and all(prefix(n) in by_prefix for n, _ in ws):
            return [(w, by_prefix[prefix(n)]) for n, w in ws]
        return [(w, b) for (_, w), (_, b) in zip(ws, bs, strict=True)]

    flips = (False,) if linear_like(mats, vecs) else (False, True)
    square = all(tuple(t.shape) == (d, d) for _, t in mats) and all(tuple(t.shape) == (d,) for _, t in vecs)
    if square and len(mats) in (3, 4):
        pairs = pair(mats, vecs)
        for flip in flips:
            for order in itertools.permutations(range(len(pairs))):
                roles = [((pairs[i][0].T if flip else pairs[i][0]), pairs[i][1]) for i in order]
                yield (f"order {order}{' transposed' if flip else ''}", roles)
        return
    if len(mats) == 2:
        fused = [(n, t) for n, t in mats if tuple(t.shape) in ((3 * d, d), (d, 3 * d))]
        square_w = [(n, t) for n, t in mats if tuple(t.shape) == (d, d)]
        fused_b = [(n, t) for n, t in vecs if tuple(t.shape) == (3 * d,)]
        square_b = [(n, t) for n, t in vecs if tuple(t.shape) == (d,)]
        if not (len(fused) == len(square_w) == len(fused_b) == len(square_b) == 1):
            return
        w3 = fused[0][1] if tuple(fused[0][1].shape) == (3 * d, d) else fused[0][1].T  # (3d, d)
        b3, wo, bo = fused_b[0][1], square_w[0][1], square_b[0][1]
        hs = d // num_heads
        layouts = {
            "chunks": lambda j: torch.arange(j * d, (j + 1) * d),
            "per-head": lambda j: torch.cat([torch.arange(h * 3 * hs + j * hs, h * 3 * hs + (j + 1) * hs)
                                             for h in range(num_heads)]),
        }
        for layout, rows in layouts.items():
            parts = [(w3[rows(j)], b3[rows(j)]) for j in range(3)]
            for order in itertools.permutations(range(3)):
                for flip in flips:
                    yield (f"fused {layout} {order}", [parts[i] for i in order] + [(wo.T if flip else wo, bo)])


def heatmap(title: str, matrix: torch.Tensor, xlabel: str, ylabel: str) -> dict[str, Any]:
    """A small picture for the report (at most 32 x 32), to keep in a test's ``record["heatmaps"]``."""
    m = matrix.detach().double()[:32, :32]
    return {"title": title, "matrix": [[round(float(v), 4) for v in row] for row in m], "xlabel": xlabel, "ylabel": ylabel}
