"""Products at the top level of npdeq: ``matmul`` (NumPy's semantics, batched), ``einsum``,
``outer`` and ``trace``, each forward beside its VJP rules. The functions of
:mod:`npdeq.linalg` (norms, solves, determinants) are in
:mod:`npdeq.autodiff.ops.linalg_functions`."""

from __future__ import annotations

from typing import Any

from npdeq import backend
from npdeq.autodiff.ops.elementwise import mul
from npdeq.autodiff.ops.reductions import sum
from npdeq.autodiff.ops.numpy_shape import diagonal
from npdeq.autodiff.ops.shape import broadcast_to, expand_dims, reshape, swapaxes
from npdeq.autodiff.ops.util import int_arg, ns, raw
from npdeq.autodiff.primitive import defvjp, primitive
from npdeq.autodiff.tensor import Tensor

__all__ = ["matmul", "einsum", "outer", "trace"]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # (no import of string)


@primitive
def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: "
            f"{k_a} (last dimension of a) != {k_b} ({'only' if b.ndim == 1 else 'second-to-last'}"
            " dimension of b)")
    # Check the batch axes here too, so every library reports them the same, readable way.
    for n_a, n_b in zip(reversed(a.shape[:-2]), reversed(b.shape[:-2])):
        if n_a != n_b and n_a != 1 and n_b != 1:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: batch "
                f"dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} do not broadcast")
    # The operator is matmul in every namespace; it skips a namespace lookup and the compat
    # wrapper (about 1 microsecond of the tape's per-op overhead on small arrays).
    return a @ b


# Vectors are promoted to matrices ((k,) -> (1, k) on the left, (k, 1) on the right) so one
# pair of formulas covers every case; the engine then sums batch dimensions back down.
def _as_matrices(g, a, b):
    # The cotangent gets b's axis back first (the last one), then a's: for vector @ vector
    # g is 0-d and becomes (1,) and then (1, 1); the other order would ask a 0-d array for
    # axis -2.
    if len(b.shape) == 1:
        b = reshape(b, tuple(b.shape) + (1,))
        g = expand_dims(g, axis=-1)
    if len(a.shape) == 1:
        a = reshape(a, (1,) + tuple(a.shape))
        g = expand_dims(g, axis=-2)
    return g, a, b


