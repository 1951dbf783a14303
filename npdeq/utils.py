"""TorchDEQ's ``torchdeq.utils`` for npdeq: ``mixed_init``, ``mem_gc`` and ``add_deq_args``.

- :func:`mixed_init`: the "mixed" initial state of path-independent DEQs (half the entries
  standard normal, the rest zero), created in any namespace and on any device;
- :func:`mem_gc`: gradient checkpointing on the tape. The call keeps one node (its inputs
  and the tensors the function closes over), not the function's inner graph; the backward
  recomputes the function with recording and pulls the cotangent through it
  (:func:`~npdeq.grad.recompute.rerun_in_backward`);
- :func:`add_deq_args`: :func:`npdeq.core.add_deq_args`, here too because TorchDEQ's docs
  and the deq-zoo scripts import it from ``utils``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from npdeq import backend
from npdeq.autodiff import Tensor, is_grad_enabled, no_grad
from npdeq.backend import Array
from npdeq.backend.checks import check_int
from npdeq.core import add_deq_args
from npdeq.grad.externals import outside_tensors, tape_clock
from npdeq.grad.recompute import record, rerun_in_backward
from npdeq.grad.state import pack_tensors, unpack_tensors
from npdeq.nn import Module, init

__all__ = ["mixed_init", "mem_gc", "add_deq_args"]


def _check_shape(z_shape: Any) -> tuple[int, ...]:
    if not isinstance(z_shape, bool):
        try:
            z_shape = (check_int("z_shape", z_shape),)  # one dimension, checked below
        except ValueError:
            pass
    try:
        shape = tuple(z_shape)
    except TypeError:
        raise TypeError(f"z_shape must be a tuple of ints, got {z_shape!r}") from None
    try:
        return tuple(check_int("z_shape", s, 0) for s in shape)
    except ValueError:
        raise ValueError(f"z_shape must hold non-negative ints, got {z_shape!r}") from None


def mixed_init(z_shape: int | Sequence[int], device: Any = None, *, xp: Any = None,
               dtype: Any = None, like: Any = None, seed: Any = None) -> Array:
    """TorchDEQ's mixed initialisation: standard normal entries where a fair coin says so,
    zeros elsewhere (proposed for path independence, Anil et al. 2022).

    Args:
        z_shape: the shape, e.g. ``(B, C, H, W)`` (ints, NumPy integers accepted).
        device: the device (a device object); without ``xp`` and ``like`` anything
            ``Module.to`` accepts (``'cpu'``, ``'cuda'``, a device) picks namespace and device.
        xp: the namespace (default NumPy, or ``like``'s).
        dtype: a floating dtype of ``xp`` or its name (default ``like``'s, or
            :func:`npdeq.get_default_dtype`, float64 unless set).
        like: an array or Tensor whose namespace, device and dtype to take by default.
        seed: an int or ``numpy.random.Generator``; ``None`` draws from npdeq's default
            generator (reset by :func:`npdeq.nn.init.manual_seed`, like ``torch.manual_seed``).

    Returns:
        An array of ``z_shape`` in the chosen namespace, device and dtype.

    Raises:
        TypeError: a ``z_shape`` that is not a shape, or an integer ``dtype``.
        ValueError: a negative dimension.

    Example:
        >>> z0 = mixed_init((2, 8), seed=0)          # (B, d)
        >>> z0.shape, 0 < int((z0 == 0).sum()) < 16
        ((2, 8), True)
    """
    shape = _check_shape(z_shape)
    if like is not None:
        data = like.data if isinstance(like, Tensor) else like
        xp = backend.array_namespace(data) if xp is None else xp
        device = backend.device(data) if device is None else device
        dtype = data.dtype if dtype is None else dtype
    elif xp is None and device is not None:
        xp, device = backend.resolve_target(device)
    proto = init.new_array((), xp, dtype, device)
    xp = backend.array_namespace(proto)
    if not xp.isdtype(proto.dtype, "real floating"):
        raise TypeError(f"mixed_init needs a real floating dtype, got {proto.dtype}")
    rng = init.generator(seed)  # one stream for both draws: values and mask independent
    normal = backend.random_normal(shape, like=proto, seed=rng)
    keep = backend.random_uniform(shape, like=proto, seed=rng) < 0.5
    return xp.where(keep, normal, xp.zeros_like(normal))


# -- gradient checkpointing -----------------------------------------------------------------


def _split_outputs(out: Any) -> tuple[list[Any], list[int]]:
    """``func``'s result as a list, and the positions of its floating-point Tensors."""
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    positions = []
    for i, o in enumerate(items):
        if isinstance(o, Tensor):
            if o.xp.isdtype(o.dtype, "real floating"):
                positions.append(i)
        elif not isinstance(out, (tuple, list)):
            raise TypeError(f"mem_gc: func returned a {type(o).__name__}; expected a Tensor "
                            "or a tuple/list (write func with npdeq ops)")
    dtypes = {str(items[i].dtype) for i in positions}
    if len(dtypes) > 1:
        raise ValueError(f"mem_gc: func's floating outputs have different dtypes "
                         f"{sorted(dtypes)}; cast them to one dtype")
    return items, positions


def _floating(func: Callable[..., Any]) -> Callable[..., Tensor]:
    """``func`` returning its floating outputs packed into one Tensor (with tape ops, so
    the backward's recomputation packs the same way): the output itself, or all flattened
    and joined."""
    def packed(*args: Any) -> Tensor:
        items, positions = _split_outputs(func(*args))
        return pack_tensors([items[i] for i in positions], batch=False)
    return packed


def _check_params(params: Any) -> list[Tensor]:
    if isinstance(params, Module):
        return list(params.parameters())
    if isinstance(params, Tensor) or not isinstance(params, (tuple, list)):
        raise TypeError(f"params must be a Module or a list/tuple of Tensors, got "
                        f"{type(params).__name__}")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] is a {type(p).__name__}, not a Tensor")
    return [p for p in params if p.requires_grad]


