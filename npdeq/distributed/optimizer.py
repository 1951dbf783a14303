"""Data-parallel training state: :class:`DistributedOptimizer` (gradients averaged across
ranks before each step, Horovod's ``hvd.DistributedOptimizer``, ChainerMN's multi-node
optimizer), :func:`broadcast_parameters` and :func:`broadcast_optimizer_state` (every rank
starts from rank 0's model and optimizer state).

Missing gradients: a parameter whose ``.grad`` is ``None`` on some ranks (a branch only
some batches use) counts as a gradient of zeros there. Its presence travels in the same
flat buffer as the gradients (one flag per parameter, in its dtype), so every rank learns
which parameters have a gradient anywhere, in the same collective. The mean divides by the
number of ranks, which is the gradient of the mean loss over the global batch (that rank's
samples did not depend on the parameter). A parameter without a gradient on every rank
keeps ``.grad = None`` everywhere and is not stepped, as in one process; so every rank
updates the same parameters and nothing deadlocks or drifts apart.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.distributed.packing import dtype_key
from npdeq.distributed.signature import check_same, signature
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter
from npdeq.optim.optimizer import Optimizer

__all__ = ["DistributedOptimizer", "broadcast_parameters", "broadcast_optimizer_state"]


def _check_comm(comm: Any, owner: str) -> Any:
    if not all(hasattr(comm, a) for a in ("allreduce_arrays", "bcast_arrays", "allgather")):
        raise TypeError(f"{owner}: comm must be an npdeq.distributed.Communicator (from "
                        f"create_communicator()), got {type(comm).__name__}")
    return comm


class DistributedOptimizer(Optimizer):
    """Wrap an optimizer so that each :meth:`step` first averages every gradient across ranks.

    The wrapped optimizer's groups, state and settings are this one's (schedules can be
    attached to either), and its update rule is applied unchanged after the reduction.
    All gradients travel in one flat buffer per dtype: one collective per step.
    Before the first reduction the ranks compare their parameters' names (when given),
    shapes and dtypes, and raise :class:`~npdeq.distributed.ModelMismatchError` if they
    differ. Gradients are cast to their parameter's dtype before the reduction.

    Args:
        optimizer: an :class:`npdeq.optim.Optimizer` over the model's parameters.
        comm: the :class:`~npdeq.distributed.Communicator`.
        named_parameters: optional ``model.named_parameters()``, to name parameters in errors.
        op: ``'mean'`` (the default: the gradient of the global batch's mean loss when the
            ranks' batches are of equal size) or ``'sum'``.

    Raises:
        TypeError: ``optimizer`` is not an Optimizer or ``comm`` not a Communicator.
        ValueError: a bad ``op``.

    Example:
        >>> import numpy as np
        >>> from mpi4py import MPI
        >>> from npdeq import nn, optim
        >>> from npdeq.distributed import DistributedOptimizer, create_communicator
        >>> comm = create_communicator(MPI.COMM_SELF)
        >>> p = nn.Parameter(np.ones(2))
        >>> opt = DistributedOptimizer(optim.SGD([p], lr=0.5), comm)
        >>> p.grad = np.ones(2); opt.step(); p.data
        array([0.5, 0.5])
    """

    def __init__(self, optimizer: Optimizer, comm: Any,
                 named_parameters: Iterable[tuple[str, Parameter]] | None = None,
                 op: str = "mean") -> None:
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise TypeError(f"optimizer must be an npdeq.optim.Optimizer (not already "
                            f"distributed), got {type(optimizer).__name__}")
        if op not in ("mean", "sum"):
            raise ValueError(f"op must be 'mean' or 'sum', got {op!r}")
        self.optimizer = optimizer
        self.comm = _check_comm(comm, "DistributedOptimizer")
        self.op = op
        self._names = {id(p): name for name, p in (named_parameters or ())}
        self._checked = False

    # The wrapped optimizer's groups, state and settings, shared (not copied): a schedule or
    # load_state_dict acting on either is seen by both.
    param_groups = property(lambda self: self.optimizer.param_groups,
                            lambda self, v: setattr(self.optimizer, "param_groups", v))
    state = property(lambda self: self.optimizer.state,
                     lambda self, v: setattr(self.optimizer, "state", v))
    defaults = property(lambda self: self.optimizer.defaults,
                        lambda self, v: setattr(self.optimizer, "defaults", v))

    def _check(self, settings: dict[str, Any]) -> dict[str, Any]:
        return self.optimizer._check(settings)

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        return self.optimizer._update(p, g, state, group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def _params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def synchronize(self) -> None:
        """Replace every parameter's gradient by its mean (or sum) across ranks, in place of
        ``.grad``; a collective (see the module notes for missing gradients)."""
        params = self._params()
        if not self._checked:
            check_same(self.comm, signature(
                (self._names.get(id(p), f"parameter {i}"), p.data)
                for i, p in enumerate(params)), "the optimizer's parameters")
            self._checked = True
        grads, flags = [], {}
        for p in params:
            grad = p.grad.data if isinstance(p.grad, Tensor) else p.grad
            xp = backend.array_namespace(p.data)
            if grad is None:
                grad = xp.zeros_like(p.data)
            elif tuple(grad.shape) != tuple(p.shape):
                raise ValueError(f"the gradient of {self._names.get(id(p), 'a parameter')} "
                                 f"has shape {tuple(grad.shape)}, the parameter "
                                 f"{tuple(p.shape)}")
            elif grad.dtype != p.data.dtype:
                grad = xp.astype(grad, p.data.dtype)
            grads.append(grad)
            flags.setdefault(dtype_key(p.data.dtype), []).append(p.grad is not None)
        if not params:
            return
        # One presence vector per dtype, packed into the same buffer as that dtype's grads.
        xp = backend.array_namespace(params[0].data)
        where = backend.device(params[0].data)
        presence_dtypes = {}
        for p in params:
            presence_dtypes.setdefault(dtype_key(p.data.dtype), p.data.dtype)
        presence = [xp.asarray([1.0 if f else 0.0 for f in flags[key]],
                               dtype=presence_dtypes[key], device=where) for key in flags]
        # With op='mean' the flags are divided too: a count > 0 still means "somewhere".
        reduced = self.comm.allreduce_arrays(grads + presence, op=self.op)
        counts = {key: backend.to_numpy(r).tolist()
                  for key, r in zip(flags, reduced[len(grads):])}
        seen = {key: 0 for key in flags}
        for p, total in zip(params, reduced):
            key = dtype_key(p.data.dtype)
            present = counts[key][seen[key]] > 0
            seen[key] += 1
            p.grad = Tensor(total) if present else None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Average the gradients across ranks (:meth:`synchronize`), then step.

        Args:
            closure: as :meth:`npdeq.optim.Optimizer.step` (called first).

        Returns:
            ``closure()``'s result, or ``None``.
        """
        loss = None if closure is None else closure()
        self.synchronize()
        self.optimizer.step()
        return loss

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, size={self.comm.size})"


