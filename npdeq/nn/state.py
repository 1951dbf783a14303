"""What a :class:`~npdeq.nn.Module` holds, copied or moved: state dicts and ``to``.

Free functions over a module's registries (``_parameters``, ``_buffers``) and traversal
(``named_modules``); the :class:`~npdeq.nn.Module` methods of the same names call them and
carry their documentation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Mapping

from npdeq import backend
from npdeq.backend import Array
from npdeq.autodiff.tensor import Tensor

if TYPE_CHECKING:
    from npdeq.nn.module import Module

__all__ = ["state_dict", "load_state_dict", "to"]


def _kind(xp: Any, dtype: Any) -> str:
    for kind in ("bool", "integral", "real floating", "complex floating"):
        if xp.isdtype(dtype, kind):
            return kind
    return "other"


def _convert(name: str, value: Any, current: Any) -> Any:
    """A copy of ``value`` in ``current``'s namespace, device and dtype, or an error when
    the cast could lose what the value means (see ``load_state_dict``)."""
    xp = backend.array_namespace(current)
    array = backend.move_array(value, xp, backend.device(current))
    source, target = array.dtype, current.dtype
    if source != target:
        given, wanted = _kind(xp, source), _kind(xp, target)
        allowed = {"real floating": ("integral", "real floating"),
                   "complex floating": ("integral", "real floating", "complex floating"),
                   "integral": ("integral", "real floating"), "bool": ()}
        if given not in allowed.get(wanted, ()):
            raise TypeError(f"load_state_dict: {name!r} has dtype {source}, the model expects "
                            f"{target}; a {given} value cannot be cast to {wanted} without "
                            "loss")
        if wanted == "integral" and array.size:
            info = xp.iinfo(target)
            # Compared on the host: a Python bound outside the source dtype's range is an
            # error in some namespaces. NaN and infinities fail the range test.
            low, high = backend.to_scalar(xp.min(array)), backend.to_scalar(xp.max(array))
            fits = info.min <= low and high <= info.max
            if fits and given == "real floating":
                fits = backend.to_scalar(xp.all(xp.floor(array) == array))
            if not fits:
                raise ValueError(f"load_state_dict: {name!r} has dtype {source}, the model "
                                 f"expects {target}, and its values are not all whole numbers "
                                 f"in [{info.min}, {info.max}]: casting would change them")
        if given == wanted == "real floating" and array.size:
            finite = xp.where(xp.isfinite(array), xp.abs(array), xp.zeros_like(array))
            if backend.to_scalar(xp.max(finite)) > float(xp.finfo(target).max):
                raise ValueError(f"load_state_dict: {name!r} has dtype {source} with values "
                                 f"beyond the range of {target}, which the model expects: "
                                 "casting would turn them into infinities")
        array = xp.astype(array, target)
    # A copy, as documented and as PyTorch: move_array returns an array already in place as
    # it is (and array_api_strict's asarray shares NumPy's memory), which would tie the model
    # to the source, e.g. to another model's parameters.
    return xp.asarray(array, copy=True)


def state_dict(module: Module) -> "OrderedDict[str, Array]":
    """:meth:`Module.state_dict <npdeq.nn.Module.state_dict>`: parameters, then buffers."""
    state: OrderedDict[str, Any] = OrderedDict()
    for name, param in module.named_parameters():
        state[name] = param.data
    for name, array in module.named_buffers():
        state[name] = array
    return state


def _targets(module: Module) -> "OrderedDict[str, tuple[Module, str, Any]]":
    """Dotted name -> (owning module, attribute, current array) of every entry to load."""
    targets: OrderedDict[str, tuple[Module, str, Any]] = OrderedDict()
    seen: set[int] = set()
    for module_name, owner in module.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, param in owner._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                targets[prefix + name] = (owner, name, param.data)
        for name, array in owner._buffers.items():
            if array is not None:
                targets[prefix + name] = (owner, name, array)
    return targets


def load_state_dict(module: Module, state: Mapping[str, Array], strict: bool = True) -> None:
    """:meth:`Module.load_state_dict <npdeq.nn.Module.load_state_dict>`: every entry is
    checked and converted before the first is assigned."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state).__name__}")
    targets = _targets(module)
    missing = [name for name in targets if name not in state]
    unexpected = [name for name in state if name not in targets]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(str, unexpected))}")
        raise KeyError(f"load_state_dict for {type(module).__name__}: {'; '.join(parts)}")
    # Every entry is checked and converted before the first is assigned: a bad entry
    # leaves the model as it was, not half loaded.
    loaded = []
    for name, (owner, attr, current) in targets.items():
        if name not in state:
            continue
        value = state[name]
        value = value.data if isinstance(value, Tensor) else value
        try:
            backend.array_namespace(value)
        except TypeError:
            raise TypeError(f"load_state_dict: {name!r} must be an array or Tensor, got "
                            f"{type(value).__name__}") from None
        shape = tuple(value.shape)
        if shape != tuple(current.shape):
            raise ValueError(f"load_state_dict: {name!r} has shape {shape}, the model "
                             f"expects {tuple(current.shape)}")
        loaded.append((owner, attr, _convert(name, value, current)))
    for owner, attr, array in loaded:
        if attr in owner._parameters:
            owner._parameters[attr].data = array
        else:
            owner._buffers[attr] = array


def to(module: Module, target: Any = None, dtype: Any = None) -> Module:
    """:meth:`Module.to <npdeq.nn.Module.to>`: move every parameter and buffer."""
    arrays = [p.data for p in module.parameters()] + list(module.buffers())
    if target is None:
        if not arrays:
            return module
        xp, target_device = backend.array_namespace(arrays[0]), None
    else:
        xp, target_device = backend.resolve_target(target)
    requested = dtype
    if isinstance(dtype, str):
        try:
            dtype = getattr(xp, dtype)
        except AttributeError:
            raise ValueError(f"unknown dtype {dtype!r} for "
                             f"{backend.namespace_name(xp)}") from None
    if dtype is not None:
        # move_array casts floating arrays to ``dtype``: an integer one would truncate
        # every parameter (PyTorch refuses it too).
        try:
            floating = xp.isdtype(dtype, "real floating")
        except (TypeError, ValueError):
            floating = False
        if not floating:
            raise TypeError(f"Module.to takes a real floating dtype of "
                            f"{backend.namespace_name(xp)}, got {requested!r}")
    for owner in module.modules():
        for param in owner._parameters.values():
            if param is not None:
                param.data = backend.move_array(param.data, xp, target_device, dtype)
                param.grad = None
        for name, array in owner._buffers.items():
            if array is not None:
                owner._buffers[name] = backend.move_array(array, xp, target_device, dtype)
    return module
