"""Model signatures and the message when ranks disagree."""

import numpy as np

from npdeq import nn
from npdeq.distributed.signature import check_same, describe_mismatch, signature, signature_hash

W = ("w", (2, 2), "float64")
B = ("b", (2,), "float64")


def test_signature_of_arrays_and_parameters():
    assert signature([("w", nn.Parameter(np.zeros((2, 2))))]) == [W]
    assert signature_hash([W, B]) == signature_hash([W, B]) != signature_hash([B, W])


def test_messages_name_the_rank_and_the_difference():
    assert describe_mismatch([[W], [W]]) == "ranks agree on the model"
    assert "rank 2 has 'b' which rank 0 lacks" in describe_mismatch([[W], [W], [W, B]])
    assert "rank 1 lacks 'b' which rank 0 has" in describe_mismatch([[W, B], [W]])
    assert "dtype float32" in describe_mismatch([[W], [("w", (2, 2), "float32")]])
    assert "another order" in describe_mismatch([[W, B], [B, W]])


def test_check_same_gathers_the_lists_only_on_a_mismatch(fake_comm):
    comm = fake_comm(rank=1, size=2, others={0: [signature_hash([W])]})
    check_same(comm, [W])
    assert comm.calls == 1
