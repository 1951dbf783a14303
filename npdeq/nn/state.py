"""State dicts and moving: the half of :class:`~npdeq.nn.Module` that copies arrays.

``state_dict``/``load_state_dict`` (by dotted name, with errors naming every missing, extra or
wrongly shaped entry) and ``to`` (another library, device or floating dtype), written over
the registries and traversal :class:`~npdeq.nn.module.Module` defines. Imports the backend,
the tape's ``Tensor`` and this package's ``parameter``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Mapping

from npdeq import backend
from npdeq.autodiff.tensor import Tensor

if TYPE_CHECKING:
    from npdeq.nn.module import Module

__all__ = ["ModuleState"]


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


class ModuleState:
    """State-dict and device methods of :class:`~npdeq.nn.Module` (not used on its own)."""

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, Any]":
        """Parameters and buffers by dotted name, as arrays (shared, not copied).

        Example:
            >>> from npdeq.nn import Linear
            >>> {k: v.shape for k, v in Linear(2, 3, seed=0).state_dict().items()}
            {'weight': (3, 2), 'bias': (3,)}
        """
        state: OrderedDict[str, Any] = OrderedDict()
        for name, param in self.named_parameters():
            state[name] = param.data
        for name, array in self.named_buffers():
            state[name] = array
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers of the same names.

        Values are copied to each target's namespace, device and dtype; Parameter objects
        stay the same (only their ``.data`` changes), and a parameter or buffer never
        changes dtype. A value of another dtype is cast when no value can be lost by kind:
        integers or floats of another precision into a floating target (when no finite value
        overflows), integers into an
        integer target when every value fits, floats into an integer target when every value
        is a whole number that fits, anything real into a complex target. Anything else
        (complex into real, booleans into numbers or numbers into booleans, a float with a
        fractional part into an integer buffer) is refused. Every entry is checked before any
        is loaded, so an error leaves the module unchanged.

        Args:
            state_dict: name -> array (any supported library), e.g. from :meth:`state_dict`
                or :func:`npdeq.nn.load`.
            strict: require the names to match exactly.

        Raises:
            KeyError: with ``strict``, missing or unexpected names (all listed).
            ValueError: an array whose shape differs from the target's, or whose values
                do not fit the target's integer dtype (named, with both dtypes).
            TypeError: ``state_dict`` is not a mapping, an entry is not an array, or its
                dtype cannot be cast to the target's (named, with both dtypes).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(map(str, unexpected))}")
            raise KeyError(f"load_state_dict for {type(self).__name__}: {'; '.join(parts)}")
        # Every entry is checked and converted before the first is assigned: a bad entry
        # leaves the model as it was, not half loaded.
        loaded = []
        for name, (owner, attr, current) in targets.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
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

    def _state_targets(self) -> "OrderedDict[str, tuple[Module, str, Any]]":
        targets: OrderedDict[str, tuple[Module, str, Any]] = OrderedDict()
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    full = f"{module_name}.{name}" if module_name else name
                    targets[full] = (module, name, param.data)
            for name, array in module._buffers.items():
                if array is not None:
                    full = f"{module_name}.{name}" if module_name else name
                    targets[full] = (module, name, array)
        return targets

    # -- moving -------------------------------------------------------------------------------

    def to(self, target: Any = None, dtype: Any = None) -> "Module":
        """Move every parameter and buffer to another library/device and/or floating dtype.

        Parameters keep their identity (their ``.data`` is replaced) and lose any ``.grad``
        from the old device.

        Args:
            target: ``numpy``, ``cupy``, ``array_api_strict`` (modules or their
                ``array_api_compat`` wrappers), ``'cpu'``, ``'gpu'``/``'cuda'``, a device
                object (e.g. ``array_api_strict.Device('device1')``), an array to follow, or
                ``None`` to stay.
            dtype: a floating dtype of the target namespace (e.g. ``numpy.float32``), or a
                name such as ``'float32'``; integer buffers keep theirs.

        Returns:
            ``self``.

        Raises:
            RuntimeError: a GPU target without CuPy or a CUDA device.
            TypeError: an unknown target, or a dtype that is not a real floating dtype of the
                target namespace.
            ValueError: an unknown device or dtype name.

        Example:
            >>> import numpy as np
            >>> from npdeq.nn import Linear
            >>> layer = Linear(2, 3, seed=0).to(dtype='float32')
            >>> layer.weight.dtype
            dtype('float32')
        """
        arrays = [p.data for p in self.parameters()] + list(self.buffers())
        if target is None:
            if not arrays:
                return self
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
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None:
                    param.data = backend.move_array(param.data, xp, target_device, dtype)
                    param.grad = None
            for name, array in module._buffers.items():
                if array is not None:
                    module._buffers[name] = backend.move_array(array, xp, target_device, dtype)
        return self
