"""Flat buffers: mixed shapes and dtypes packed per dtype and cut back out, in the arrays'
namespace and on their device."""

import numpy as np
import pytest

from npdeq import backend
from npdeq.distributed.packing import pack, unpack


def test_round_trip_groups_by_dtype_and_keeps_order(xp, to_xp, check_array):
    arrays = [to_xp(np.arange(6.0).reshape(2, 3)), to_xp(np.arange(3), dtype=np.int32),
              to_xp(np.asarray(7.0)), to_xp(np.zeros((0, 2))), to_xp(np.ones(2), np.float32)]
    buckets = pack(arrays)
    assert [b.key for b in buckets] == ["float64", "int32", "float32"]
    assert buckets[0].positions == [0, 2, 3] and buckets[0].buffer.shape == (7,)
    out = unpack(buckets, len(arrays))
    for a, b in zip(arrays, out):
        check_array(b, shape=a.shape, dtype=a.dtype)
        assert np.array_equal(backend.to_numpy(a), backend.to_numpy(b))


def test_buffers_never_alias_the_inputs():
    a = np.ones(3)
    buckets = pack([a])
    buckets[0].buffer[:] = 5.0
    assert a.tolist() == [1.0, 1.0, 1.0]


def test_empty_list_and_errors():
    import array_api_strict
    assert pack([]) == [] and unpack([], 0) == []
    with pytest.raises(TypeError):
        pack([np.ones(2), array_api_strict.ones(2)])
    buckets = pack([np.ones(2)])
    buckets[0].buffer = np.ones(3)
    with pytest.raises(ValueError, match="holds 3 elements"):
        unpack(buckets, 1)
    with pytest.raises(ValueError, match="fewer than the 2"):
        unpack(pack([np.ones(2)]), 2)
