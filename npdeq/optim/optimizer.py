"""The optimizer base class: parameter groups, checked settings and gradients, ``zero_grad``
and the per-parameter ``state``.

An optimizer updates each parameter's ``.data`` from its ``.grad`` in the parameter's own
namespace, on its device and **in its dtype**: a gradient of another floating dtype (a
float64 gradient of a float32 parameter, say) is cast to the parameter's dtype before the
update, and state buffers (momentum, Adam's moments) are kept in the parameter's dtype, so a
step never changes a parameter's dtype. ``.data`` is replaced, never written in place, so
arrays a recorded graph still holds are not changed under it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from npdeq import backend
from npdeq.autodiff.tensor import Tensor
from npdeq.backend.checks import check_bool, check_real
from npdeq.nn.parameter import Parameter

__all__ = ["Optimizer"]


def _is_array(obj: Any) -> bool:
    try:
        backend.array_namespace(obj)
    except TypeError:
        return False
    return True


def _checked_grad(param: Parameter, group: int, position: int) -> Any:
    """``param.grad``'s array, checked against the parameter it updates."""
    grad = param.grad
    g = grad.data if isinstance(grad, Tensor) else grad
    where = f"parameter {position} of group {group} (shape {tuple(param.shape)})"
    if not _is_array(g):
        raise TypeError(f"the gradient of {where} must be an array or Tensor, got "
                        f"{type(grad).__name__}")
    if tuple(g.shape) != tuple(param.shape):
        raise ValueError(f"the gradient of {where} has shape {tuple(g.shape)}; it must have "
                         "the parameter's shape")
    p = param.data
    xp = backend.array_namespace(p)
    if backend.array_namespace(g) is not xp or backend.device(g) != backend.device(p):
        given = backend.namespace_name(backend.array_namespace(g))
        raise TypeError(f"the gradient of {where} is a {given} array on {backend.device(g)}, "
                        f"the parameter a "
                        f"{backend.namespace_name(xp)} array on {backend.device(p)}")
    if g.dtype != p.dtype:
        # The update is computed in the parameter's dtype: a step never changes it.
        if xp.isdtype(g.dtype, "complex floating") and not xp.isdtype(p.dtype,
                                                                       "complex floating"):
            raise TypeError(f"the gradient of {where} is complex ({g.dtype}), the parameter "
                            f"real ({p.dtype}); casting would drop the imaginary part")
        g = xp.astype(g, p.dtype)
    return g


def _follow(state: dict[str, Any], p: Any) -> None:
    """Move the state's arrays (momentum, moments) to ``p``'s namespace, device and dtype.

    ``Module.to`` moves parameters but cannot reach the optimizer: without this, a step after
    a move mixes devices (an error) or, after ``to(dtype='float32')``, float64 moments turn
    the parameters back into float64.
    """
    xp, where, dtype = backend.array_namespace(p), backend.device(p), p.dtype
    for key, value in state.items():
        if isinstance(value, (int, float)):
            continue
        if (backend.array_namespace(value) is not xp or value.dtype != dtype
                or backend.device(value) != where):
            state[key] = backend.move_array(value, xp, where, dtype)


