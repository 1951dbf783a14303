"""Strided convolution through im2col: one matrix product on the window matrix.

With a stride the output is several times smaller than the input, so the window matrix
``(C*kh*kw, B*Ho*Wo)`` is small and one product on it beats one product per offset over every
stride phase; col2im (the input VJP) is ``kh*kw`` strided block adds. Written in the
standard's functions; on NumPy the window matrix and padded image are work arrays
(:mod:`.workspace`).
"""

from __future__ import annotations

from typing import Any

from npdeq.backend.conv_grid import Grid, add_into, grouped, to_2d
from npdeq.backend.namespace import array_namespace
from npdeq.backend.workspace import fresh, library, work_array

__all__: list[str] = []  # package-internal kernels, dispatched by npdeq.backend.convolution


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
    out = work_array(xp, library(xp), slot, (c, b, h + pt + pb, w + pl + pr), x, zero=True)
    out[:, :, pt:pt + h, pl:pl + w] = xt
    return out


def _im2col(x: Any, geo: Grid, kernel, stride, dilation, padding, slot: str) -> Any:
    """``(C*kh*kw, B*Ho*Wo)`` window matrix: row ``(c, p, q)``, column ``(b, i, j)``."""
    xp = array_namespace(x)
    b, c = x.shape[0], x.shape[1]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xpad = _padded(x, padding, slot + "-padded")
    cols = work_array(xp, library(xp), slot, (c, kh, kw, b, geo.ho, geo.wo), x, zero=False)
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


def strided_forward(x: Any, w: Any, geo: Grid, stride: tuple, padding: tuple,
                    dilation: tuple, groups: int) -> Any:
    """The convolution (arguments as :func:`npdeq.backend.convolution.conv_forward`)."""
    xp = array_namespace(x, w)
    b, o = x.shape[0], w.shape[0]
    cols = _im2col(x, geo, w.shape[2:], stride, dilation, padding, "strided-forward")
    y = to_2d(xp.matmul(_weights(w, groups), grouped(cols, groups, 0, cols.shape[1])), groups)
    images = xp.permute_dims(xp.reshape(y, (o, b, geo.ho, geo.wo)), (1, 0, 2, 3))
    return fresh(library(xp), images)


def strided_input_grad(g: Any, w: Any, geo: Grid, image_shape: tuple, stride: tuple,
                       padding: tuple, dilation: tuple, groups: int) -> Any:
    """The VJP for the input: the windows' product with the weights, folded by col2im."""
    xp = array_namespace(g, w)
    lib = library(xp)
    b, c, h, w_ = image_shape
    (kh, kw), (sh, sw), (dh, dw) = w.shape[2:], stride, dilation
    (pt, pb), (pl, pr) = padding
    rows = _rows(g)
    cols = to_2d(xp.matmul(xp.matrix_transpose(_weights(w, groups)),
                           grouped(rows, groups, 0, rows.shape[1])), groups)
    blocks = xp.reshape(cols, (c, kh, kw, b, geo.ho, geo.wo))
    out = work_array(xp, lib, "strided-input", (c, b, h + pt + pb, w_ + pl + pr), g, zero=True)
    for p in range(kh):
        for q in range(kw):
            key = (slice(None), slice(None), _offsets(p, dh, sh, geo.ho),
                   _offsets(q, dw, sw, geo.wo))
            add_into(xp, lib, out, key, blocks[:, p, q, ...])
    return fresh(lib, xp.permute_dims(out[:, :, pt:pt + h, pl:pl + w_], (1, 0, 2, 3)))


def strided_weight_grad(x: Any, g: Any, geo: Grid, weight_shape: tuple, stride: tuple,
                        padding: tuple, dilation: tuple, groups: int) -> Any:
    """The VJP for the weight: the cotangent's product with the window matrix."""
    xp = array_namespace(x, g)
    cols = _im2col(x, geo, weight_shape[2:], stride, dilation, padding, "strided-weight")
    rows = _rows(g)
    gw = xp.matmul(grouped(rows, groups, 0, rows.shape[1]),
                   xp.matrix_transpose(grouped(cols, groups, 0, cols.shape[1])))
    return fresh(library(xp), xp.reshape(gw, tuple(weight_shape)))


