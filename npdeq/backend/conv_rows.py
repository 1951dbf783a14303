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

With one kernel row (1-D convolutions, ``1 x k`` kernels) nothing shifts between rows, so
``A`` keeps the batch outside, ``(C, kw, B, Hp, Wo)``: the copies in and out then move whole
images instead of single rows.

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


def _windows(x: Any, kw: int, dw: int, padding: tuple, inside: bool, slot: str) -> Any:
    """The row windows of ``x`` ``(B, C, H, W)`` zero-padded by ``padding``
    ``((top, bottom), (left, right))`` (a negative amount crops): ``(C, kw, Hp, B, Wo)``
    with the batch ``inside`` the rows, else ``(C, kw, B, Hp, Wo)``."""
    b, c, h, w = x.shape
    (pt, pb), (pl, pr) = padding
    hp, wo = h + pt + pb, w + pl + pr - dw * (kw - 1)
    a = work_array(np, np, slot, (c, kw, hp, b, wo) if inside else (c, kw, b, hp, wo), x,
                   zero=False)
    r0 = max(0, pt)  # rows of A that hold input rows: [r0, r1)
    r1 = max(min(hp, h + pt), r0)
    lead = (slice(None), slice(None)) if inside else (slice(None), slice(None), slice(None))
    a[lead + (slice(0, r0),)] = 0
    a[lead + (slice(r1, None),)] = 0
    if r1 == r0:
        return a

    def block(q):  # offset q's rows [r0, r1): (C, R, B, Wo) inside, else (C, B, R, Wo)
        return a[:, q, r0:r1] if inside else a[:, q, :, r0:r1]

    # The input in A's axis order, rows [r0, r1) of the padded image.
    src = (x.transpose(1, 2, 0, 3)[:, r0 - pt:r1 - pt] if inside
           else x.transpose(1, 0, 2, 3)[:, :, r0 - pt:r1 - pt])
    lines = src.shape[1] * src.shape[2]  # rows of W pixels per channel
    if wo != w or lines == 1:
        for q in range(kw):
            j0 = min(max(0, pl - q * dw), wo)  # columns of A holding input columns: [j0, j1)
            j1 = max(min(wo, w + pl - q * dw), j0)
            dest = block(q)
            dest[..., :j0] = 0
            dest[..., j1:] = 0
            dest[..., j0:j1] = src[..., j0 + q * dw - pl:j1 + q * dw - pl]
        return a
    # The output keeps the input's width (padding 'same'): each offset is one flat shift
    # along the rows of a contiguous copy, the few columns that a shift carries across a
    # row's edge zeroed after. With the batch inside, the input is transposed once first
    # (into the unshifted offset's rows when there is one).
    if inside:
        centre = next((q for q in range(kw) if q * dw == pl), None)
        rows = (block(centre) if centre is not None else
                work_array(np, np, slot + "-rows", src.shape, x, zero=False))
        rows[...] = src
        src = rows
    else:
        centre = None
    flat = src.reshape(c, src.shape[1], src.shape[2] * w)
    span = flat.shape[2]
    for q in range(kw):
        if q == centre:
            continue
        shift = q * dw - pl
        dest = block(q)
        line = dest.reshape(flat.shape)
        lo = min(max(0, -shift), span)  # the columns a shifted copy fills: [lo, hi)
        hi = max(min(span, span - shift), lo)
        line[:, :, lo:hi] = flat[:, :, lo + shift:hi + shift]
        line[:, :, :lo] = 0
        line[:, :, hi:] = 0
        if shift < 0:
            dest[..., :min(-shift, w)] = 0
        elif shift > 0:
            dest[..., max(w - shift, 0):] = 0
    return a