class Optimizer:
    """Base class: parameter groups, ``zero_grad`` and the per-parameter ``state``.

    Args:
        params: an iterable of Parameters, or of dicts ``{'params': [...], **settings}``
            (parameter groups; missing settings take ``defaults``).
        defaults: the optimizer's settings.

    Every numeric setting is checked when a group is added and again at each
    :meth:`step` (a rate set to NaN by hand is refused then): a real number (NumPy scalars
    accepted), finite and in its range, else ``ValueError`` naming it. NaN fails every
    check, so no setting can silently turn the parameters into NaN.

    Raises:
        TypeError: an entry that is not a Parameter (a plain Tensor or array included).
        ValueError: no parameters, a parameter given twice, or a bad setting.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        if not isinstance(params, (Tensor, dict)) and _is_array(params):
            # Iterating an array would report the type of its first element instead.
            raise TypeError(f"optimizer parameters must be npdeq.nn.Parameter, got an array "
                            f"({type(params).__name__}); wrap trainable arrays in Parameter")
        entries = list(params) if not isinstance(params, (Tensor, dict)) else [params]
        if not entries:
            raise ValueError("the optimizer got an empty parameter list")
        if all(isinstance(entry, dict) for entry in entries):
            groups = entries
        else:
            groups = [{"params": entries}]
        seen: set[int] = set()
        for group in groups:
            self.add_param_group(group, seen)

    def add_param_group(self, group: dict[str, Any], seen: set[int] | None = None) -> None:
        """Add a group ``{'params': [...], **settings}``.

        Raises:
            TypeError, ValueError: as the constructor.
        """
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown optimizer settings {sorted(unknown)}; valid: "
                             f"{sorted(self.defaults)}")
        if seen is None:
            seen = {id(p) for g in self.param_groups for p in g["params"]}
        # A position alone is ambiguous once there are several groups.
        where = f" of parameter group {len(self.param_groups)}"
        for index, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(f"optimizer parameters must be npdeq.nn.Parameter, got "
                                f"{type(param).__name__} at position {index}{where} (wrap "
                                "trainable arrays in Parameter)")
            if id(param) in seen:
                raise ValueError(f"parameter at position {index}{where} (shape {param.shape}) "
                                 "is given to the optimizer twice")
            seen.add(id(param))
        settings = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        settings = self._check(settings)
        self.param_groups.append({"params": params, **settings})

    def _check(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check ``settings`` (a group's); return them with numbers as Python floats.

        Subclasses extend it. Raises ValueError naming the setting and its value.
        """
        settings["lr"] = check_real("lr", settings.get("lr"), 0.0, owner=type(self).__name__)
        if "weight_decay" in settings:
            settings["weight_decay"] = check_real("weight_decay", settings["weight_decay"], 0.0,
                                                  owner=type(self).__name__)
        return settings

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear ``.grad`` of every parameter (PyTorch's signature).

        Args:
            set_to_none: set ``.grad`` to ``None`` (the default, as PyTorch 2) instead of a
                Tensor of zeros.
        """
        set_to_none = check_bool("set_to_none", set_to_none, owner="zero_grad")
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none or param.grad is None:
                    param.grad = None
                else:
                    data = param.grad.data if isinstance(param.grad, Tensor) else param.grad
                    param.grad = Tensor(backend.array_namespace(data).zeros_like(data))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient.

        Args:
            closure: optional, as PyTorch: a function that recomputes the loss (and its
                gradients); it is called first and its result returned.

        Returns:
            ``closure()``'s result, or ``None``.

        Everything is checked before any parameter changes, so a step never half-applies:
        each group's settings (a learning rate a schedule or the user set to NaN is
        refused), and each gradient, which must be an array or Tensor of its parameter's
        shape, namespace and device.

        Raises:
            ValueError: a bad setting, or a gradient of another shape (the parameter is
                named by its group and position, with both shapes).
            TypeError: a gradient that is not an array, of another namespace or device, or
                complex for a real parameter. A gradient of another real dtype is cast to
                the parameter's dtype (the parameter keeps its dtype).
        """
        loss = None if closure is None else closure()
        work = []
        for index, group in enumerate(self.param_groups):
            settings = self._check({k: v for k, v in group.items() if k != "params"})
            for position, param in enumerate(group["params"]):
                if param.grad is not None:
                    work.append((param, _checked_grad(param, index, position), settings))
        for param, grad, settings in work:
            state = self.state.setdefault(id(param), {})
            if state:
                _follow(state, param.data)
            param.data = self._update(param.data, grad, state, settings)
        return loss

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> Any:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout, to checkpoint and restore it.

        Returns:
            ``{'state': {index: {name: array or number}}, 'param_groups': [{**settings,
            'params': [index, ...]}]}``: parameters are numbered in group order, as PyTorch
            numbers them. The arrays are the optimizer's own; a step replaces them and never
            writes into them, so the returned dict stays valid.

        Example:
            >>> import numpy as np
            >>> from npdeq import nn, optim
            >>> p = nn.Parameter(np.ones(2))
            >>> opt = optim.SGD([p], lr=0.1, momentum=0.9)
            >>> p.grad = np.ones(2); opt.step()
            >>> sd = opt.state_dict()
            >>> sorted(sd['state'][0]), sd['param_groups'][0]['params']
            (['momentum_buffer'], [0])
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for param in group["params"]:
                index[id(param)] = len(index)
                ids.append(index[id(param)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[key]: dict(value) for key, value in self.state.items() if key in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (this optimizer's or an equal one's).

        The groups must hold as many parameters as the saved ones; settings are checked as
        when a group is added, and state arrays are moved to their parameter's namespace,
        device and dtype. Nothing changes unless everything fits.

        Raises:
            ValueError: another number of groups or of parameters in a group, a state entry
                for an unknown parameter, a state array of another shape than its parameter,
                or a bad setting.
            TypeError: ``state_dict`` is not such a dict.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise TypeError("load_state_dict: expected a dict with keys 'state' and "
                            "'param_groups' (from Optimizer.state_dict())")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state has {len(saved_groups)} parameter "
                             f"groups, this optimizer {len(self.param_groups)}")
        params, groups = {}, []
        for number, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            ids = list(saved.get("params", ()))
            if len(ids) != len(group["params"]):
                raise ValueError(f"load_state_dict: parameter group {number} has "
                                 f"{len(ids)} parameters in the state, "
                                 f"{len(group['params'])} here")
            params.update(zip(ids, group["params"]))
            settings = {k: v for k, v in saved.items() if k != "params"}
            unknown = set(settings) - set(self.defaults) - {"initial_lr"}
            if unknown:
                raise ValueError(f"load_state_dict: unknown settings {sorted(unknown)} in "
                                 f"parameter group {number}")
            extra = {k: settings.pop(k) for k in ("initial_lr",) if k in settings}
            groups.append({**self._check({**self.defaults, **settings}), **extra})
        state = {}
        for key, entries in dict(state_dict["state"]).items():
            if key not in params:
                raise ValueError(f"load_state_dict: state for parameter {key!r}, which no "
                                 "group holds")
            param = params[key]
            entries = dict(entries)
            for name, value in entries.items():
                if not isinstance(value, (int, float)) and \
                        tuple(getattr(value, "shape", ())) != tuple(param.shape):
                    raise ValueError(f"load_state_dict: state {name!r} of parameter {key} has "
                                     f"shape {tuple(getattr(value, 'shape', ()))}, the "
                                     f"parameter {tuple(param.shape)}")
            _follow(entries, param.data)
            state[id(param)] = entries
        for group, settings in zip(self.param_groups, groups):
            group.update(settings)
        self.state = state

    def __repr__(self) -> str:
        groups = ", ".join(f"group {i}: {len(g['params'])} params, "
                           + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
                           for i, g in enumerate(self.param_groups))
        return f"{type(self).__name__}({groups})"
