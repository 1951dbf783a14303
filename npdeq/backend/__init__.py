"""The backend: everything npdeq needs that is not the same in every array library.

The only layer of npdeq's core that may import NumPy; nothing imports CuPy at module level.
The rule for every layer above: take array functions from the namespace of the inputs
(``xp = array_namespace(x)``), create new arrays on the inputs' device
(``xp.zeros(shape, dtype=x.dtype, device=device(x))``) and never call ``numpy`` directly.
The same code then runs on NumPy (CPU), CuPy (GPU) and ``array_api_strict``. What needs a
library-specific fast path lives here, dispatched per namespace, with a portable fallback:

- :mod:`~npdeq.backend.namespace`: namespace and device lookup, the host-sync helpers;
- :mod:`~npdeq.backend.windows`: sliding windows (pooling) and scatter-add;
- :mod:`~npdeq.backend.convolution`: convolution kernels (forward, input and weight VJPs): on
  NumPy one BLAS product per kernel row and image (:mod:`~npdeq.backend.conv_rows`; strided:
  :mod:`~npdeq.backend.conv_phases`), elsewhere per-offset products on a padded grid and
  im2col (:mod:`~npdeq.backend.conv_grid`, :mod:`~npdeq.backend.conv_im2col`); work arrays
  reused across calls (:mod:`~npdeq.backend.workspace`);
- :mod:`~npdeq.backend.arrayfuncs`: einsum, index-add along an axis, sparse-dense products;
- :mod:`~npdeq.backend.random`: random numbers on any device;
- :mod:`~npdeq.backend.transfer`: moving arrays between libraries and devices, ``.npz`` files;
- :mod:`~npdeq.backend.checks`: scalar arguments (counts, numbers, flags) as Python values;
- :mod:`~npdeq.backend.dtypes`: the default floating-point dtype of new arrays;
- :mod:`~npdeq.backend.memory`: whether the C allocator keeps freed array memory for reuse;
- :mod:`~npdeq.backend.counting` and :mod:`~npdeq.backend.linsolve`: the solvers' per-iteration
  counts of true flags (one host read) and batched linear solves with vector right-hand
  sides (``solve_vectors``).
"""

from npdeq.backend import (arrayfuncs, checks, dtypes, linsolve, memory, namespace, random,
                           transfer, windows)
from npdeq.backend.arrayfuncs import *  # noqa: F401,F403
from npdeq.backend.checks import *  # noqa: F401,F403
from npdeq.backend.dtypes import *  # noqa: F401,F403
from npdeq.backend.linsolve import *  # noqa: F401,F403
from npdeq.backend.memory import *  # noqa: F401,F403
from npdeq.backend.namespace import *  # noqa: F401,F403
from npdeq.backend.random import *  # noqa: F401,F403
from npdeq.backend.transfer import *  # noqa: F401,F403
from npdeq.backend.windows import *  # noqa: F401,F403

__all__ = [*arrayfuncs.__all__, *checks.__all__, *dtypes.__all__, *linsolve.__all__,
           *memory.__all__, *namespace.__all__, *windows.__all__, *random.__all__,
           *transfer.__all__]