def mem_gc(func: Callable[..., Any], in_args: Sequence[Any] | Tensor | None = None, *,
           params: Module | Sequence[Tensor] | None = None) -> Any:
    """Call ``func(*in_args)`` keeping O(1) graph: gradient checkpointing (TorchDEQ's).

    Only one node is recorded, holding ``func``, ``in_args`` and the tensors ``func``
    depends on; none of its intermediate results. The backward calls ``func`` again with
    recording and back-propagates the cotangent through that fresh graph, which is released
    afterwards. Gradients reach the Tensors of ``in_args`` and every tensor ``func`` closes
    over (parameters, an injection computed upstream), as in the plain call; gradients of
    gradients (``create_graph=True``) work too.

    Which tensors ``func`` closes over is found by recording the forward once and walking
    its graph (:mod:`npdeq.grad.externals`); that graph is dropped before ``mem_gc``
    returns, so the peak of the call itself is the plain call's. Pass ``params`` to run the
    forward unrecorded instead: then only ``in_args`` and ``params`` get gradients.

    ``func`` must compute the same thing when called again (no fresh randomness, no state
    changed between forward and backward), as for any recomputation.

    Args:
        func: a function (or Module) of Tensors returning a Tensor or a tuple/list whose
            floating-point Tensors (one dtype) are differentiated; other entries pass
            through.
        in_args: the positional arguments, a tuple/list (a lone Tensor is one argument);
            ``None`` for none.
        params: a Module or Tensors: skip the discovery and differentiate with respect to
            these (and ``in_args``) only.

    Returns:
        What ``func`` returns, of the same structure; its floating Tensors carry gradients.

    Raises:
        TypeError: ``in_args``/``params`` of the wrong kind, or ``func`` returning something
            other than Tensors.
        ValueError: floating outputs of different dtypes.

    Example:
        >>> import numpy as np, npdeq
        >>> W = npdeq.tensor(0.1 * np.ones((3, 3)), requires_grad=True)
        >>> block = lambda z: npdeq.tanh(npdeq.tanh(z @ W) @ W)
        >>> z = npdeq.tensor(np.ones((2, 3)), requires_grad=True)   # (B, d)
        >>> out = mem_gc(block, (z,))
        >>> from npdeq.autodiff.graph import parents
        >>> [p.shape for p in parents(out)]          # one node, on z and W: no inner graph
        [(2, 3), (3, 3)]
        >>> out.sum().backward(); W.grad.shape
        (3, 3)
    """
    if in_args is None:
        in_args = ()
    elif isinstance(in_args, Tensor):
        in_args = (in_args,)
    elif not isinstance(in_args, (tuple, list)):
        raise TypeError(f"in_args must be a tuple or list of arguments (or None), got "
                        f"{type(in_args).__name__}")
    in_args = tuple(in_args)
    fixed = None if params is None else _check_params(params)
    if not is_grad_enabled():
        return func(*in_args)
    if fixed is not None:
        with no_grad():
            out = func(*in_args)
        outside = fixed
    else:
        clock = tape_clock()
        # Recorded from fresh leaves, so the walk reports only what func closes over.
        discovery = record(func, in_args)
        out = discovery.output
        items, positions = _split_outputs(out)
        inside = [a for a in discovery.leaves if isinstance(a, Tensor)]
        outside = outside_tensors([items[i] for i in positions], inside, clock)
        del discovery
    items, positions = _split_outputs(out)
    items = [o.detach() if isinstance(o, Tensor) else o for o in items]  # drop the graph
    container = type(out) if isinstance(out, (tuple, list)) else None
    del out  # and with it the recorded graph of the discovery pass
    if positions:
        floating = [items[i] for i in positions]
        with no_grad():
            value = pack_tensors(floating, batch=False).data
        result = rerun_in_backward(_floating(func), in_args, outside, value)
        shapes = [tuple(t.shape) for t in floating]
        for i, part in zip(positions, unpack_tensors(result, shapes, batch=False)):
            items[i] = part
    return _restore(items, container)


def _restore(items: list[Any], container: type | None) -> Any:
    """``items`` in the container ``func`` returned (a namedtuple stays one)."""
    if container is None:
        return items[0]
    if issubclass(container, list):
        return items
    return container(*items) if hasattr(container, "_fields") else tuple(items)
