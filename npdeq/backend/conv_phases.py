"""Strided convolution on NumPy: per image, one BLAS product per kernel row on row windows
split by stride phase.

With stride ``(sh, sw)`` the row windows of :mod:`.conv_rows` take every ``sw``-th column
and split the rows by their phase ``t = r mod sh``:
``A[b, c, q, t, r', j] = xpad[b, c, r'*sh + t, j*sw + q*dw]``. Kernel row ``p`` reads phase
``(p*dh) mod sh`` from row ``(p*dh) // sh`` on, which is again one contiguous block of
``Ho*Wo`` columns per image, so the forward and the weight VJP are ``kh`` products per image
with ``K = C*kw``, as at stride 1, and the windows hold about ``kw / sw`` times the input
(im2col: ``kh*kw / (sh*sw)`` times). The input VJP runs the transposed products
``W_p^T @ g`` into the same layout (``kh`` contiguous adds) and folds it back onto the image
(``kw`` strided adds per phase), where col2im takes ``kh*kw``. Only the phases some kernel
row reads are built. Images go a block at a time (:func:`.conv_rows.block_size`).

NumPy only; the portable kernels (:mod:`.conv_grid`, :mod:`.conv_im2col`) are the reference
it is tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npdeq.backend.conv_grid import phase_ranges
from npdeq.backend.conv_rows import block_size, row_taps
from npdeq.backend.workspace import work_array

__all__: list[str] = []  # package-internal kernels, dispatched by npdeq.backend.convolution


class _Layout:
    """Sizes and the kernel rows' column blocks of the phase windows of one geometry."""

    def __init__(self, image_shape: tuple, kernel: tuple, stride: tuple, dilation: tuple,
                 padding: tuple) -> None:
        _, c, h, w = image_shape
        (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = kernel, stride, dilation, padding
        self.ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
        self.wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
        self.rows = self.ho + dh * (kh - 1) // sh  # rows r' per phase
        self.phases = sorted({p * dh % sh for p in range(kh)})
        self.n = self.ho * self.wo
        # First column of kernel row p's block in an image's (phase, r', j) columns.
        self.starts = [(self.phases.index(p * dh % sh) * self.rows + p * dh // sh) * self.wo
                       for p in range(kh)]
        self.shape = (c, kw, len(self.phases), self.rows, self.wo)  # per image
        self.geometry = (h, w, kw, sh, sw, dw, pt, pl)

    def pieces(self):
        """``(q, phase index, [u0, u1), image rows, [v0, v1), image columns)`` of every
        block of the windows that holds input pixels."""
        h, w, kw, sh, sw, dw, pt, pl = self.geometry
        for i, t in enumerate(self.phases):
            u0, u1, rows = phase_ranges(h, pt, sh, t, self.rows)
            for q in range(kw):
                v0, v1, cols = phase_ranges(w, pl, sw, q * dw, self.wo)
                if u1 > u0 and v1 > v0:
                    yield q, i, (u0, u1), rows, (v0, v1), cols


def _windows(x: Any, layout: _Layout, slot: str) -> Any:
    """The ``(B, C, kw, phases, rows, Wo)`` phase windows of ``x``."""
    a = work_array(np, np, slot, (x.shape[0],) + layout.shape, x, zero=True)
    for q, i, (u0, u1), rows, (v0, v1), cols in layout.pieces():
        a[:, :, q, i, u0:u1, v0:v1] = x[:, :, rows, cols]
    return a


def phases_forward(x: Any, w: Any, stride: tuple, padding: tuple, dilation: tuple,
                   groups: int, bias: Any = None) -> Any:
    """Strided convolution of NumPy arrays (arguments as
    :func:`npdeq.backend.convolution.conv_forward`)."""
    b = x.shape[0]
    layout = _Layout(x.shape, w.shape[2:], stride, dilation, padding)
    taps = row_taps(w, groups, transposed=False)
    kh, _, m, k = taps.shape
    dtype = np.result_type(x, w) if bias is None else np.result_type(x, w, bias)
    out = np.empty((b, groups, m, layout.n), dtype=dtype)
    per_channel = None if bias is None else bias.reshape(groups, m, 1)
    step = block_size(x, int(np.prod(layout.shape)))
    for start in range(0, b, step):
        a = _windows(x[start:start + step], layout, "phases-forward")
        windows = a.reshape(a.shape[0], groups, k, -1)
        dest = out[start:start + step]
        term = (work_array(np, np, "phases-forward-term", dest.shape, a, zero=False,
                           dtype=dtype) if kh > 1 else None)
        for p, s in enumerate(layout.starts):
            np.matmul(taps[p], windows[..., s:s + layout.n], out=dest if p == 0 else term)
            if p:
                np.add(dest, term, out=dest)
        if per_channel is not None:  # while the block is in cache
            np.add(dest, per_channel, out=dest)
    return out.reshape(b, groups * m, layout.ho, layout.wo)


def phases_input_grad(g: Any, w: Any, image_shape: tuple, stride: tuple, padding: tuple,
                      dilation: tuple, groups: int) -> Any:
    """The VJP for the input of a strided convolution: per image and kernel row, the
    transposed product into the phase windows' layout, folded back onto the image."""
    b, c, h, w_ = image_shape
    layout = _Layout(image_shape, w.shape[2:], stride, dilation, padding)
    taps = row_taps(w, groups, transposed=False).transpose(0, 1, 3, 2)  # (kh, G, K, O/G)
    k = taps.shape[2]
    dtype = np.result_type(g, w)
    out = np.zeros((b, c, h, w_), dtype=dtype)
    cotangents = g.reshape(b, groups, g.shape[1] // groups, layout.n)
    step = block_size(g, int(np.prod(layout.shape)))
    for start in range(0, b, step):
        rows = cotangents[start:start + step]
        acc = work_array(np, np, "phases-input", (rows.shape[0],) + layout.shape, g,
                         zero=True, dtype=dtype)
        columns = acc.reshape(rows.shape[0], groups, k, -1)
        term = work_array(np, np, "phases-input-term", (rows.shape[0], groups, k, layout.n),
                          g, zero=False, dtype=dtype)
        for p, s in enumerate(layout.starts):
            block = columns[..., s:s + layout.n]
            if p == 0:  # the first product lands on zeros: written in place
                np.matmul(taps[p], rows, out=block)
                continue
            np.matmul(taps[p], rows, out=term)
            np.add(block, term, out=block)
        image = out[start:start + step]
        for q, i, (u0, u1), r, (v0, v1), cols in layout.pieces():
            target = image[:, :, r, cols]
            np.add(target, acc[:, :, q, i, u0:u1, v0:v1], out=target)
    return out


def phases_weight_grad(x: Any, g: Any, weight_shape: tuple, stride: tuple, padding: tuple,
                       dilation: tuple, groups: int) -> Any:
    """The VJP for the weight of a strided convolution: per kernel row and image, the phase
    windows times the cotangent transposed, summed over images."""
    o, cg, kh, kw = weight_shape
    b = x.shape[0]
    layout = _Layout(x.shape, (kh, kw), stride, dilation, padding)
    rows = g.reshape(b, groups, o // groups, layout.n)
    dtype = np.result_type(x, g)
    # (K, pixels) @ (pixels, O/G) products, as conv_rows.rows_weight_grad
    out = np.zeros((kh, groups, cg * kw, o // groups), dtype=dtype)
    step = block_size(x, int(np.prod(layout.shape)))
    for start in range(0, b, step):
        a = _windows(x[start:start + step], layout, "phases-weight")
        windows = a.reshape(a.shape[0], groups, cg * kw, -1)
        per_image = work_array(np, np, "phases-weight-images",
                               (a.shape[0], groups, cg * kw, o // groups), a, zero=False,
                               dtype=dtype)
        for p, s in enumerate(layout.starts):
            cols = windows[..., s:s + layout.n]
            np.matmul(cols, rows[start:start + step].swapaxes(-1, -2), out=per_image)
            out[p] += np.sum(per_image, axis=0)
    per_group = out.reshape(kh, groups, cg, kw, o // groups).transpose(1, 4, 2, 0, 3)
    return np.ascontiguousarray(per_group).reshape(weight_shape)
