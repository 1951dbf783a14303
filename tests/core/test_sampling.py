"""Sampling schedules: TorchDEQ's n_states/indexing rules, segment lengths, grad pairing."""

from __future__ import annotations

import pytest

from npdeq.core.sampling import pair_grad_steps, sample_steps, segment_lengths


@pytest.mark.parametrize("f_max_iter, n_states, indexing, steps", [
    (24, 1, None, [24]),
    (24, 2, None, [12, 24]),
    (24, 3, None, [8, 16, 24]),
    (25, 2, None, [13, 25]),            # TorchDEQ: the remainder goes to the first state
    (10, 3, None, [4, 7, 10]),
    (5, 5, None, [1, 2, 3, 4, 5]),
    (24, 1, [6, 18], [6, 18, 24]),
    (24, 1, [24], [24]),                # an entry at f_max_iter is the final state itself
    (24, 1, [12, 24], [12, 24]),
    (24, 1, [], [24]),                  # add_deq_args's default
    (0, 1, None, [0]),                  # no solve
])
def test_steps(f_max_iter, n_states, indexing, steps):
    assert sample_steps(f_max_iter, n_states, indexing) == steps


@pytest.mark.parametrize("f_max_iter, n_states, indexing, segments", [
    (24, 2, None, [12, 12]),
    (24, 3, None, [8, 8, 8]),
    (25, 2, None, [13, 12]),            # adds up to f_max_iter (TorchDEQ: [12, 12])
    (24, 1, [6, 18], [6, 12, 6]),
    (0, 3, None, [0, 0, 0]),            # pure unrolling
    (7, 1, None, [7]),
])
def test_segments(f_max_iter, n_states, indexing, segments):
    steps = sample_steps(f_max_iter, n_states, indexing, distinct=False)
    assert segment_lengths(steps) == segments
    assert sum(segments) == f_max_iter


@pytest.mark.parametrize("kwargs, match", [
    (dict(f_max_iter=24, n_states=0), "n_states must be an int >= 1"),
    (dict(f_max_iter=24, n_states=2.0), "n_states must be an int >= 1"),
    (dict(f_max_iter=24, n_states=2, indexing=[4]), "not both"),
    (dict(f_max_iter=4, n_states=5), "cannot be spread"),
    (dict(f_max_iter=24, indexing=[8, 8]), "strictly increasing"),
    (dict(f_max_iter=24, indexing=[12, 6]), "strictly increasing"),
    (dict(f_max_iter=24, indexing=[0, 6]), "strictly increasing"),
    (dict(f_max_iter=24, indexing=[6, 30]), "beyond f_max_iter=24"),
    (dict(f_max_iter=0, indexing=[1]), "beyond f_max_iter=0"),
    (dict(f_max_iter=0, n_states=2), "DEQSliced"),   # DEQIndexing cannot unroll
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_steps(**kwargs)


def test_pair_grad_steps():
    assert pair_grad_steps(3, 2) == [2, 2, 2]
    assert pair_grad_steps(3, [4]) == [4, 4, 4]
    assert pair_grad_steps(2, [1, 5]) == [1, 5]
    with pytest.raises(ValueError, match="grad has 2 entries for 3"):
        pair_grad_steps(3, [1, 2])
