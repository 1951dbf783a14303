"""npdeq.nn's loss modules: each equals its functional form with the same settings, keeps a
class weight as a buffer, and checks its settings when built."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq.nn.functional as F
from npdeq import backend, nn
from npdeq.autodiff import Tensor


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


LOGITS = np.random.default_rng(0).standard_normal((5, 3))
LABELS = np.array([0, 2, 1, 1, -100])
WEIGHT = np.array([1.0, 0.5, 2.0])

CASES = {
    "ce": (nn.CrossEntropyLoss(), lambda: F.cross_entropy(LOGITS, LABELS)),
    "ce-all": (nn.CrossEntropyLoss(weight=Tensor(WEIGHT), ignore_index=1, reduction="sum",
                                   label_smoothing=0.2),
               lambda: F.cross_entropy(LOGITS, np.where(LABELS < 0, 0, LABELS), WEIGHT,
                                       ignore_index=1, reduction="sum", label_smoothing=0.2)),
    "nll": (nn.NLLLoss(weight=WEIGHT, reduction="none"),
            lambda: F.nll_loss(LOGITS, LABELS, WEIGHT, reduction="none")),
    "mse": (nn.MSELoss(reduction="sum"), lambda: F.mse_loss(LOGITS, LOGITS[::-1], None, None,
                                                            "sum")),
    "l1": (nn.L1Loss(), lambda: F.l1_loss(LOGITS, LOGITS[::-1])),
}


@pytest.mark.parametrize("module, functional", CASES.values(), ids=CASES.keys())
def test_a_loss_module_is_its_functional_form(module, functional):
    if isinstance(module, (nn.MSELoss, nn.L1Loss)):
        got = module(LOGITS, LOGITS[::-1])
    elif module.ignore_index == 1:
        got = module(LOGITS, np.where(LABELS < 0, 0, LABELS))
    else:
        got = module(LOGITS, LABELS)
    np.testing.assert_array_equal(host(got), host(functional()))


def test_the_class_weight_is_a_buffer_moved_and_saved_with_the_module():
    loss = nn.CrossEntropyLoss(weight=WEIGHT)
    assert list(loss.state_dict()) == ["weight"] and list(loss.parameters()) == []
    loss.to(dtype="float32")
    assert loss.weight.dtype == np.float32
    assert "CrossEntropyLoss(reduction='mean')" == repr(nn.CrossEntropyLoss())


@pytest.mark.parametrize("build, match", [
    (lambda: nn.CrossEntropyLoss(reduction="avg"), "reduction"),
    (lambda: nn.NLLLoss(size_average=False), "reduction="),
    (lambda: nn.MSELoss(reduce=True), "reduction="),
    (lambda: nn.CrossEntropyLoss(label_smoothing=-0.1), "label_smoothing"),
    (lambda: nn.CrossEntropyLoss(ignore_index=1.5), "ignore_index"),
    (lambda: nn.L1Loss(reduction=None), "reduction"),
])
def test_bad_settings_raise_when_built(build, match):
    with pytest.raises(ValueError, match=match):
        build()
