"""Convolution on a padded grid: one 2-D matrix product per kernel offset, in the
standard's functions (the portable path: ``array_api_strict``, CuPy).

The zero-padded input is laid out as one ``(C, B*Hg*Wg)`` matrix (channels by flattened
batch and positions, one ``Hg x Wg`` grid per image). On that grid, kernel offset ``(p, q)``
is a constant flat shift, so the convolution is a sum over the ``kh*kw`` offsets of
``W[:, :, p, q] @ grid[:, shift:shift+L]``: 2-D products whose operands are plain slices of
contiguous buffers, for any padding, dilation and group count. Grid positions past the
output size are computed and dropped (``Hg*Wg`` against ``Ho*Wo``). The same grid serves both
VJPs. The code also handles strides (one grid per stride phase); :mod:`.convolution` sends
strided convolutions to im2col instead (:mod:`.conv_im2col`). On NumPy and CuPy products and
sums are written in place into work arrays (:mod:`.workspace`).

These kernels are also the reference the NumPy kernel-row path (:mod:`.conv_rows`) is tested
against.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from npdeq.backend.namespace import array_namespace, device
from npdeq.backend.workspace import fresh, library, work_array

__all__: list[str] = []  # package-internal kernels, dispatched by npdeq.backend.convolution


class Grid(NamedTuple):
    """Output size and the padded grid's layout for one convolution geometry."""

    ho: int  # output size
    wo: int
    hg: int  # phase grid size
    wg: int
    length: int  # grid columns holding every output: B*Hg*Wg - largest shift
    taps: tuple  # (p, q, phase index, flat shift) per kernel offset
    phases: tuple  # (r, t) stride phase per phase index


def geometry(image_shape: tuple, kernel: tuple, stride: tuple, dilation: tuple,
             padding: tuple) -> Grid:
    """The :class:`Grid` of ``image_shape`` ``(B, C, H, W)`` under a ``(kh, kw)`` kernel;
    raises ValueError when the dilated kernel does not fit the padded input."""
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
    return Grid(ho, wo, hg, wg, b * hg * wg - largest, tuple(taps), tuple(phases))


