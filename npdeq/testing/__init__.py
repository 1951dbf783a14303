"""Tools to trust a gradient: finite-difference checks of the tape and of any VJP, a one-call
check of a DEQ layer's gradients, and hypothesis strategies for DEQ tests.

- :func:`check_grads`, :func:`check_vjp`, :func:`numerical_vjp`, :func:`numerical_jacobian`:
  random-direction finite-difference checks (module :mod:`npdeq.testing.gradcheck`).
- :func:`check_fixed_point_grads`: solve tightly, compare the IFT (or PhantomGrad) gradient
  with finite differences of the solution, and report (:mod:`npdeq.testing.check`).
- :func:`contractive_maps`, :func:`states`, :func:`deq_configs`: hypothesis strategies
  (:mod:`npdeq.testing.strategies`). They need ``hypothesis`` (the ``test`` extra) and are
  loaded on first use, so importing this package does not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

from npdeq.testing.check import FixedPointGradReport, ParamCheck, check_fixed_point_grads
from npdeq.testing.gradcheck import (check_grads, check_vjp, default_eps, numerical_jacobian,
                                     numerical_vjp)

_LAZY = {"contractive_maps", "states", "deq_configs", "ContractiveMap"}

__all__ = ["check_grads", "check_vjp", "numerical_vjp", "numerical_jacobian", "default_eps",
           "check_fixed_point_grads", "FixedPointGradReport", "ParamCheck", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            module = importlib.import_module("npdeq.testing.strategies")
        except ImportError as exc:
            raise ImportError(
                f"npdeq.testing.{name} needs hypothesis; install it with "
                "`pip install hypothesis` (or npdeq's 'test' extra)") from exc
        return getattr(module, name)
    raise AttributeError(f"module 'npdeq.testing' has no attribute {name!r}")
