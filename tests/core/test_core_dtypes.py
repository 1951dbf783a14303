"""The DEQ cores refuse a state whose dtype differs from the model's, naming both dtypes
and where each came from (npdeq's ops promote float32 with float64, so without the check a
float64 ``z_init`` ran every solver iteration of a float32 model in float64)."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq


def _model(xp, xp_device, dtype):
    layer = npdeq.nn.Linear(4, 4, xp=xp, dtype=dtype, device=xp_device, seed=0)
    return layer, lambda z: npdeq.tanh(0.5 * layer(z))


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_float64_state_for_a_float32_model_is_an_error_naming_both(xp, xp_device, to_xp, core):
    _, func = _model(xp, xp_device, xp.float32)
    deq = npdeq.get_deq(core=core, f_max_iter=8)
    with pytest.raises(TypeError, match=r"z_init has dtype float64 but func uses a float32 "
                                        r"tensor that requires grad .*parameter.*model\.to"):
        deq(func, to_xp(np.zeros((2, 4))))


def test_float32_state_for_a_float64_parameter_names_the_likely_source(xp, xp_device, to_xp):
    _, func = _model(xp, xp_device, xp.float64)
    with pytest.raises(TypeError, match=r"func returned dtype \S*float64 at call 1; expected "
                                        r"\S*float32 .*promotes the result"):
        npdeq.get_deq(f_max_iter=8)(func, to_xp(np.zeros((2, 4)), np.float32))


def test_matching_dtypes_train_in_that_dtype(xp, xp_device, to_xp, check_array):
    layer, func = _model(xp, xp_device, xp.float32)
    z_out, _ = npdeq.get_deq(f_max_iter=8)(func, to_xp(np.zeros((2, 4)), np.float32))
    check_array(z_out[-1], shape=(2, 4), dtype=xp.float32)
    (z_out[-1] * z_out[-1]).sum().backward()
    check_array(layer.weight.grad, shape=(4, 4), dtype=xp.float32)