def phase_ranges(n: int, before: int, s: int, r: int, grid: int) -> tuple[int, int, slice]:
    """Grid indices ``[lo, hi)`` whose image row ``u*s + r - before`` lies in ``[0, n)``
    (``u < grid``), and those rows as a slice."""
    lo = max(0, -((r - before) // s))
    hi = min(grid, -((r - before - n) // s))
    hi = max(hi, lo)
    start = lo * s + r - before
    return lo, hi, slice(start, start + s * (hi - lo - 1) + 1 if hi > lo else start, s)


def _phase_grids(x: Any, geo: Grid, stride, padding, slot: str) -> list:
    """One ``(C, B*Hg*Wg)`` matrix per stride phase of the zero-padded ``x``."""
    xp = array_namespace(x)
    b, c, h, w = x.shape
    xt = xp.permute_dims(x, (1, 0, 2, 3))
    lib = library(xp)
    grids = []
    for i, (r, t) in enumerate(geo.phases):
        u0, u1, rows = phase_ranges(h, padding[0][0], stride[0], r, geo.hg)
        v0, v1, cols = phase_ranges(w, padding[1][0], stride[1], t, geo.wg)
        grid = work_array(xp, lib, f"{slot}{i}", (c, b, geo.hg, geo.wg), x, zero=True)
        if u1 > u0 and v1 > v0:
            grid[:, :, u0:u1, v0:v1] = xt[:, :, rows, cols]
        grids.append(xp.reshape(grid, (c, b * geo.hg * geo.wg)))
    return grids


def _taps(w: Any, groups: int) -> Any:
    """``(kh, kw, G, O/G, C/G)`` contiguous per-offset weight matrices."""
    xp = array_namespace(w)
    o, cg, kh, kw = w.shape
    taps = xp.permute_dims(xp.reshape(w, (groups, o // groups, cg, kh, kw)), (3, 4, 0, 1, 2))
    lib = library(xp)
    return lib.ascontiguousarray(taps) if lib is not None else taps


def grouped(a: Any, groups: int, start: int, length: int) -> Any:
    """Columns ``[start, start+length)`` of a ``(G*n, m)`` matrix as ``(G, n, length)`` (2-D
    for one group)."""
    xp = array_namespace(a)
    if groups == 1:
        return a[:, start:start + length]
    rows = a.shape[0] // groups
    return xp.reshape(a, (groups, rows, a.shape[1]))[:, :, start:start + length]


def to_2d(a: Any, groups: int) -> Any:
    """A ``(G, n, m)`` product back to ``(G*n, m)`` (unchanged for one group)."""
    xp = array_namespace(a)
    return a if groups == 1 else xp.reshape(a, (a.shape[0] * a.shape[1], a.shape[2]))


def _mat(taps: Any, p: int, q: int, groups: int) -> Any:
    return taps[p, q, 0, ...] if groups == 1 else taps[p, q, ...]


def add_into(xp: Any, lib: Any, acc: Any, key: Any, value: Any) -> Any:
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
            return to_2d(self.xp.matmul(a, b), self.groups)
        if self.buffer is None:
            shape = tuple(b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            self.buffer = work_array(self.xp, self.lib, self.slot, shape, b, zero=False)
        self.lib.matmul(a, b, out=self.buffer)
        return to_2d(self.buffer, self.groups)


def grid_forward(x: Any, w: Any, stride: tuple[int, int], padding: tuple,
                 dilation: tuple[int, int], groups: int) -> Any:
    """Cross-correlation of an image batch with a kernel bank, on any namespace: arguments and
    result as :func:`~npdeq.backend.convolution.conv_forward` without its bias."""
    xp = array_namespace(x, w)
    lib = library(xp)
    b, o = x.shape[0], w.shape[0]
    geo = geometry(x.shape, w.shape[2:], stride, dilation, padding)
    grids = _phase_grids(x, geo, stride, padding, "forward")
    taps = _taps(w, groups)
    total = b * geo.hg * geo.wg
    product = _Products(xp, lib, groups, "forward-term")
    first, *rest = geo.taps
    if lib is not None:  # the first product straight into the output grid
        out = work_array(xp, lib, "forward-out", (o, total), x, zero=False)
        lib.matmul(_mat(taps, first[0], first[1], groups),
                   grouped(grids[first[2]], groups, first[3], geo.length),
                   out=grouped(out, groups, 0, geo.length))
    else:
        out = xp.concat([to_2d(xp.matmul(_mat(taps, first[0], first[1], groups),
                                          grouped(grids[first[2]], groups, first[3],
                                                   geo.length)), groups),
                         xp.zeros((o, total - geo.length), dtype=x.dtype, device=device(x))],
                        axis=1)
    for p, q, phase, shift in rest:
        term = product(_mat(taps, p, q, groups), grouped(grids[phase], groups, shift, geo.length))
        add_into(xp, lib, out, (slice(None), slice(0, geo.length)), term)
    images = xp.permute_dims(xp.reshape(out, (o, b, geo.hg, geo.wg))[:, :, :geo.ho, :geo.wo],
                             (1, 0, 2, 3))
    return fresh(lib, images)


def _output_grid(g: Any, geo: Grid, slot: str) -> Any:
    """``(B, O, Ho, Wo)`` cotangent on the zero-filled ``(O, B*Hg*Wg)`` grid."""
    xp = array_namespace(g)
    b, o = g.shape[0], g.shape[1]
    grid = work_array(xp, library(xp), slot, (o, b, geo.hg, geo.wg), g, zero=True)
    grid[:, :, :geo.ho, :geo.wo] = xp.permute_dims(g, (1, 0, 2, 3))
    return xp.reshape(grid, (o, b * geo.hg * geo.wg))


def grid_input_grad(g: Any, w: Any, image_shape: tuple[int, int, int, int],
                    stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                    groups: int) -> Any:
    """The VJP of :func:`grid_forward` with respect to ``x`` (a transposed convolution), on
    any namespace: arguments and result as
    :func:`~npdeq.backend.convolution.conv_input_grad`."""
    xp = array_namespace(g, w)
    lib = library(xp)
    b, c, h, w_ = image_shape
    geo = geometry(image_shape, w.shape[2:], stride, dilation, padding)
    grid = _output_grid(g, geo, "input-cotangent")
    taps = _taps(w, groups)
    total = b * geo.hg * geo.wg
    phases = [work_array(xp, lib, f"input{i}", (c, total), g, zero=True)
              for i in range(len(geo.phases))]
    product = _Products(xp, lib, groups, "input-term")
    rows_g = grouped(grid, groups, 0, geo.length)
    for p, q, phase, shift in geo.taps:
        term = product(xp.matrix_transpose(_mat(taps, p, q, groups)), rows_g)
        add_into(xp, lib, phases[phase], (slice(None), slice(shift, shift + geo.length)), term)
    pieces = []
    for (r, t), flat in zip(geo.phases, phases):
        u0, u1, rows = phase_ranges(h, padding[0][0], stride[0], r, geo.hg)
        v0, v1, cols = phase_ranges(w_, padding[1][0], stride[1], t, geo.wg)
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
    return fresh(lib, images)


def grid_weight_grad(x: Any, g: Any, weight_shape: tuple[int, int, int, int],
                     stride: tuple[int, int], padding: tuple, dilation: tuple[int, int],
                     groups: int) -> Any:
    """The VJP of :func:`grid_forward` with respect to ``w``, on any namespace: arguments and
    result as :func:`~npdeq.backend.convolution.conv_weight_grad`."""
    xp = array_namespace(x, g)
    lib = library(xp)
    o, cg, kh, kw = weight_shape
    geo = geometry(x.shape, (kh, kw), stride, dilation, padding)
    grids = _phase_grids(x, geo, stride, padding, "weight")
    rows = grouped(_output_grid(g, geo, "weight-cotangent"), groups, 0, geo.length)
    per_tap = []
    for p, q, phase, shift in geo.taps:
        cols = grouped(grids[phase], groups, shift, geo.length)
        per_tap.append(xp.matmul(rows, xp.matrix_transpose(cols)))  # (G, O/G, C/G) or (O, C)
    stacked = xp.reshape(xp.stack(per_tap, axis=0), (kh, kw, o, cg))
    out = xp.permute_dims(stacked, (2, 3, 0, 1))
    return lib.ascontiguousarray(out) if lib is not None else out
