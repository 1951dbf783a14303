"""``MultiScaleDEQ``: one fixed point over states at several resolutions (Bai et al. 2020;
DeepEquilibriumNetworks.jl's ``MultiScaleDeepEquilibriumNetwork``), solved by an npdeq DEQ core
on a tuple state.
"""

from __future__ import annotations

from typing import Any, Sequence

from npdeq.autodiff import Tensor
from npdeq.core import DEQBase
from npdeq.models.common import as_input, build_deq, check_module, per_sample_shape, zero_state
from npdeq.nn import Identity, Module, ModuleList

__all__ = ["MultiScaleDEQ"]


class MultiScaleDEQ(Module):
    """A multi-scale DEQ: ``n`` states ``z_1..z_n`` of per-sample shapes ``scales``, one map.

    One application of the map (:meth:`fuse`):

    1. ``y_1 = main_layers[0](z_1, x)`` (the input enters at the first scale) and
       ``y_i = main_layers[i-1](z_i)`` for the others;
    2. ``z'_j = sum_i mapping_layers[i][j](y_i)``: entry ``[i][j]`` takes scale ``i``'s output to
       scale ``j`` (row = from, column = to, DEQ.jl's convention and its docs' matrix);
       ``None`` (or :class:`npdeq.nn.Identity`) is DEQ.jl's ``NoOpLayer``, the identity;
    3. ``z'_j = post_fuse_layer[j](z'_j)`` when ``post_fuse_layer`` is given.

    The tuple state starts at zeros and is solved as one fixed point by an npdeq DEQ core
    (``get_deq(core='indexing', ift=True, f_solver=solver, **deq_config)`` by default:
    implicit gradients). ``forward(x)`` returns the core's ``(z_out, info)``: each entry of
    ``z_out`` is a tuple of ``n`` Tensors ``(B, *scales[i])``, ``info['solution']`` the
    :class:`~npdeq.core.DEQSolution`.

    Args:
        main_layers: ``n`` Modules; the first is called as ``main_layers[0](z_1, x)`` (e.g. a
            :class:`~npdeq.models.Parallel`), the others with their state alone.
        mapping_layers: an ``n`` x ``n`` nested sequence of Modules or ``None``.
        post_fuse_layer: ``None`` or ``n`` Modules (``None`` entries: identity).
        solver: a forward solver name (``'anderson'``, ``'broyden'``, ``'fixed_point_iter'``,
            ...) or a DEQ core (from :func:`npdeq.get_deq`) to solve with.
        scales: ``n`` per-sample state shapes, each an int or a tuple of ints (``(4,)``,
            ``(16, 8, 8)``).
        **deq_config: other DEQ config keys for the default core (``f_max_iter``, ``f_tol``,
            ``b_solver``, ``jac_loss_weight``, ...); not with a core as ``solver``.

    Raises:
        ValueError: empty ``scales`` or a malformed scale; ``main_layers``,
            ``mapping_layers`` (rows or columns) or ``post_fuse_layer`` not of length ``n``;
            an unknown solver or bad DEQ setting; config keys beside a core as ``solver``.
        TypeError: a layer that is not a Module (or ``None`` where allowed); a ``solver``
            that is neither a name nor a DEQ core.

    Example:
        DeepEquilibriumNetworks.jl's example (scales 4, 3, 2, 1; batch 12), batch first:

        >>> import numpy as np, npdeq
        >>> from npdeq import nn
        >>> from npdeq.models import Parallel
        >>> def dense(i, o, bias=True):
        ...     return nn.Sequential(nn.Linear(i, o, bias=bias), nn.Tanh())
        >>> nn.manual_seed(0)
        >>> main_layers = [Parallel(npdeq.add, dense(4, 4, bias=False), dense(4, 4, bias=False)),
        ...                dense(3, 3), dense(2, 2), dense(1, 1)]
        >>> mapping_layers = [[None,        dense(4, 3), dense(4, 2), dense(4, 1)],
        ...                   [dense(3, 4), None,        dense(3, 2), dense(3, 1)],
        ...                   [dense(2, 4), dense(2, 3), None,        dense(2, 1)],
        ...                   [dense(1, 4), dense(1, 3), dense(1, 2), None]]
        >>> model = MultiScaleDEQ(main_layers, mapping_layers, None, 'broyden',
        ...                       ((4,), (3,), (2,), (1,)), f_tol=1e-6)
        >>> x = np.random.default_rng(0).random((12, 4))
        >>> z_out, info = model(x)
        >>> [tuple(z.shape) for z in z_out[-1]]
        [(12, 4), (12, 3), (12, 2), (12, 1)]
    """

    def __init__(self, main_layers: Sequence[Module], mapping_layers: Sequence[Sequence[Any]],
                 post_fuse_layer: Sequence[Any] | None, solver: str | DEQBase,
                 scales: Sequence[Any], **deq_config: Any) -> None:
        super().__init__()
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
            raise ValueError(f"MultiScaleDEQ: scales must be a non-empty sequence of per-sample "
                             f"shapes, got {scales!r}")
        self.scales = tuple(per_sample_shape(s, f"scales[{i}]") for i, s in enumerate(scales))
        n = len(self.scales)
        self.main_layers = ModuleList(
            check_module(m, f"main_layers[{i}]", "MultiScaleDEQ")
            for i, m in enumerate(_of_length(main_layers, n, "main_layers")))
        rows = _of_length(mapping_layers, n, "mapping_layers")
        self.mapping_layers = ModuleList(
            ModuleList(_layer_or_identity(m, f"mapping_layers[{i}][{j}]")
                       for j, m in enumerate(_of_length(row, n, f"mapping_layers[{i}]")))
            for i, row in enumerate(rows))
        self.post_fuse_layer = (None if post_fuse_layer is None else ModuleList(
            _layer_or_identity(m, f"post_fuse_layer[{i}]")
            for i, m in enumerate(_of_length(post_fuse_layer, n, "post_fuse_layer"))))
        if isinstance(solver, DEQBase):
            self.deq = build_deq(solver, deq_config, "MultiScaleDEQ")
        elif isinstance(solver, str):
            self.deq = build_deq(None, {"f_solver": solver, **deq_config}, "MultiScaleDEQ")
        else:
            raise TypeError(f"MultiScaleDEQ: solver must be a solver name or a DEQ core, got "
                            f"{type(solver).__name__}")

    def fuse(self, zs: Sequence[Tensor], x: Tensor) -> tuple[Tensor, ...]:
        """One application of the multi-scale map: main layers, mapping, post-fuse.

        Args:
            zs: the ``n`` states, ``(B, *scales[i])`` each.
            x: the input ``(B, ...)``.

        Returns:
            The ``n`` new states.
        """
        mains = list(self.main_layers)
        ys = [mains[0](zs[0], x)] + [layer(z) for layer, z in zip(mains[1:], zs[1:])]
        rows = [list(row) for row in self.mapping_layers]
        fused = []
        for j in range(len(ys)):
            total = rows[0][j](ys[0])
            for i in range(1, len(ys)):
                total = total + rows[i][j](ys[i])
            fused.append(total)
        if self.post_fuse_layer is not None:
            fused = [layer(z) for layer, z in zip(self.post_fuse_layer, fused)]
        return tuple(fused)

    def initial_state(self, x: Any) -> tuple[Tensor, ...]:
        """Zeros ``(B, *scales[i])`` in ``x``'s namespace, dtype and device."""
        return zero_state(as_input(x, "MultiScaleDEQ"), self.scales)

    def forward(self, x: Any) -> tuple[list, dict]:
        """Solve the multi-scale fixed point for input ``x``.

        Args:
            x: ``(B, ...)`` array or Tensor, as ``main_layers[0]`` takes it (not modified).

        Returns:
            ``(z_out, info)`` from the DEQ core; each ``z_out`` entry a tuple of ``n``
            Tensors ``(B, *scales[i])``.

        Raises:
            ValueError: a layer returning a state of another shape than its scale (at the
                first call of the map).
        """
        x = as_input(x, "MultiScaleDEQ")
        return self.deq(lambda *zs: self.fuse(zs, x), self.initial_state(x))

    def extra_repr(self) -> str:
        return f"scales={self.scales}"


def _of_length(items: Any, n: int, name: str) -> list[Any]:
    """``items`` as a list of ``n`` entries (one per scale)."""
    if isinstance(items, (str, bytes, Module)) or not isinstance(items, Sequence):
        raise TypeError(f"MultiScaleDEQ: {name} must be a sequence (one entry per scale), got "
                        f"{type(items).__name__}")
    if len(items) != n:
        raise ValueError(f"MultiScaleDEQ: {name} has {len(items)} entries for {n} scales")
    return list(items)


def _layer_or_identity(layer: Any, name: str) -> Module:
    """A Module, with ``None`` (DEQ.jl's ``NoOpLayer``) as the identity."""
    return Identity() if layer is None else check_module(layer, name, "MultiScaleDEQ")
