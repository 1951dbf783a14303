"""Stride-1 convolution on NumPy: one BLAS product per kernel row.

The input is copied once into a row-window matrix ``A`` of shape ``(C, kw, Hp, B, Wo)``,
``A[c, q, r, b, j] = xpad[b, c, r, j + q*dw]``: the ``kw`` horizontal offsets of each padded
row, with the batch axis inside the rows. Kernel row ``p`` then needs the rows
``r = i + p*dh`` for the output rows ``i``, which in ``A``'s column order ``(r, b, j)`` is one
contiguous block of ``Ho*B*Wo`` columns starting at ``p*dh*B*Wo``. So the convolution is
``kh`` products ``W_p @ A[:, p*dh*B*Wo:][:, :Ho*B*Wo]`` with ``K = C*kw`` (``W_p`` the kernel
row ``p`` as an ``(O, C*kw)`` matrix), accumulated, on operands BLAS reads in place:

- no output is computed and dropped (the batch axis sits between the rows, so a row shift
  never crosses from one image into the next), where the per-offset products on a padded
  grid (:mod:`.conv_grid`) compute ``Hg*Wg`` outputs per image for ``Ho*Wo`` (27% more at
  16x16 with a 3x3 kernel, 56% at 8x8);
- ``kh`` products with ``K = C*kw`` instead of ``kh*kw`` with ``K = C``: fewer, larger
  products run closer to the BLAS peak, and ``kh - 1`` accumulations instead of
  ``kh*kw - 1``;
- the copy is ``kw`` times the input, against ``kh*kw`` times for a full im2col.

The input VJP of a stride-1 convolution is the stride-1 convolution of the cotangent with
the flipped, channel-transposed kernel and padding ``d*(k-1) - p`` (negative: a crop), so
it runs on the same products; the weight VJP is ``kh`` products of the cotangent with the
same row windows. Work arrays come from :mod:`.workspace`; results are fresh arrays.

NumPy only (this is where NumPy's own BLAS calls are taken); the portable kernels of
:mod:`.conv_grid` are the reference it is tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npdeq.backend.workspace import fresh, work_array

__all__: list[str] = []  # package-internal kernels, dispatched by npdeq.backend.convolution


def _row_windows(x: Any, kw: int, dw: int, padding: tuple, slot: str) -> Any:
    """The ``(C, kw, Hp, B, Wo)`` row windows of ``x`` ``(B, C, H, W)`` zero-padded by
    ``padding`` ``((top, bottom), (left, right))``, where a negative amount crops."""
    b, c, h, w = x.shape
    (pt, pb), (pl, pr) = padding
    hp, wo = h + pt + pb, w + pl + pr - dw * (kw - 1)
    a = work_array(np, np, slot, (c, kw, hp, b, wo), x, zero=False)
    r0 = max(0, pt)  # rows of A that hold input rows: [r0, r1)
    r1 = max(min(hp, h + pt), r0)
    a[:, :, :r0] = 0
    a[:, :, r1:] = 0
    if r1 == r0:
        return a
    xt = x.transpose(1, 2, 0, 3)[:, r0 - pt:r1 - pt]  # (C, rows, B, W): A's column order
    if wo == w and b > 1:
        # The output keeps the input's width (padding 'same'): transpose once, then each
        # offset is one flat shift along (b, j), a long contiguous copy; the few columns
        # that a shift carries across an image's edge are zeroed after. The unshifted
        # offset (if any) takes the transposed copy itself.
        centre = next((q for q in range(kw) if q * dw == pl), None)
        if centre is None:
            rows = work_array(np, np, slot + "-rows", (c, r1 - r0, b, w), x, zero=False)
        else:
            rows = a[:, centre, r0:r1]
        rows[...] = xt
        flat = rows.reshape(c, r1 - r0, b * w)
        for q in range(kw):
            shift = q * dw - pl
            if q == centre:
                continue
            dest = a[:, q, r0:r1].reshape(c, r1 - r0, b * w)
            lo, hi = max(0, -shift), min(b * w, b * w - shift)
            dest[:, :, lo:hi] = flat[:, :, lo + shift:hi + shift]
            dest[:, :, :lo] = 0
            dest[:, :, hi:] = 0
            edge = a[:, q, r0:r1]
            if shift < 0:
                edge[..., :min(-shift, w)] = 0
            else:
                edge[..., max(w - shift, 0):] = 0
        return a
    for q in range(kw):
        j0 = min(max(0, pl - q * dw), wo)  # columns of A that hold input columns: [j0, j1)
        j1 = max(min(wo, w + pl - q * dw), j0)
        a[:, q, r0:r1, :, :j0] = 0
        a[:, q, r0:r1, :, j1:] = 0
        shift = q * dw - pl
        a[:, q, r0:r1, :, j0:j1] = xt[..., j0 + shift:j1 + shift]
    return a


def _row_taps(w: Any, groups: int, transposed: bool) -> Any:
    """Kernel rows as ``(kh, G, M, K)`` matrices: ``M = O/G`` outputs by ``K = (C/G)*kw``
    (``q`` fastest), matching :func:`_row_windows`' rows; ``transposed``: those of the
    flipped kernel with input and output channels swapped (the input VJP)."""
    o, cg, kh, kw = w.shape
    per_group = w.reshape(groups, o // groups, cg, kh, kw)
    if transposed:
        rows = per_group[:, :, :, ::-1, ::-1].transpose(3, 0, 2, 1, 4)  # (kh, G, C/G, O/G, kw)
    else:
        rows = per_group.transpose(3, 0, 1, 2, 4)  # (kh, G, O/G, C/G, kw)
    rows = np.ascontiguousarray(rows)
    return rows.reshape(rows.shape[:3] + (rows.shape[3] * kw,))


def _accumulate(a: Any, taps: Any, dh: int, ho: int, dtype: Any, slot: str) -> Any:
    """``sum_p taps[p] @ A_p`` as a ``(G, M, Ho*B*Wo)`` work array, ``A_p`` the ``Ho*B*Wo``
    columns of kernel row ``p``."""
    c, kw, hp, b, wo = a.shape
    kh, groups, m, k = taps.shape
    n, step = ho * b * wo, dh * b * wo
    windows = a.reshape(groups, k, hp * b * wo)
    out = work_array(np, np, slot, (groups, m, n), a, zero=False, dtype=dtype)
    term = work_array(np, np, slot + "-term", (groups, m, n), a, zero=False, dtype=dtype)
    for p in range(kh):
        target = out if p == 0 else term
        cols = windows[:, :, p * step:p * step + n]
        if groups == 1:  # a plain 2-D product: one BLAS call
            np.matmul(taps[p, 0], cols[0], out=target[0])
        else:
            np.matmul(taps[p], cols, out=target)
        if p:
            np.add(out, term, out=out)
    return out


def _images(out: Any, ho: int, b: int, wo: int) -> Any:
    """A ``(G, M, Ho*B*Wo)`` product as a fresh ``(B, G*M, Ho, Wo)`` array."""
    rows = out.reshape(out.shape[0] * out.shape[1], ho, b, wo)
    return fresh(np, rows.transpose(2, 0, 1, 3))


def rows_forward(x: Any, w: Any, padding: tuple, dilation: tuple, groups: int) -> Any:
    """Stride-1 convolution of NumPy arrays (arguments as
    :func:`npdeq.backend.convolution.conv_forward`)."""
    b, _, h, _ = x.shape
    kh, kw = w.shape[2:]
    dh, dw = dilation
    a = _row_windows(x, kw, dw, padding, "rows-forward")
    ho = a.shape[2] - dh * (kh - 1)
    out = _accumulate(a, _row_taps(w, groups, transposed=False), dh, ho,
                      np.result_type(x, w), "rows-forward-out")
    return _images(out, ho, b, a.shape[4])


def rows_input_grad(g: Any, w: Any, image_shape: tuple, padding: tuple, dilation: tuple,
                    groups: int) -> Any:
    """The VJP for the input of a stride-1 convolution: the convolution of ``g`` with the
    flipped, channel-transposed kernel, padded by ``d*(k-1) - p`` on each side."""
    b, _, h, w_ = image_shape
    kh, kw = w.shape[2:]
    dh, dw = dilation
    (pt, pb), (pl, pr) = padding
    eh, ew = dh * (kh - 1), dw * (kw - 1)  # the dilated kernel's extent
    a = _row_windows(g, kw, dw, ((eh - pt, eh - pb), (ew - pl, ew - pr)), "rows-input")
    out = _accumulate(a, _row_taps(w, groups, transposed=True), dh, h, np.result_type(g, w),
                      "rows-input-out")
    return _images(out, h, b, w_)


def rows_weight_grad(x: Any, g: Any, weight_shape: tuple, padding: tuple, dilation: tuple,
                     groups: int) -> Any:
    """The VJP for the weight of a stride-1 convolution: per kernel row ``p``, the
    cotangent ``(O, Ho*B*Wo)`` times the row windows ``A_p`` transposed."""
    o, cg, kh, kw = weight_shape
    dh, dw = dilation
    b, _, ho, wo = g.shape
    a = _row_windows(x, kw, dw, padding, "rows-weight")
    n, step = ho * b * wo, dh * b * wo
    rows = work_array(np, np, "rows-weight-cotangent", (o, ho, b, wo), g, zero=False)
    rows[...] = g.transpose(1, 2, 0, 3)  # columns in A's order (i, b, j)
    rows = rows.reshape(groups, o // groups, n)
    windows = a.reshape(groups, cg * kw, a.shape[2] * b * wo)
    out = np.empty((kh, groups, o // groups, cg * kw), dtype=np.result_type(x, g))
    for p in range(kh):
        cols = windows[:, :, p * step:p * step + n]
        if groups == 1:
            np.matmul(rows[0], cols[0].T, out=out[p, 0])
        else:
            np.matmul(rows, cols.transpose(0, 2, 1), out=out[p])
    per_group = out.reshape(kh, groups, o // groups, cg, kw).transpose(1, 2, 3, 0, 4)
    return np.ascontiguousarray(per_group).reshape(weight_shape)
