"""Stride-1 convolution on NumPy: per image, one BLAS product per kernel row.

The input is copied once into row windows ``A`` of shape ``(B, C, kw, Hp, Wo)``,
``A[b, c, q, r, j] = xpad[b, c, r, j + q*dw]``: the ``kw`` horizontal offsets of each padded
row. Kernel row ``p`` needs the rows ``r = i + p*dh`` for the output rows ``i``, which in an
image's columns ``(r, j)`` is one contiguous block of ``Ho*Wo`` columns starting at
``p*dh*Wo``. So each image's output is ``kh`` products ``W_p @ A[b][:, p*dh*Wo:][:, :Ho*Wo]``
with ``K = C*kw`` (``W_p`` the kernel row ``p`` as an ``(O, C*kw)`` matrix), accumulated;
NumPy's ``matmul`` runs them as one BLAS call per image on operands read in place:

- the windows are copied from ``x`` in its own ``(B, C, ...)`` order (for an output as wide
  as the input, padding ``'same'``, each offset is one long flat-shifted copy); with one
  kernel row the products write the ``(B, O, Ho, Wo)`` result directly, with several they
  run pixel-major (``A_p^T @ W_p^T``, the orientation OpenBLAS runs fastest here) into a
  small block that accumulates in cache and is transposed into the result once;
- no output is computed and dropped, where the per-offset products on a padded grid
  (:mod:`.conv_grid`) compute ``Hg*Wg`` outputs per image for ``Ho*Wo`` (27% more at
  16x16 with a 3x3 kernel, 56% at 8x8);
- ``kh`` products with ``K = C*kw`` instead of ``kh*kw`` with ``K = C``: fewer, larger
  products run closer to the BLAS peak, and ``kh - 1`` accumulations instead of
  ``kh*kw - 1``; the copy is ``kw`` times the input, against ``kh*kw`` for im2col.

The input VJP of a stride-1 convolution is the stride-1 convolution of the cotangent with
the flipped, channel-transposed kernel and padding ``d*(k-1) - p`` (negative: a crop), so
it runs on the same products; the weight VJP is ``kh`` products per image of the same row
windows with the cotangent (``(K, pixels) @ (pixels, O)``), summed over the batch. Images go
a block at a time (about 1 MiB of windows), so a block's windows are still in cache when its
products read them, and the
bias is added to a block of the result while it is. Work arrays come from
:mod:`.workspace`; results are fresh arrays.

NumPy only (this is where NumPy's own BLAS calls are taken); the portable kernels of
:mod:`.conv_grid` are the reference it is tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npdeq.backend.workspace import work_array

__all__: list[str] = []  # package-internal kernels, dispatched by npdeq.backend.convolution


def _input_rows(h: int, padding: tuple) -> tuple[int, int]:
    """The rows ``[r0, r1)`` of the padded image that hold input rows (``padding[0]`` may
    be negative: a crop)."""
    (pt, pb) = padding[0]
    r0 = max(0, pt)
    return r0, max(min(h + pt + pb, h + pt), r0)


def _windows(x: Any, kw: int, dw: int, padding: tuple, slot: str) -> Any:
    """The ``(B, C, kw, R, Wo)`` row windows of ``x`` ``(B, C, H, W)`` zero-padded by
    ``padding`` ``((top, bottom), (left, right))`` (a negative amount crops), for the ``R``
    padded rows that hold input rows (the zero rows are left out: the products skip them)."""
    b, c, h, w = x.shape
    (pt, pb), (pl, pr) = padding
    wo = w + pl + pr - dw * (kw - 1)
    r0, r1 = _input_rows(h, padding)
    a = work_array(np, np, slot, (b, c, kw, r1 - r0, wo), x, zero=False)
    if r1 == r0:
        return a
    src = x[:, :, r0 - pt:r1 - pt]
    size = src.itemsize
    if wo != w or src.strides[3] != size or src.strides[2] != w * size:
        for q in range(kw):
            j0 = min(max(0, pl - q * dw), wo)  # columns of A holding input columns: [j0, j1)
            j1 = max(min(wo, w + pl - q * dw), j0)
            dest = a[:, :, q]
            dest[..., :j0] = 0
            dest[..., j1:] = 0
            dest[..., j0:j1] = src[..., j0 + q * dw - pl:j1 + q * dw - pl]
        return a
    # The output is as wide as the input (padding 'same') and the rows of x are contiguous:
    # each offset is one flat shift along an image's rows, a long contiguous copy; the few
    # columns that the shift carries across a row's edge are zeroed after.
    span = (r1 - r0) * w
    flat = src.reshape(b, c, span)
    for q in range(kw):
        shift = q * dw - pl
        dest = a[:, :, q]
        line = dest.reshape(b, c, span)
        lo = min(max(0, -shift), span)  # the columns the shifted copy fills: [lo, hi)
        hi = max(min(span, span - shift), lo)
        line[:, :, lo:hi] = flat[:, :, lo + shift:hi + shift]
        line[:, :, :lo] = 0
        line[:, :, hi:] = 0
        if shift < 0:
            dest[..., :min(-shift, w)] = 0
        elif shift > 0:
            dest[..., max(w - shift, 0):] = 0
    return a


def _spans(kh: int, dh: int, ho: int, wo: int, rows: tuple) -> list:
    """Per kernel row ``p`` that meets input rows: ``(p, [c0, c1), start)``, the output
    columns ``[c0, c1)`` whose rows read an input row through ``p`` and the first window
    column they read; a row covering every output comes first."""
    r0, r1 = rows
    spans = []
    for p in range(kh):
        i0, i1 = max(0, r0 - p * dh), min(ho, r1 - p * dh)
        if i1 > i0:
            spans.append((p, i0 * wo, i1 * wo, (i0 + p * dh - r0) * wo))
    return sorted(spans, key=lambda span: span[2] - span[1] != ho * wo)


def row_taps(w: Any, groups: int, transposed: bool) -> Any:
    """Kernel rows as ``(kh, G, M, K)`` matrices: ``M = O/G`` outputs by ``K = (C/G)*kw``
    (``q`` fastest), matching the row windows' rows; ``transposed``: those of the flipped
    kernel with input and output channels swapped (the input VJP)."""
    o, cg, kh, kw = w.shape
    per_group = w.reshape(groups, o // groups, cg, kh, kw)
    if transposed:
        rows = per_group[:, :, :, ::-1, ::-1].transpose(3, 0, 2, 1, 4)  # (kh, G, C/G, O/G, kw)
    else:
        rows = per_group.transpose(3, 0, 1, 2, 4)  # (kh, G, O/G, C/G, kw)
    rows = np.ascontiguousarray(rows)
    return rows.reshape(rows.shape[:3] + (rows.shape[3] * kw,))


# Images per block: the windows of one block (written, then read by its products) should
# stay in a core's L2 cache; one call over the whole batch streams them through memory.
BLOCK_BYTES = 2**20


def block_size(x: Any, per_image: int) -> int:
    """How many images' windows (``per_image`` elements each) to build and use at a time."""
    return max(1, min(x.shape[0], BLOCK_BYTES // max(1, per_image * x.itemsize)))


def _convolve(x: Any, kw: int, dw: int, padding: tuple, taps: Any, dh: int, ho: int,
              dtype: Any, slot: str, bias: Any = None) -> Any:
    """``sum_p taps[p] @ A_p (+ bias)`` per image as a fresh ``(B, G*M, Ho, Wo)`` array,
    ``A`` the row windows of ``x`` (built a block of images at a time) and ``A_p`` the
    window columns kernel row ``p`` reads (the output rows that would read a zero padding
    row through ``p`` are left out of its product)."""
    b, c, h, w = x.shape
    kh, groups, m, k = taps.shape
    pl, pr = padding[1]
    wo = w + pl + pr - dw * (kw - 1)
    rows = _input_rows(h, padding)
    spans = _spans(kh, dh, ho, wo, rows)
    out = np.empty((b, groups, m, ho * wo), dtype=dtype)
    step = block_size(x, c * kw * (rows[1] - rows[0]) * wo)
    per_channel = None if bias is None else bias.reshape(groups, m, 1)
    products = _pixel_major if len(spans) > 1 else _channel_major
    for start in range(0, b, step):
        a = _windows(x[start:start + step], kw, dw, padding, slot)
        dest = out[start:start + step]
        products(a.reshape(a.shape[0], groups, k, -1), taps, spans, dest, slot)
        if per_channel is not None:  # while the block is in cache
            np.add(dest, per_channel, out=dest)
    return out.reshape(b, groups * m, ho, wo)


def _channel_major(windows: Any, taps: Any, spans: list, dest: Any, slot: str) -> None:
    """``dest = sum_p taps[p] @ A_p`` as ``(M, pixels)`` products written straight into
    ``dest`` ``(nb, G, M, pixels)``; for one kernel row, where nothing accumulates."""
    n = dest.shape[-1]
    covered = bool(spans) and spans[0][2] - spans[0][1] == n
    term = (work_array(np, np, slot + "-term", dest.shape, windows, zero=False,
                       dtype=dest.dtype) if len(spans) > 1 or not covered else None)
    if not covered:
        dest[...] = 0
    for index, (p, c0, c1, s) in enumerate(spans):
        cols = windows[..., s:s + c1 - c0]
        if index == 0 and covered:
            np.matmul(taps[p], cols, out=dest)
            continue
        part, target = term[..., :c1 - c0], dest[..., c0:c1]
        np.matmul(taps[p], cols, out=part)
        np.add(target, part, out=target)


def _pixel_major(windows: Any, taps: Any, spans: list, dest: Any, slot: str) -> None:
    """``dest = sum_p taps[p] @ A_p`` as ``A_p^T @ taps[p]^T`` products: ``(pixels, M)``,
    accumulated in a small block and transposed into ``dest`` once. Both operands are
    transposed views BLAS reads in place; with several kernel rows this is about a fifth
    faster than :func:`_channel_major` (measured with OpenBLAS, B=32, C=32, 16x16, 3x3:
    the accumulation stays in cache, and OpenBLAS prefers the many-rows orientation)."""
    nb, groups, m, n = dest.shape
    shape = (nb, groups, n, m)
    covered = bool(spans) and spans[0][2] - spans[0][1] == n
    acc = work_array(np, np, slot + "-acc", shape, windows, zero=not covered,
                     dtype=dest.dtype)
    term = work_array(np, np, slot + "-term", shape, windows, zero=False, dtype=dest.dtype)
    taps_t = taps.swapaxes(-1, -2)  # (kh, G, K, M)
    for index, (p, c0, c1, s) in enumerate(spans):
        cols_t = windows[..., s:s + c1 - c0].swapaxes(-1, -2)  # (nb, G, c1 - c0, K)
        if index == 0 and covered:
            np.matmul(cols_t, taps_t[p], out=acc)
            continue
        part, target = term[..., :c1 - c0, :], acc[..., c0:c1, :]
        np.matmul(cols_t, taps_t[p], out=part)
        np.add(target, part, out=target)
    dest[...] = acc.swapaxes(-1, -2)


def rows_forward(x: Any, w: Any, padding: tuple, dilation: tuple, groups: int,
                 bias: Any = None) -> Any:
    """Stride-1 convolution of NumPy arrays (arguments as
    :func:`npdeq.backend.convolution.conv_forward`)."""
    kh, kw = w.shape[2:]
    dh, dw = dilation
    ho = x.shape[2] + padding[0][0] + padding[0][1] - dh * (kh - 1)
    dtype = np.result_type(x, w) if bias is None else np.result_type(x, w, bias)
    return _convolve(x, kw, dw, padding, row_taps(w, groups, transposed=False), dh, ho,
                     dtype, "rows-forward", bias)


def rows_input_grad(g: Any, w: Any, image_shape: tuple, padding: tuple, dilation: tuple,
                    groups: int) -> Any:
    """The VJP for the input of a stride-1 convolution: the convolution of ``g`` with the
    flipped, channel-transposed kernel, padded by ``d*(k-1) - p`` on each side."""
    h = image_shape[2]
    kh, kw = w.shape[2:]
    dh, dw = dilation
    (pt, pb), (pl, pr) = padding
    eh, ew = dh * (kh - 1), dw * (kw - 1)  # the dilated kernel's extent
    return _convolve(g, kw, dw, ((eh - pt, eh - pb), (ew - pl, ew - pr)),
                     row_taps(w, groups, transposed=True), dh, h, np.result_type(g, w),
                     "rows-input")


def rows_weight_grad(x: Any, g: Any, weight_shape: tuple, padding: tuple, dilation: tuple,
                     groups: int) -> Any:
    """The VJP for the weight of a stride-1 convolution: per kernel row ``p`` and image, the
    row windows ``A_p`` ``(K, Ho*Wo)`` times the cotangent ``(O, Ho*Wo)`` transposed, summed
    over images."""
    o, cg, kh, kw = weight_shape
    dh, dw = dilation
    b, c, h, _ = x.shape
    _, _, ho, wo = g.shape
    rows = _input_rows(h, padding)
    spans = _spans(kh, dh, ho, wo, rows)
    cotangents = g.reshape(b, groups, o // groups, ho * wo)
    dtype = np.result_type(x, g)
    # Products as (K, pixels) @ (pixels, O/G): OpenBLAS runs this orientation about a
    # third faster than (O/G, pixels) @ (pixels, K) (see _convolve).
    out = np.zeros((kh, groups, cg * kw, o // groups), dtype=dtype)
    step = block_size(x, c * kw * (rows[1] - rows[0]) * wo)
    for start in range(0, b, step):
        a = _windows(x[start:start + step], kw, dw, padding, "rows-weight")
        windows = a.reshape(a.shape[0], groups, cg * kw, -1)
        per_image = work_array(np, np, "rows-weight-images",
                               (a.shape[0], groups, cg * kw, o // groups), a, zero=False,
                               dtype=dtype)
        for p, c0, c1, s in spans:
            cols = windows[..., s:s + c1 - c0]
            np.matmul(cols, cotangents[start:start + step, ..., c0:c1].swapaxes(-1, -2),
                      out=per_image)
            out[p] += np.sum(per_image, axis=0)
    per_group = out.reshape(kh, groups, cg, kw, o // groups).transpose(1, 4, 2, 0, 3)
    return np.ascontiguousarray(per_group).reshape(weight_shape)