def _matmul_vjp_a(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    ga = matmul(g2, swapaxes(b2, -1, -2))
    if len(a.shape) == 1:
        ga = reshape(ga, tuple(ga.shape[:-2]) + (ga.shape[-1],))
    return ga


def _matmul_vjp_b(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    gb = matmul(swapaxes(a2, -1, -2), g2)
    if len(b.shape) == 1:
        gb = reshape(gb, tuple(gb.shape[:-1]))
    return gb


defvjp(matmul, _matmul_vjp_a, _matmul_vjp_b)


# --- einsum ------------------------------------------------------------------------------


def _parse_einsum(subscripts: str, shapes: list) -> tuple[list[str], str]:
    """The input terms and the output of ``subscripts`` with every ``...`` spelled out in
    free letters and the implicit output made explicit (NumPy's rules)."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a str like 'ij,jk->ik', got "
                        f"{subscripts!r}")
    spec = subscripts.replace(" ", "")
    explicit = "->" in spec
    inputs, output = spec.split("->", 1) if explicit else (spec, None)
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: subscripts {subscripts!r} name {len(terms)} operands, "
                         f"got {len(shapes)}")
    for term in terms + ([output] if explicit else []):
        letters = term.replace("...", "")
        if not all(c in _LETTERS for c in letters) or term.count("...") > 1:
            raise ValueError(f"einsum: subscripts {subscripts!r} may hold letters, one '...' "
                             "per operand, ',' and '->'")
    used = "".join(t.replace("...", "") for t in terms)
    n_ellipsis = 0
    for term, shape in zip(terms, shapes):
        named = len(term.replace("...", ""))
        if ("..." in term and len(shape) < named) or ("..." not in term and len(shape) != named):
            raise ValueError(f"einsum: subscript '{term}' does not fit an operand of shape "
                             f"{tuple(shape)}")
        n_ellipsis = max(n_ellipsis, len(shape) - named)
    free = [c for c in _LETTERS if c not in used]
    if n_ellipsis > len(free):
        raise ValueError(f"einsum: too many dimensions under '...' ({n_ellipsis})")
    ell = "".join(free[:n_ellipsis])
    terms = [t.replace("...", ell[n_ellipsis - (len(s) - len(t) + 3):] if n_ellipsis else "")
             if "..." in t else t for t, s in zip(terms, shapes)]
    if explicit:
        output = output.replace("...", ell)
    else:
        counts = {c: "".join(terms).count(c) for c in "".join(terms)}
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise ValueError(f"einsum: subscript '{c}' has size {sizes[c]} in one operand "
                                 f"and {n} in another ({subscripts!r} with shapes "
                                 f"{[tuple(s) for s in shapes]})")
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    for c in output:
        if output.count(c) > 1 or c not in sizes:
            raise ValueError(f"einsum: output subscript '{c}' of {subscripts!r} must appear "
                             "once, and in an input")
    return terms, output


_einsum = primitive(lambda *operands, subscripts: backend.einsum(subscripts, *operands),
                    name="einsum")


def _einsum_vjp(k):
    def rule(g, ans, *operands, subscripts):
        inputs, output = subscripts.split("->")
        terms = inputs.split(",")
        target = terms[k]
        others = [(t, x) for j, (t, x) in enumerate(zip(terms, operands)) if j != k]
        available = set(output).union(*[set(t) for t, _ in others])
        unique = "".join(c for i, c in enumerate(target) if target.index(c) == i)
        reached = "".join(c for c in unique if c in available)
        spec = ",".join([output] + [t for t, _ in others]) + "->" + reached
        r = _einsum(g, *[x for _, x in others], subscripts=spec)
        shape = tuple(operands[k].shape)
        size = {c: shape[target.index(c)] for c in unique}
        if reached != unique:  # labels summed in this operand alone: broadcast back
            r = broadcast_to(reshape(r, tuple(size[c] if c in reached else 1 for c in unique)),
                             tuple(r.shape[reached.index(c)] if c in reached else size[c]
                                   for c in unique))
        if unique == target:
            return r
        # A label repeated in this operand: its cotangent lies on the diagonal.
        first = [target.index(c) == i for i, c in enumerate(target)]
        r = reshape(r, tuple(r.shape[unique.index(c)] if f else 1
                             for c, f in zip(target, first)))
        xp = ns(raw(g))
        mask = None
        for p, (c, f) in enumerate(zip(target, first)):
            if f:
                continue
            q, n = target.index(c), size[c]
            eye_shape = tuple(n if i in (p, q) else 1 for i in range(len(target)))
            eye = xp.reshape(xp.eye(n, dtype=raw(g).dtype, device=backend.device(raw(g))),
                             eye_shape)
            mask = eye if mask is None else mask * eye
        return r * mask
    return rule


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Einstein summation, as ``numpy.einsum``: ``'ij,jk->ik'`` (explicit output),
    ``'ij,jk'`` (implicit: the labels seen once, in alphabetical order), ``'...ij->...ji'``
    (``...`` for leading axes, broadcast between operands), repeated labels for diagonals
    (``'ii->i'``). The VJP of each operand is another einsum, so gradients of any order work.

    Raises:
        TypeError: subscripts that are not a string.
        ValueError: subscripts that do not fit the operands (count, dimensions, sizes) or
            an output label that is repeated or in no input.

    Example:
        >>> import numpy as np, npdeq
        >>> npdeq.einsum("ij,j->i", np.eye(2), np.array([1., 2.])).numpy()
        array([1., 2.])
    """
    terms, output = _parse_einsum(subscripts, [tuple(raw(x).shape) for x in operands])
    for i in range(len(operands)):
        if i not in _einsum.vjps:
            defvjp(_einsum, *([None] * i), _einsum_vjp(i))
    return _einsum(*operands, subscripts=",".join(terms) + "->" + output)


def outer(a: Any, b: Any) -> Tensor:
    """The outer product of ``a`` and ``b`` (both flattened), as ``numpy.outer``."""
    return mul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """The sum along a diagonal of the 2-d slices over ``axis1`` and ``axis2``, as
    ``numpy.trace`` (``offset`` > 0 above the main diagonal).

    Raises:
        TypeError: a non-int ``offset``, ``axis1`` or ``axis2`` (as NumPy).
        ValueError: as :func:`~npdeq.diagonal`.

    Example:
        >>> import numpy as np, npdeq
        >>> float(npdeq.trace(np.arange(9.).reshape(3, 3)).numpy())
        12.0
    """
    offset, axis1, axis2 = (int_arg("trace", name, value) for name, value in
                            (("offset", offset), ("axis1", axis1), ("axis2", axis2)))
    d = diagonal(a, offset=offset, axis1=axis1, axis2=axis2)
    return sum(d, axis=-1)
