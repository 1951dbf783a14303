"""The former name of :mod:`npdeq.autodiff.ops.util`, kept until every op module imports that."""

from npdeq.autodiff.ops.util import (as_operand, check_square, mask_like,  # noqa: F401
                                     normalize_axis, ns, raw)
