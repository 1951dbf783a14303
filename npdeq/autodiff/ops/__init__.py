"""The primitive ops of the tape, grouped by kind, and their composites.

Each module keeps an op's forward beside its VJP rules (see
:mod:`npdeq.autodiff.primitive`). Everything listed in a module's ``__all__`` is public at
the package top level (``npdeq.tanh``, ``npdeq.conv2d``, ...).
"""

from npdeq.autodiff.ops import (activations, conv, elementwise, indexing, linalg, losses,
                                normalization, reductions, shape, trigonometric)
from npdeq.autodiff.ops import lookup, pooling
from npdeq.autodiff.ops import creation, numpy_compat, numpy_products, numpy_shape
from npdeq.autodiff.ops.activations import *  # noqa: F401,F403
from npdeq.autodiff.ops.conv import *  # noqa: F401,F403
from npdeq.autodiff.ops.creation import *  # noqa: F401,F403
from npdeq.autodiff.ops.elementwise import *  # noqa: F401,F403
from npdeq.autodiff.ops.indexing import *  # noqa: F401,F403
from npdeq.autodiff.ops.linalg import *  # noqa: F401,F403
from npdeq.autodiff.ops.lookup import *  # noqa: F401,F403
from npdeq.autodiff.ops.losses import *  # noqa: F401,F403
from npdeq.autodiff.ops.normalization import *  # noqa: F401,F403
from npdeq.autodiff.ops.numpy_compat import *  # noqa: F401,F403
from npdeq.autodiff.ops.numpy_products import *  # noqa: F401,F403
from npdeq.autodiff.ops.numpy_shape import *  # noqa: F401,F403
from npdeq.autodiff.ops.pooling import *  # noqa: F401,F403
from npdeq.autodiff.ops.reductions import *  # noqa: F401,F403
from npdeq.autodiff.ops.shape import *  # noqa: F401,F403
from npdeq.autodiff.ops.trigonometric import *  # noqa: F401,F403

__all__ = [name for module in (elementwise, reductions, shape, linalg, indexing, activations,
                               conv, normalization, losses, trigonometric)
           for name in module.__all__]
__all__ += [name for module in (pooling, lookup) for name in module.__all__]
__all__ += [name for module in (numpy_compat, numpy_products, numpy_shape, creation)
            for name in module.__all__]