def _row_taps(w: Any, groups: int, transposed: bool) -> Any:
    """Kernel rows as ``(kh, G, M, K)`` matrices: ``M = O/G`` outputs by ``K = (C/G)*kw``
    (``q`` fastest), matching :func:`_windows`' rows; ``transposed``: those of the
    flipped kernel with input and output channels swapped (the input VJP)."""
    o, cg, kh, kw = w.shape
    per_group = w.reshape(groups, o // groups, cg, kh, kw)
    if transposed:
        rows = per_group[:, :, :, ::-1, ::-1].transpose(3, 0, 2, 1, 4)  # (kh, G, C/G, O/G, kw)
    else:
        rows = per_group.transpose(3, 0, 1, 2, 4)  # (kh, G, O/G, C/G, kw)
    rows = np.ascontiguousarray(rows)
    return rows.reshape(rows.shape[:3] + (rows.shape[3] * kw,))


def _columns(a: Any, groups: int, dh: int, ho: int, inside: bool) -> tuple:
    """``A`` as ``(G, K, columns)``, the number ``n`` of columns per kernel row and the
    shift ``step`` from one kernel row to the next."""
    c, kw = a.shape[:2]
    b, wo = (a.shape[3], a.shape[4]) if inside else (a.shape[2], a.shape[4])
    return (a.reshape(groups, (c // groups) * kw, a.size // (c * kw)), ho * b * wo,
            dh * b * wo)


def _accumulate(a: Any, taps: Any, dh: int, ho: int, inside: bool, dtype: Any,
                slot: str) -> Any:
    """``sum_p taps[p] @ A_p`` as a ``(G, M, n)`` work array, ``A_p`` the ``n`` columns of
    kernel row ``p``."""
    kh, groups, m, _ = taps.shape
    windows, n, step = _columns(a, groups, dh, ho, inside)
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


def _images(out: Any, ho: int, b: int, wo: int, inside: bool) -> Any:
    """A ``(G, M, n)`` product as a fresh ``(B, G*M, Ho, Wo)`` array."""
    o = out.shape[0] * out.shape[1]
    if inside:
        return fresh(np, out.reshape(o, ho, b, wo).transpose(2, 0, 1, 3))
    return fresh(np, out.reshape(o, b, ho, wo).transpose(1, 0, 2, 3))


def rows_forward(x: Any, w: Any, padding: tuple, dilation: tuple, groups: int) -> Any:
    """Stride-1 convolution of NumPy arrays (arguments as
    :func:`npdeq.backend.convolution.conv_forward`)."""
    b = x.shape[0]
    kh, kw = w.shape[2:]
    dh, dw = dilation
    inside = kh > 1
    a = _windows(x, kw, dw, padding, inside, "rows-forward")
    ho = a.shape[2 if inside else 3] - dh * (kh - 1)
    out = _accumulate(a, _row_taps(w, groups, transposed=False), dh, ho, inside,
                      np.result_type(x, w), "rows-forward-out")
    return _images(out, ho, b, a.shape[4], inside)


def rows_input_grad(g: Any, w: Any, image_shape: tuple, padding: tuple, dilation: tuple,
                    groups: int) -> Any:
    """The VJP for the input of a stride-1 convolution: the convolution of ``g`` with the
    flipped, channel-transposed kernel, padded by ``d*(k-1) - p`` on each side."""
    b, _, h, w_ = image_shape
    kh, kw = w.shape[2:]
    dh, dw = dilation
    (pt, pb), (pl, pr) = padding
    eh, ew = dh * (kh - 1), dw * (kw - 1)  # the dilated kernel's extent
    inside = kh > 1
    a = _windows(g, kw, dw, ((eh - pt, eh - pb), (ew - pl, ew - pr)), inside, "rows-input")
    out = _accumulate(a, _row_taps(w, groups, transposed=True), dh, h, inside,
                      np.result_type(g, w), "rows-input-out")
    return _images(out, h, b, w_, inside)


def rows_weight_grad(x: Any, g: Any, weight_shape: tuple, padding: tuple, dilation: tuple,
                     groups: int) -> Any:
    """The VJP for the weight of a stride-1 convolution: per kernel row ``p``, the
    cotangent ``(O, n)`` times the row windows ``A_p`` transposed."""
    o, cg, kh, kw = weight_shape
    dh, dw = dilation
    b, _, ho, wo = g.shape
    inside = kh > 1
    a = _windows(x, kw, dw, padding, inside, "rows-weight")
    windows, n, step = _columns(a, groups, dh, ho, inside)
    rows = work_array(np, np, "rows-weight-cotangent", (o, ho, b, wo) if inside else
                      (o, b, ho, wo), g, zero=False)
    rows[...] = g.transpose(1, 2, 0, 3) if inside else g.transpose(1, 0, 2, 3)  # A's order
    rows = rows.reshape(groups, o // groups, n)
    out = np.empty((kh, groups, o // groups, cg * kw), dtype=np.result_type(x, g))
    for p in range(kh):
        cols = windows[:, :, p * step:p * step + n]
        if groups == 1:
            np.matmul(rows[0], cols[0].T, out=out[p, 0])
        else:
            np.matmul(rows, cols.transpose(0, 2, 1), out=out[p])
    per_group = out.reshape(kh, groups, o // groups, cg, kw).transpose(1, 2, 3, 0, 4)
    return np.ascontiguousarray(per_group).reshape(weight_shape)
