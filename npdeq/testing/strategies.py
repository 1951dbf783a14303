"""Hypothesis strategies for testing DEQ code: contractive maps of known contraction factor,
DEQ states (one array or a tuple of arrays sharing the batch dimension) and valid DEQ
configurations.

Needs ``hypothesis`` (part of the ``test`` extra). :mod:`npdeq.testing` loads this module
only when one of its names is first used, so ``import npdeq.testing`` works without it.
Values are built on the host with NumPy, then moved to the requested namespace and device.

Example:
    >>> import npdeq
    >>> from hypothesis import given
    >>> from npdeq.testing.strategies import contractive_maps
    >>> @given(contractive_maps(dim=4, contraction=0.5))
    ... def test_solves(m):
    ...     z, info = npdeq.fixed_point(m.bind(), m.z0)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdeq import backend
from npdeq.autodiff import Tensor, tanh

__all__ = ["ContractiveMap", "contractive_maps", "states", "deq_configs", "SOLVER_NAMES",
           "MAP_KINDS", "MATRIX_STRUCTURES"]

MAP_KINDS = ("linear", "tanh_mlp")
# 'orthogonal' has every singular value equal to the contraction: the slowest case for
# fixed-point iteration; 'rank1' and 'diagonal' are the degenerate ones.
MATRIX_STRUCTURES = ("dense", "orthogonal", "diagonal", "rank1")
# The forward/backward solvers every DEQ configuration may name (TorchDEQ's set).
SOLVER_NAMES = ("fixed_point_iter", "simple_fixed_point_iter", "anderson", "broyden")

_NUMPY_NS = backend.array_namespace(np.zeros(0))


@dataclasses.dataclass(frozen=True, slots=True)
class ContractiveMap:
    """``f(z) = act(z @ W.T + x @ U.T + b)`` with ``act`` identity or tanh and ``||W||_2``
    equal to ``contraction``.

    The Lipschitz constant of ``f`` in z (per sample, 2-norm) is exactly ``contraction`` for
    the linear kind and at most ``contraction`` for the tanh kind (tanh is 1-Lipschitz).

    Attributes:
        kind: ``'linear'`` or ``'tanh_mlp'``.
        contraction: the spectral norm of ``W`` (a map with ``contraction >= 1`` is not a
            contraction: useful to test warnings).
        structure: how ``W`` was built (one of :data:`MATRIX_STRUCTURES`).
        params: ``{'W': (D, D), 'U': (D, N), 'b': (D,), 'x': (B, N)}`` in the requested
            namespace, dtype and device.
        z0: ``(B, D)`` zeros, the usual initial state.
    """

    kind: str
    contraction: float
    structure: str
    params: dict
    z0: Any

    def func(self, z: Any, W: Any, U: Any, b: Any, x: Any) -> Any:
        """The map on npdeq Tensors (or raw arrays), parameters passed explicitly.

        Args:
            z: ``(B, D)`` state.
            W: ``(D, D)``; U: ``(D, N)``; b: ``(D,)``; x: ``(B, N)``.

        Returns:
            ``(B, D)`` next state.
        """
        pre = z @ W.T + x @ U.T + b
        if self.kind == "linear":
            return pre
        if isinstance(pre, Tensor):  # the tape's tanh
            return tanh(pre)
        return backend.array_namespace(pre).tanh(pre)

    def bind(self, **params: Any) -> Any:
        """``z -> func(z, **params)`` with :attr:`params` as defaults (e.g. Tensors that
        require grad can be passed in their place)."""
        values = {**self.params, **params}
        return lambda z: self.func(z, **values)

    def reference_fixed_point(self, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
        """The fixed point computed on the host in float64, independently of npdeq's solvers:
        the closed form ``(I - W)^-1 (U x + b)`` for the linear kind, plain iteration for
        the tanh kind.

        Raises:
            ValueError: ``contraction >= 1`` for the tanh kind (iteration need not converge).
        """
        p = {k: backend.to_numpy(v).astype(np.float64) for k, v in self.params.items()}
        inj = p["x"] @ p["U"].T + p["b"]
        dim = p["W"].shape[0]
        if self.kind == "linear":
            return np.linalg.solve(np.eye(dim) - p["W"], inj.T).T
        if not self.contraction < 1:
            raise ValueError(f"contraction {self.contraction} >= 1: no reference fixed point")
        z = np.zeros_like(inj)
        for _ in range(max_iter):
            z_new = np.tanh(z @ p["W"].T + inj)
            if np.max(np.abs(z_new - z)) <= tol:
                return z_new
            z = z_new
        return z


def _value(draw, value):
    """Draw from ``value`` when it is a strategy, else use it as is."""
    return draw(value) if isinstance(value, st.SearchStrategy) else value


def _namespace(xp):
    return _NUMPY_NS if xp is None else xp


def _to_xp(a: np.ndarray, xp: Any, device: Any, dtype: str) -> Any:
    a = np.asarray(a, dtype=np.dtype(dtype))
    if device is None:
        return xp.asarray(a)
    return xp.asarray(a, device=device)


def _matrix(rng: np.random.Generator, dim: int, norm: float, structure: str) -> np.ndarray:
    if structure == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        return norm * q * np.sign(np.diag(r))
    if structure == "diagonal":
        m = np.diag(rng.uniform(-1.0, 1.0, dim))
        m[0, 0] = 1.0  # the largest singular value is reached
    elif structure == "rank1":
        m = np.outer(rng.standard_normal(dim), rng.standard_normal(dim))
    else:
        m = rng.standard_normal((dim, dim))
    return m * (norm / np.linalg.norm(m, 2))


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


@st.composite
def contractive_maps(draw, *, dim: Any = st.integers(1, 8), batch: Any = st.integers(1, 4),
                     in_dim: Any = st.integers(1, 4), contraction: Any = st.floats(0.05, 0.95),
                     kind: Any = st.sampled_from(MAP_KINDS),
                     structure: Any = st.sampled_from(MATRIX_STRUCTURES), xp: Any = None,
                     device: Any = None, dtype: str = "float64") -> ContractiveMap:
    """Strategy for :class:`ContractiveMap` with a stated contraction factor.

    Every argument but ``xp``, ``device`` and ``dtype`` is a value or a strategy to draw it
    from.

    Args:
        dim: state size D.
        batch: batch size B.
        in_dim: input-injection size N.
        contraction: spectral norm of ``W`` (> 0; below 1 for a contraction).
        kind: ``'linear'`` or ``'tanh_mlp'``.
        structure: one of :data:`MATRIX_STRUCTURES`.
        xp: array namespace of the parameters (default NumPy).
        device: their device (default the namespace's default device).
        dtype: their dtype name.

    Returns:
        A hypothesis strategy of :class:`ContractiveMap`.

    Raises:
        ValueError: (when drawn) an unknown kind or structure, or a non-positive contraction.
    """
    d, b, n = _value(draw, dim), _value(draw, batch), _value(draw, in_dim)
    c = float(_value(draw, contraction))
    k, s = _value(draw, kind), _value(draw, structure)
    _check_choice("kind", k, MAP_KINDS)
    _check_choice("structure", s, MATRIX_STRUCTURES)
    if not c > 0:
        raise ValueError(f"contraction must be > 0, got {c!r}")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    host = {
        "W": _matrix(rng, d, c, s),
        "U": rng.standard_normal((d, n)) / np.sqrt(n),
        "b": 0.1 * rng.standard_normal(d),
        "x": rng.standard_normal((b, n)),
    }
    ns = _namespace(xp)
    params = {key: _to_xp(v, ns, device, dtype) for key, v in host.items()}
    return ContractiveMap(k, c, s, params, _to_xp(np.zeros((b, d)), ns, device, dtype))


@st.composite
def states(draw, *, batch: Any = st.integers(1, 4), count: Any = st.integers(1, 3),
           as_tuple: bool | None = None, max_ndim: int = 2, max_side: int = 4,
           xp: Any = None, device: Any = None, dtype: str = "float64",
           min_value: float = -2.0, max_value: float = 2.0) -> Any:
    """Strategy for DEQ states: one ``(B, ...)`` array, or a tuple of arrays sharing B.

    Args:
        batch: batch size B (value or strategy).
        count: number of arrays in a tuple state (value or strategy).
        as_tuple: ``True``/``False`` force a tuple / a single array (``False`` ignores
            ``count``); ``None`` draws it (a count above 1 always gives a tuple).
        max_ndim: most feature dimensions per array (each array has 1..max_ndim).
        max_side: largest feature-dimension size.
        xp: array namespace (default NumPy).
        device: device (default the namespace's default).
        dtype: dtype name (``'float64'`` or ``'float32'``).
        min_value: smallest element value.
        max_value: largest element value.

    Returns:
        A hypothesis strategy of arrays or tuples of arrays.
    """
    b = _value(draw, batch)
    n = 1 if as_tuple is False else _value(draw, count)
    tuple_state = n > 1 or (as_tuple if as_tuple is not None else draw(st.booleans()))
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                         width=width)
    ns = _namespace(xp)
    arrays = []
    for _ in range(n):
        features = draw(hnp.array_shapes(min_dims=1, max_dims=max_ndim, min_side=1,
                                         max_side=max_side))
        host = draw(hnp.arrays(np.dtype(dtype), (b, *features), elements=elements))
        arrays.append(_to_xp(host, ns, device, dtype))
    return tuple(arrays) if tuple_state else arrays[0]


def _config_keys() -> dict[str, Any] | None:
    """The DEQ config's defaults when the core package provides them (else ``None``)."""
    try:
        from npdeq.core.config import DEFAULTS  # noqa: PLC0415 - optional, layer above
    except ImportError:
        return None
    return dict(DEFAULTS)


@st.composite
def deq_configs(draw, *, max_iter: int = 30, solvers: Sequence[str] | None = None,
                partial: bool = True) -> dict:
    """Strategy for valid DEQ configurations: dicts of TorchDEQ's config keys.

    Configurations hold no arrays, so this strategy takes no namespace; pair it with
    :func:`states` or :func:`contractive_maps` for the data.

    Args:
        max_iter: the largest ``f_max_iter``/``b_max_iter`` drawn (keeps tests fast).
        solvers: solver names to draw from (default :data:`SOLVER_NAMES`).
        partial: draw a subset of the keys (the others keep their defaults) instead of
            every key.

    Returns:
        A hypothesis strategy of dicts such as ``{'core': 'indexing', 'ift': True,
        'f_solver': 'anderson', 'f_max_iter': 12, 'grad': 2, 'tau': 0.7, ...}``; the values
        are consistent with each other (``indexing``/``n_states`` within ``f_max_iter``,
        ``indexing`` only with ``n_states=1``, ``sup_loc`` within ``grad``), so
        ``npdeq.get_deq(**config)`` accepts every one.
    """
    names = tuple(solvers) if solvers is not None else SOLVER_NAMES
    f_max = draw(st.integers(1, max_iter))
    grad = draw(st.integers(1, 4))
    n_states = draw(st.integers(1, min(3, f_max)))
    # The cores take n_states > 1 or an explicit indexing, not both.
    indexing = None if n_states > 1 else draw(
        st.none() | st.lists(st.integers(1, f_max), min_size=1, max_size=min(3, f_max),
                             unique=True).map(sorted))
    config = {
        "core": draw(st.sampled_from(("indexing", "sliced"))),
        "ift": draw(st.booleans()),
        "hook_ift": draw(st.booleans()),
        "f_solver": draw(st.sampled_from(names)),
        "b_solver": draw(st.sampled_from(names)),
        "f_max_iter": f_max,
        "b_max_iter": draw(st.integers(1, max_iter)),
        "f_tol": draw(st.sampled_from((1e-2, 1e-3, 1e-4, 1e-6))),
        "b_tol": draw(st.sampled_from((1e-4, 1e-6, 1e-8))),
        "f_stop_mode": draw(st.sampled_from(("abs", "rel"))),
        "b_stop_mode": draw(st.sampled_from(("abs", "rel"))),
        "eval_factor": draw(st.sampled_from((1.0, 1.5, 2.0))),
        "eval_f_max_iter": draw(st.integers(0, max_iter)),
        "grad": grad,
        "tau": draw(st.floats(0.1, 1.0)),
        "sup_gap": draw(st.sampled_from((-1, 1, 2))),
        "sup_loc": draw(st.none() | st.lists(st.integers(1, grad), max_size=grad,
                                             unique=True).map(sorted)),
        "n_states": n_states,
        "indexing": indexing,
    }
    known = _config_keys()
    if known is not None:
        config = {k: v for k, v in config.items() if k in known}
    if partial:
        keep = set(draw(st.lists(st.sampled_from(sorted(config)), unique=True)))
        # A kept value stays consistent only with the values it was drawn against.
        for key in sorted(keep):
            keep.update(k for k in _DRAWN_AGAINST.get(key, ()) if k in config)
        config = {k: config[k] for k in sorted(keep)}
    return config


# The keys whose drawn values each key's value was made consistent with.
_DRAWN_AGAINST = {"sup_loc": ("grad",), "indexing": ("f_max_iter", "n_states"),
                  "n_states": ("f_max_iter",)}
