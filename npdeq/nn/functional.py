"""PyTorch's ``torch.nn.functional`` names and signatures over npdeq's ops
(``import npdeq.nn.functional as F``).

Each function is a thin wrapper: PyTorch's argument names (``input``, ``dim``, ``reduction``,
``ignore_index``, ``label_smoothing``, ...) and defaults, checked before any work, and the
tape's op underneath (``F.gelu`` is :func:`npdeq.gelu`, ``F.mse_loss`` is
:func:`npdeq.mse_loss`, ...). Differences from PyTorch, each an error rather than a silently
different result:

- ``inplace=True`` raises: npdeq never modifies its inputs (use the returned Tensor);
- ``softmax``/``log_softmax`` need ``dim`` (PyTorch's implicit choice is deprecated there);
- the legacy ``size_average``/``reduce`` arguments of the losses raise, naming ``reduction``;
- ``reduction='mean'`` with nothing to average (an empty batch, every target ignored, a zero
  total weight) raises instead of returning NaN;
- ``avg_pool2d`` supports ``ceil_mode=False``, ``count_include_pad=True`` and
  ``divisor_override=None`` only, ``pad`` the ``'constant'`` mode only.

Random masks (``dropout``) come from npdeq's default generator
(:func:`npdeq.nn.init.manual_seed`), drawn in the input's namespace and on its device.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from npdeq import backend
from npdeq.autodiff import ops
from npdeq.autodiff.ops.conv import conv1d
from npdeq.autodiff.ops.linalg_functions import vector_norm
from npdeq.autodiff.ops.lookup import embedding
from npdeq.autodiff.ops.losses import check_reduction, reduce_loss
from npdeq.autodiff.ops.pooling import avg_pool1d, max_pool1d, max_pool2d
from npdeq.autodiff.ops.util import as_operand, raw
from npdeq.autodiff.tensor import Tensor
from npdeq.backend import Array
from npdeq.backend.checks import check_bool, check_real
from npdeq.nn import init
from npdeq.nn.classification import check_no_legacy, cross_entropy, nll_loss

__all__ = ["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "softmax",
           "log_softmax", "normalize", "dropout", "linear", "conv2d", "avg_pool2d", "pad",
           "nll_loss", "cross_entropy", "mse_loss", "l1_loss", "dropout_mask",
           # npdeq's ops, already under PyTorch's names and signatures:
           "conv1d", "avg_pool1d", "max_pool1d", "max_pool2d", "embedding"]


def check_no_inplace(inplace: Any, what: str) -> None:
    """Refuse PyTorch's ``inplace=True`` (npdeq never modifies its inputs), naming ``what``."""
    if check_bool("inplace", inplace, owner=what):
        raise ValueError(f"{what}: inplace=True is not supported; npdeq never modifies its "
                         "inputs: drop it and use the returned Tensor")


# --- activations ---------------------------------------------------------------------------


def relu(input: Any, inplace: bool = False) -> Tensor:
    """``max(input, 0)``, as ``torch.nn.functional.relu``.

    Example:
        >>> import numpy as np
        >>> relu(np.array([-1.0, 2.0])).numpy()
        array([0., 2.])
    """
    check_no_inplace(inplace, "relu")
    return ops.relu(input)


def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``input`` where positive, ``negative_slope * input`` elsewhere."""
    check_no_inplace(inplace, "leaky_relu")
    slope = check_real("negative_slope", negative_slope, owner="leaky_relu")
    return ops.leaky_relu(input, slope)


def gelu(input: Any, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit (:func:`npdeq.gelu`); ``approximate`` is ``'none'`` or
    ``'tanh'``."""
    return ops.gelu(input, approximate=approximate)


def silu(input: Any, inplace: bool = False) -> Tensor:
    """``input * sigmoid(input)`` (also called swish)."""
    check_no_inplace(inplace, "silu")
    x = as_operand(input)
    return x * ops.sigmoid(x)


def tanh(input: Any) -> Tensor:
    """Hyperbolic tangent."""
    return ops.tanh(input)


def sigmoid(input: Any) -> Tensor:
    """Logistic sigmoid, without overflow for large ``|input|``."""
    return ops.sigmoid(input)


