"""Convolution kernels as 2-D matrix products on contiguous buffers.

Stride 1: the zero-padded input is laid out as one ``(C, B*Hg*Wg)`` matrix (channels by
flattened batch and positions, one ``Hg x Wg`` grid per image). On that grid, kernel offset
``(p, q)`` is a constant flat shift, so the convolution is a sum over the ``kh*kw`` offsets of
``W[:, :, p, q] @ grid[:, shift:shift+L]``: 2-D products whose operands are plain slices of
contiguous buffers (BLAS reads them in place; no window copy, nine times smaller than
im2col's), for any padding, dilation and group count. Grid positions past the output size
are computed and dropped (``Hg*Wg`` against ``Ho*Wo``: a few percent for 1-D inputs, about
25% for a 16x16 image and a 3x3 kernel). The same grid serves both VJPs (input, weight).
The grid code also handles strides (one grid per stride phase), but a strided output is
several times smaller than its input, so strided convolutions use im2col instead: one
product on the small ``(C*kh*kw, B*Ho*Wo)`` window matrix, and col2im as ``kh*kw`` strided
block adds for the input VJP.

Written in the standard's functions; NumPy and CuPy accumulate in place and return
C-contiguous results. On NumPy the work buffers are kept per thread and reused across calls
(a solver calls the same convolution at every iteration; a fresh megabyte-sized array costs a
page fault per 4 KiB page on first touch).

Imports NumPy and the namespace helpers of :mod:`npdeq.backend`.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

from npdeq.backend.namespace import array_namespace, device, is_cupy, is_numpy

__all__ = ["conv_forward", "conv_input_grad", "conv_weight_grad"]


class _Grid(NamedTuple):
    ho: int  # output size
    wo: int
    hg: int  # phase grid size
    wg: int
    length: int  # grid columns holding every output: B*Hg*Wg - largest shift
    taps: tuple  # (p, q, phase index, flat shift) per kernel offset
    phases: tuple  # (r, t) stride phase per phase index


def _geometry(image_shape, kernel, stride, dilation, padding) -> _Grid:
    b, _, h, w = image_shape
    (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = kernel, stride, dilation, padding
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {kernel} with dilation {dilation} does not fit the input of "
                         f"spatial size {(h, w)} padded by {padding}")
    hg, wg = ho + dh * (kh - 1) // sh, wo + dw * (kw - 1) // sw
    phases: list = []
    taps = []
    for p in range(kh):
        for q in range(kw):
            phase = ((p * dh) % sh, (q * dw) % sw)
            if phase not in phases:
                phases.append(phase)
            shift = (p * dh // sh) * wg + q * dw // sw
            taps.append((p, q, phases.index(phase), shift))
    largest = (dh * (kh - 1) // sh) * wg + dw * (kw - 1) // sw
    return _Grid(ho, wo, hg, wg, b * hg * wg - largest, tuple(taps), tuple(phases))


def _lib(xp: Any) -> Any:
    if is_numpy(xp):
        return np
    if is_cupy(xp):
        return importlib.import_module("cupy")
    return None


# Work buffers reused across calls on NumPy: a fresh megabyte-sized array costs a page fault
# per 4 KiB page on first touch, which can cost more than the products themselves; a solver
# calls the same convolution at every iteration. Only buffers that never leave a kernel live
# here (results are always fresh arrays). Per thread, bounded in count and bytes (least
# recently used dropped first); a buffer over the byte bound is not kept at all.
_WORKSPACE = threading.local()
_WORKSPACE_ENTRIES = 32
_WORKSPACE_BYTES = 256 * 2**20


def _buffer(xp: Any, lib: Any, slot: str, shape: tuple, like: Any, zero: bool) -> Any:
    """An internal work array of ``shape`` and ``like``'s dtype (zero-filled if ``zero``)."""
    if lib is not np:
        make = xp.zeros if zero else xp.empty
        return make(shape, dtype=like.dtype, device=device(like))
    cache = getattr(_WORKSPACE, "buffers", None)
    if cache is None:
        cache = _WORKSPACE.buffers = OrderedDict()
    key = (slot, shape, like.dtype)
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.empty(shape, dtype=like.dtype)
        while cache and (len(cache) >= _WORKSPACE_ENTRIES or buf.nbytes + sum(
                b.nbytes for b in cache.values()) > _WORKSPACE_BYTES):
            cache.popitem(last=False)
    if buf.nbytes <= _WORKSPACE_BYTES:
        cache[key] = buf
    if zero:
        buf.fill(0)
    return buf