def _named_state(model: Any) -> list[tuple[str, Any]]:
    if isinstance(model, Module):
        return list(model.state_dict().items())
    if isinstance(model, Mapping):
        return list(model.items())
    return list(model)


def broadcast_parameters(model: Any, comm: Any, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and buffers into every other rank's model.

    Everything in ``model.state_dict()`` travels (parameters, spectral-norm vectors, any
    buffer), in one flat buffer per dtype. Ranks first compare names, shapes and dtypes.
    Call it once after building the model, before training (Horovod's
    ``hvd.broadcast_parameters``).

    Args:
        model: an :class:`npdeq.nn.Module`, or ``(name, Parameter)`` pairs / a dict of them
            (e.g. ``model.named_parameters()``): their ``.data`` is replaced.
        comm: the :class:`~npdeq.distributed.Communicator`.
        root: the rank whose values everyone gets.

    Raises:
        ModelMismatchError: on every rank, when the ranks' names, shapes or dtypes differ.
        TypeError: entries that are not Parameters (for pairs or dicts), or a bad ``comm``.

    Example:
        >>> from mpi4py import MPI
        >>> from npdeq import nn
        >>> from npdeq.distributed import broadcast_parameters, create_communicator
        >>> broadcast_parameters(nn.Linear(2, 2, seed=0), create_communicator(MPI.COMM_SELF))
    """
    comm = _check_comm(comm, "broadcast_parameters")
    entries = _named_state(model)
    if not isinstance(model, Module):
        for name, value in entries:
            if not isinstance(value, Parameter):
                raise TypeError(f"broadcast_parameters: {name!r} is a {type(value).__name__}; "
                                "pass a Module, or (name, Parameter) pairs")
    check_same(comm, signature(entries), "the model's parameters and buffers")
    arrays = [v.data if isinstance(v, Tensor) else v for _, v in entries]
    received = comm.bcast_arrays(arrays, root)
    if comm.rank == root:
        return
    if isinstance(model, Module):
        model.load_state_dict({name: a for (name, _), a in zip(entries, received)})
    else:
        for (_, param), a in zip(entries, received):
            param.data = a


def broadcast_optimizer_state(optimizer: Optimizer, comm: Any, root: int = 0) -> None:
    """Copy rank ``root``'s optimizer state (moments, step counts, settings) to every rank,
    e.g. after rank 0 alone loaded a checkpoint. The state travels pickled through the host
    (it is small next to the gradients' traffic and sent once).

    Raises:
        TypeError: ``optimizer`` is not an Optimizer, or a bad ``comm``.
        ValueError: as :meth:`npdeq.optim.Optimizer.load_state_dict` on another layout.
    """
    comm = _check_comm(comm, "broadcast_optimizer_state")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an npdeq.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    state = None
    if comm.rank == root:
        saved = optimizer.state_dict()
        state = {"param_groups": saved["param_groups"],
                 "state": {k: {n: v if isinstance(v, (int, float)) else backend.to_numpy(v)
                               for n, v in entries.items()}
                           for k, entries in saved["state"].items()}}
    state = comm.bcast(state, root)
    if comm.rank != root:
        optimizer.load_state_dict(state)