def softplus(input: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * input)) / beta``, linear above ``threshold`` (PyTorch's rule)."""
    beta = check_real("beta", beta, 0.0, low_open=True, owner="softplus")
    threshold = check_real("threshold", threshold, owner="softplus")
    return ops.softplus(input, beta, threshold)


def _softmax_dim(dim: Any, dtype: Any, what: str) -> int:
    if dim is None:
        raise TypeError(f"{what}: give dim= (the axis to normalise over); PyTorch's implicit "
                        "choice of dim is deprecated")
    if dtype is not None:
        raise ValueError(f"{what}: dtype= is not supported; cast the input first "
                         "(e.g. input.double())")
    return dim


def softmax(input: Any, dim: int | None = None, dtype: Any = None) -> Tensor:
    """Softmax over ``dim`` (required), as ``torch.nn.functional.softmax``.

    Example:
        >>> import numpy as np
        >>> softmax(np.zeros((1, 4)), dim=1).numpy()
        array([[0.25, 0.25, 0.25, 0.25]])
    """
    return ops.softmax(input, axis=_softmax_dim(dim, dtype, "softmax"))


def log_softmax(input: Any, dim: int | None = None, dtype: Any = None) -> Tensor:
    """Log-softmax over ``dim`` (required), computed stably."""
    return ops.log_softmax(input, axis=_softmax_dim(dim, dtype, "log_softmax"))


def normalize(input: Any, p: float = 2.0, dim: int | Sequence[int] = 1,
              eps: float = 1e-12) -> Tensor:
    """``input / max(||input||_p, eps)`` over ``dim``, as ``torch.nn.functional.normalize``.

    The norm is :func:`npdeq.linalg.vector_norm` (whose gradient at a zero vector is 0), so
    the gradient at a zero vector is ``1 / eps``, not NaN.

    Args:
        input: floating-point Tensor or array.
        p: the norm's exponent (finite, > 0, or ``inf``).
        dim: the axis (or axes) the norm runs over.
        eps: the smallest denominator (finite, > 0).

    Raises:
        ValueError: a bad ``p`` or ``eps``.

    Example:
        >>> import numpy as np
        >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).numpy()
        array([[0.6, 0.8],
               [0. , 0. ]])
    """
    eps = check_real("eps", eps, 0.0, low_open=True, owner="normalize")
    if p != math.inf:
        p = check_real("p", p, 0.0, low_open=True, owner="normalize")
    x = as_operand(input)
    norm = vector_norm(x, axis=dim, keepdims=True, ord=p)
    # Below eps the denominator is the constant eps: its gradient (0 at zero) does not reach
    # the norm's.
    norm = ops.maximum(norm, eps)
    return x / norm


# --- dropout -------------------------------------------------------------------------------


def dropout_mask(like: Tensor | Array, shape: Sequence[int], p: float, seed: Any = None
                 ) -> Array:
    """A dropout mask: ``0`` with probability ``p``, else ``1 / (1 - p)`` (zeros for
    ``p = 1``), in ``like``'s dtype, namespace and device.

    Args:
        like: an array (or Tensor) whose dtype, namespace and device the mask takes.
        shape: the mask's shape.
        p: the drop probability, in ``[0, 1]``.
        seed: an int or ``numpy.random.Generator`` (default: npdeq's default generator).

    Returns:
        A raw array (a constant for the tape).
    """
    data = raw(like)
    xp = backend.array_namespace(data)
    if p >= 1.0:
        return xp.zeros(tuple(shape), dtype=data.dtype, device=backend.device(data))
    uniform = backend.random_uniform(tuple(shape), like=data, seed=init.generator(seed))
    # P(uniform >= p) = 1 - p; kept entries are scaled so the mean is unchanged.
    return xp.astype(uniform >= p, data.dtype) / (1.0 - p)


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``, a new
    mask at every call (training); the input itself otherwise.

    Inside a DEQ map use :mod:`npdeq.dropout`'s variational dropout (one mask per step), or
    the solver sees a different map at each iteration.

    Args:
        input: floating-point Tensor or array.
        p: the drop probability, in ``[0, 1]``.
        training: apply dropout (``False``: return ``input``).
        inplace: must be ``False``.

    Returns:
        A Tensor (``input`` itself, as a Tensor, when not training or ``p = 0``).

    Raises:
        ValueError: ``p`` outside ``[0, 1]`` or NaN; ``inplace=True``.
        TypeError: a non-floating-point input, or ``training`` that is not a bool.

    Example:
        >>> import numpy as np
        >>> out = dropout(np.ones(1000), p=0.25)
        >>> sorted(set(out.numpy().round(6).tolist()))
        [0.0, 1.333333]
    """
    p = check_real("p", p, 0.0, 1.0, owner="dropout")
    training = check_bool("training", training, owner="dropout")
    check_no_inplace(inplace, "dropout")
    x = as_operand(input)
    if not training or p == 0.0:
        return x
    xp = backend.array_namespace(x.data)
    if not xp.isdtype(x.data.dtype, "real floating"):
        raise TypeError(f"dropout needs a floating-point input, got dtype {x.data.dtype}")
    return ops.mul(x, dropout_mask(x.data, x.shape, p))


# --- layers --------------------------------------------------------------------------------


def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """``input @ weight.T + bias``, as ``torch.nn.functional.linear`` (``weight`` is
    ``(out_features, in_features)``)."""
    y = ops.matmul(input, ops.permute(weight, None))
    return y if bias is None else y + bias


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, :func:`npdeq.conv2d` under PyTorch's argument names."""
    return ops.conv2d(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                      groups=groups)


def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> Tensor:
    """2-D average pooling, :func:`npdeq.avg_pool2d` (PyTorch's defaults only for
    ``ceil_mode``, ``count_include_pad`` and ``divisor_override``).

    Raises:
        ValueError: another value of those three.
    """
    if ceil_mode is not False or count_include_pad is not True or divisor_override is not None:
        raise ValueError(f"avg_pool2d: only ceil_mode=False, count_include_pad=True and "
                         f"divisor_override=None are supported, got ceil_mode={ceil_mode!r}, "
                         f"count_include_pad={count_include_pad!r}, "
                         f"divisor_override={divisor_override!r}")
    return ops.avg_pool2d(input, kernel_size, stride=stride, padding=padding)


def pad(input: Any, pad: Sequence[int], mode: str = "constant", value: float | None = None
        ) -> Tensor:
    """Pad the last ``len(pad) // 2`` axes, PyTorch's order: ``(left, right)`` of the last
    axis first, then ``(top, bottom)`` of the one before, ...

    Args:
        input: Tensor or array.
        pad: an even number of non-negative ints, at most two per axis.
        mode: ``'constant'`` only.
        value: the fill value (default 0).

    Raises:
        ValueError: an odd or too long ``pad``, a negative entry, or another ``mode``.

    Example:
        >>> import numpy as np
        >>> pad(np.ones((1, 2)), (1, 0)).numpy()
        array([[0., 1., 1.]])
    """
    if mode != "constant":
        raise ValueError(f"pad: mode={mode!r} is not supported; only 'constant'")
    widths = list(pad)
    ndim = len(input.shape)
    if len(widths) % 2 or len(widths) > 2 * ndim or any(
            backend.as_count(w) is None or backend.as_count(w) < 0 for w in widths):
        raise ValueError(f"pad: pad must hold an even number (at most {2 * ndim}) of "
                         f"non-negative ints for an input of shape {tuple(input.shape)}, got "
                         f"{tuple(pad)!r}")
    per_axis = [(0, 0)] * ndim
    for i in range(len(widths) // 2):
        per_axis[ndim - 1 - i] = (int(widths[2 * i]), int(widths[2 * i + 1]))
    fill = 0.0 if value is None else check_real("value", value, owner="pad")
    return ops.pad(input, per_axis, fill)


# --- losses --------------------------------------------------------------------------------


def mse_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    """Mean squared error, :func:`npdeq.mse_loss` under PyTorch's signature."""
    check_no_legacy(size_average, reduce, "mse_loss")
    return ops.mse_loss(input, target, reduction=reduction)


def l1_loss(input: Any, target: Any, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean") -> Tensor:
    """Mean absolute error, as ``torch.nn.functional.l1_loss``.

    Raises:
        ValueError: shapes that differ, an unknown ``reduction``, or ``'mean'`` of an empty
            input.

    Example:
        >>> import numpy as np
        >>> float(l1_loss(np.array([1.0, -3.0]), np.zeros(2)))
        2.0
    """
    check_no_legacy(size_average, reduce, "l1_loss")
    check_reduction(reduction, "l1_loss")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"l1_loss: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} differ (broadcasting is not applied)")
    return reduce_loss(ops.abs(as_operand(input) - target), reduction, "l1_loss")