def _fresh(lib: Any, a: Any) -> Any:
    """A result as a new C-contiguous array (never a view of a work buffer)."""
    return a if lib is None else lib.array(a, order="C", copy=True)


def _phase_ranges(n: int, before: int, s: int, r: int, grid: int) -> tuple[int, int, slice]:
    """Grid indices ``[lo, hi)`` of phase ``r`` that hold image rows, and those rows."""
    lo = max(0, -((r - before) // s))
    hi = min(grid, -((r - before - n) // s))
    hi = max(hi, lo)
    start = lo * s + r - before
    return lo, hi, slice(start, start + s * (hi - lo - 1) + 1 if hi > lo else start, s)


def _phase_grids(x: Any, geo: _Grid, stride, padding, slot: str) -> list:
    """One ``(C, B*Hg*Wg)`` matrix per stride phase of the zero-padded ``x``."""
    xp = array_namespace(x)
    b, c, h, w = x.shape
    xt = xp.permute_dims(x, (1, 0, 2, 3))
    lib = _lib(xp)
    grids = []
    for i, (r, t) in enumerate(geo.phases):
        u0, u1, rows = _phase_ranges(h, padding[0][0], stride[0], r, geo.hg)
        v0, v1, cols = _phase_ranges(w, padding[1][0], stride[1], t, geo.wg)
        grid = _buffer(xp, lib, f"{slot}{i}", (c, b, geo.hg, geo.wg), x, zero=True)
        if u1 > u0 and v1 > v0:
            grid[:, :, u0:u1, v0:v1] = xt[:, :, rows, cols]
        grids.append(xp.reshape(grid, (c, b * geo.hg * geo.wg)))
    return grids


def _taps(w: Any, groups: int) -> Any:
    """``(kh, kw, G, O/G, C/G)`` contiguous per-offset weight matrices."""
    xp = array_namespace(w)
    o, cg, kh, kw = w.shape
    taps = xp.permute_dims(xp.reshape(w, (groups, o // groups, cg, kh, kw)), (3, 4, 0, 1, 2))
    lib = _lib(xp)
    return lib.ascontiguousarray(taps) if lib is not None else taps


def _grouped(a: Any, groups: int, start: int, length: int) -> Any:
    """Columns ``[start, start+length)`` of a ``(G*n, m)`` matrix as ``(G, n, length)`` (2-D
    for one group)."""
    xp = array_namespace(a)
    if groups == 1:
        return a[:, start:start + length]
    rows = a.shape[0] // groups
    return xp.reshape(a, (groups, rows, a.shape[1]))[:, :, start:start + length]


def _to_2d(a: Any, groups: int) -> Any:
    """A ``(G, n, m)`` product back to ``(G*n, m)`` (unchanged for one group)."""
    xp = array_namespace(a)
    return a if groups == 1 else xp.reshape(a, (a.shape[0] * a.shape[1], a.shape[2]))


def _mat(taps: Any, p: int, q: int, groups: int) -> Any:
    return taps[p, q, 0, ...] if groups == 1 else taps[p, q, ...]


def _add_into(xp: Any, lib: Any, acc: Any, key: Any, value: Any) -> Any:
    """``acc[key] += value``, in place on NumPy/CuPy; returns ``acc``."""
    if lib is not None:
        view = acc[key]
        lib.add(view, value, out=view)
    else:
        acc[key] = acc[key] + value
    return acc


class _Products:
    """Matrix products ``a @ b`` of one shape, written on NumPy/CuPy into one reused buffer
    and returned 2-D."""

    def __init__(self, xp: Any, lib: Any, groups: int, slot: str) -> None:
        self.xp, self.lib, self.groups, self.slot = xp, lib, groups, slot
        self.buffer = None

    def __call__(self, a: Any, b: Any) -> Any:
        if self.lib is None:
            return _to_2d(self.xp.matmul(a, b), self.groups)
        if self.buffer is None:
            shape = tuple(b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            self.buffer = _buffer(self.xp, self.lib, self.slot, shape, b, zero=False)
        self.lib.matmul(a, b, out=self.buffer)
        return _to_2d(self.buffer, self.groups)


# --- strided convolutions: im2col ---------------------------------------------------------
# With a stride the output is several times smaller than the input, so the window matrix
# is small and one product on it beats one product per offset over every stride phase.


def _offsets(p: int, d: int, s: int, n: int) -> slice:
    return slice(p * d, p * d + s * (n - 1) + 1, s)


def _padded(x: Any, padding: tuple, slot: str) -> Any:
    """``(C, B, Hp, Wp)``: ``x`` zero-padded with batch and channel axes swapped."""
    xp = array_namespace(x)
    b, c, h, w = x.shape
    (pt, pb), (pl, pr) = padding
    xt = xp.permute_dims(x, (1, 0, 2, 3))
    if not (pt or pb or pl or pr):
        return xt
    out = _buffer(xp, _lib(xp), slot, (c, b, h + pt + pb, w + pl + pr), x, zero=True)
    out[:, :, pt:pt + h, pl:pl + w] = xt
    return out


def _im2col(x: Any, geo: _Grid, kernel, stride, dilation, padding, slot: str) -> Any:
    """``(C*kh*kw, B*Ho*Wo)`` window matrix: row ``(c, p, q)``, column ``(b, i, j)``."""
    xp = array_namespace(x)
    b, c = x.shape[0], x.shape[1]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xpad = _padded(x, padding, slot + "-padded")
    cols = _buffer(xp, _lib(xp), slot, (c, kh, kw, b, geo.ho, geo.wo), x, zero=False)
    for p in range(kh):
        for q in range(kw):
            cols[:, p, q, ...] = xpad[:, :, _offsets(p, dh, sh, geo.ho),
                                      _offsets(q, dw, sw, geo.wo)]
    return xp.reshape(cols, (c * kh * kw, b * geo.ho * geo.wo))


def _rows(g: Any) -> Any:
    """``(B, O, Ho, Wo)`` as ``(O, B*Ho*Wo)``."""
    xp = array_namespace(g)
    b, o, ho, wo = g.shape
    return xp.reshape(xp.permute_dims(g, (1, 0, 2, 3)), (o, b * ho * wo))


def _weights(w: Any, groups: int) -> Any:
    """``(O, C/G, kh, kw)`` as ``(O, K)`` (one group) or ``(G, O/G, K)``."""
    xp = array_namespace(w)
    o, k = w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]
    return xp.reshape(w, (o, k) if groups == 1 else (groups, o // groups, k))


def _strided_forward(x, w, geo, stride, padding, dilation, groups):
    xp = array_namespace(x, w)
    b, o = x.shape[0], w.shape[0]
    cols = _im2col(x, geo, w.shape[2:], stride, dilation, padding, "strided-forward")
    y = _to_2d(xp.matmul(_weights(w, groups), _grouped(cols, groups, 0, cols.shape[1])), groups)
    images = xp.permute_dims(xp.reshape(y, (o, b, geo.ho, geo.wo)), (1, 0, 2, 3))
    return _fresh(_lib(xp), images)


def _strided_input_grad(g, w, geo, image_shape, stride, padding, dilation, groups):
    xp = array_namespace(g, w)
    lib = _lib(xp)
    b, c, h, w_ = image_shape
    (kh, kw), (sh, sw), (dh, dw) = w.shape[2:], stride, dilation
    (pt, pb), (pl, pr) = padding
    rows = _rows(g)
    cols = _to_2d(xp.matmul(xp.matrix_transpose(_weights(w, groups)),
                            _grouped(rows, groups, 0, rows.shape[1])), groups)
    blocks = xp.reshape(cols, (c, kh, kw, b, geo.ho, geo.wo))
    out = _buffer(xp, lib, "strided-input", (c, b, h + pt + pb, w_ + pl + pr), g, zero=True)
    for p in range(kh):
        for q in range(kw):
            key = (slice(None), slice(None), _offsets(p, dh, sh, geo.ho),
                   _offsets(q, dw, sw, geo.wo))
            _add_into(xp, lib, out, key, blocks[:, p, q, ...])
    return _fresh(lib, xp.permute_dims(out[:, :, pt:pt + h, pl:pl + w_], (1, 0, 2, 3)))


def _strided_weight_grad(x, g, geo, weight_shape, stride, padding, dilation, groups):
    xp = array_namespace(x, g)
    cols = _im2col(x, geo, weight_shape[2:], stride, dilation, padding, "strided-weight")
    rows = _rows(g)
    gw = xp.matmul(_grouped(rows, groups, 0, rows.shape[1]),
                   xp.matrix_transpose(_grouped(cols, groups, 0, cols.shape[1])))
    return _fresh(_lib(xp), xp.reshape(gw, tuple(weight_shape)))


def conv_forward(x: Any, w: Any, stride: tuple[int, int], padding: tuple,
                 dilation: tuple[int, int], groups: int) -> Any:
    """Cross-correlation of an image batch with a kernel bank (no bias).

    Args:
        x: ``(B, C, H, W)`` array.
        w: ``(O, C // groups, kh, kw)`` array.
        stride: ``(sh, sw)``; dilation: ``(dh, dw)``.
        padding: ``((top, bottom), (left, right))`` zeros around the image.
        groups: channel groups, dividing ``C`` and ``O``.

    Returns:
        ``(B, O, Ho, Wo)`` array in ``x``'s namespace, dtype and device (C-contiguous on
        NumPy and CuPy).
    """
    xp = array_namespace(x, w)
    lib = _lib(xp)
    b, o = x.shape[0], w.shape[0]
    geo = _geometry(x.shape, w.shape[2:], stride, dilation, padding)
    if tuple(stride) != (1, 1):
        return _strided_forward(x, w, geo, stride, padding, dilation, groups)
    grids = _phase_grids(x, geo, stride, padding, "forward")
    taps = _taps(w, groups)
    total = b * geo.hg * geo.wg
    product = _Products(xp, lib, groups, "forward-term")
    first, *rest = geo.taps
    if lib is not None:  # the first product straight into the output grid
        out = _buffer(xp, lib, "forward-out", (o, total), x, zero=False)
        lib.matmul(_mat(taps, first[0], first[1], groups),
                   _grouped(grids[first[2]], groups, first[3], geo.length),
                   out=_grouped(out, groups, 0, geo.length))
    else:
        out = xp.concat([_to_2d(xp.matmul(_mat(taps, first[0], first[1], groups),
                                          _grouped(grids[first[2]], groups, first[3],
                                                   geo.length)), groups),
                         xp.zeros((o, total - geo.length), dtype=x.dtype, device=device(x))],
                        axis=1)
    for p, q, phase, shift in rest:
        term = product(_mat(taps, p, q, groups), _grouped(grids[phase], groups, shift, geo.length))
        _add_into(xp, lib, out, (slice(None), slice(0, geo.length)), term)
    images = xp.permute_dims(xp.reshape(out, (o, b, geo.hg, geo.wg))[:, :, :geo.ho, :geo.wo],
                             (1, 0, 2, 3))
    return _fresh(lib, images)


def _output_grid(g: Any, geo: _Grid, slot: str) -> Any:
    """``(B, O, Ho, Wo)`` cotangent on the zero-filled ``(O, B*Hg*Wg)`` grid."""
    xp = array_namespace(g)
    b, o = g.shape[0], g.shape[1]
    grid = _buffer(xp, _lib(xp), slot, (o, b, geo.hg, geo.wg), g, zero=True)
    grid[:, :, :geo.ho, :geo.wo] = xp.permute_dims(g, (1, 0, 2, 3))
    return xp.reshape(grid, (o, b * geo.hg * geo.wg))


def conv_input_grad(g: Any, w: Any, image_shape: tuple[int, int, int, int],
                    stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                    groups: int) -> Any:
    """The VJP of :func:`conv_forward` with respect to ``x`` (a transposed convolution).

    Args:
        g: ``(B, O, Ho, Wo)`` cotangent.
        w: ``(O, C // groups, kh, kw)``.
        image_shape: ``(B, C, H, W)``.
        stride, padding, dilation, groups: as for :func:`conv_forward`.

    Returns:
        ``(B, C, H, W)`` array in ``g``'s namespace, dtype and device.
    """
    xp = array_namespace(g, w)
    lib = _lib(xp)
    b, c, h, w_ = image_shape
    geo = _geometry(image_shape, w.shape[2:], stride, dilation, padding)
    if tuple(stride) != (1, 1):
        return _strided_input_grad(g, w, geo, image_shape, stride, padding, dilation, groups)
    grid = _output_grid(g, geo, "input-cotangent")
    taps = _taps(w, groups)
    total = b * geo.hg * geo.wg
    phases = [_buffer(xp, lib, f"input{i}", (c, total), g, zero=True)
              for i in range(len(geo.phases))]
    product = _Products(xp, lib, groups, "input-term")
    rows_g = _grouped(grid, groups, 0, geo.length)
    for p, q, phase, shift in geo.taps:
        term = product(xp.matrix_transpose(_mat(taps, p, q, groups)), rows_g)
        _add_into(xp, lib, phases[phase], (slice(None), slice(shift, shift + geo.length)), term)
    pieces = []
    for (r, t), flat in zip(geo.phases, phases):
        u0, u1, rows = _phase_ranges(h, padding[0][0], stride[0], r, geo.hg)
        v0, v1, cols = _phase_ranges(w_, padding[1][0], stride[1], t, geo.wg)
        if u1 > u0 and v1 > v0:
            grid = xp.reshape(flat, (c, b, geo.hg, geo.wg))
            pieces.append((rows, cols, grid[:, :, u0:u1, v0:v1]))
    if len(pieces) == 1 and tuple(pieces[0][2].shape[2:]) == (h, w_):
        out = pieces[0][2]  # stride 1: the one phase covers the image
    else:
        out = xp.zeros((c, b, h, w_), dtype=g.dtype, device=device(g))
        for rows, cols, piece in pieces:
            out[:, :, rows, cols] = piece
    images = xp.permute_dims(out, (1, 0, 2, 3))
    return _fresh(lib, images)


def conv_weight_grad(x: Any, g: Any, weight_shape: tuple[int, int, int, int],
                     stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                     groups: int) -> Any:
    """The VJP of :func:`conv_forward` with respect to ``w``.

    Args:
        x: ``(B, C, H, W)`` input.
        g: ``(B, O, Ho, Wo)`` cotangent.
        weight_shape: ``(O, C // groups, kh, kw)``.
        stride, padding, dilation, groups: as for :func:`conv_forward`.

    Returns:
        ``(O, C // groups, kh, kw)`` array in ``x``'s namespace, dtype and device.
    """
    xp = array_namespace(x, g)
    lib = _lib(xp)
    o, cg, kh, kw = weight_shape
    geo = _geometry(x.shape, (kh, kw), stride, dilation, padding)
    if tuple(stride) != (1, 1):
        return _strided_weight_grad(x, g, geo, weight_shape, stride, padding, dilation, groups)
    grids = _phase_grids(x, geo, stride, padding, "weight")
    rows = _grouped(_output_grid(g, geo, "weight-cotangent"), groups, 0, geo.length)
    per_tap = []
    for p, q, phase, shift in geo.taps:
        cols = _grouped(grids[phase], groups, shift, geo.length)
        per_tap.append(xp.matmul(rows, xp.matrix_transpose(cols)))  # (G, O/G, C/G) or (O, C)
    stacked = xp.reshape(xp.stack(per_tap, axis=0), (kh, kw, o, cg))
    out = xp.permute_dims(stacked, (2, 3, 0, 1))
    return lib.ascontiguousarray(out) if lib is not None else out
