"""Property-based fuzzing of ``get_deq`` configurations, solver arguments and maps.

Every drawn configuration, good or bad, must end in one of two ways:

- it runs: forward (and, in training, backward) return results whose statistics flag every
  sample that did not converge or met a non-finite value (no NaN/inf state reported as
  converged, gradients finite or the failure flagged); ConvergenceWarning and ConfigWarning
  are allowed;
- or it raises ``ValueError``/``TypeError`` whose message names an argument that was given
  (a value drawn from a list of bad ones must raise).

Budgets stay small (``max_iter`` <= 20, D = 3, B = 3) so that no example can hang and the
default (ci) profile runs in a few seconds.
"""

from __future__ import annotations

import warnings

import array_api_strict
import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

import npdeq
from npdeq import backend
from npdeq.solver import registered_solvers

NAN, INF = float("nan"), float("inf")
BATCH, DIM = 3, 3

# key: (good values, bad values); a key is left out, drawn good, or (1 in 20) drawn bad.
KEYS = {
    "core": (["indexing", "sliced"], ["slice", 3]),
    "ift": ([True, False], [1, "yes"]),
    "f_solver": (sorted(registered_solvers()), ["andersen", ""]),
    "b_solver": (sorted(registered_solvers()) + ["direct"], ["nope", None]),
    "f_max_iter": ([0, 1, 2, 5, 12, 20, np.int64(8), 6.0], [-1, 2.5, NAN, True, "10"]),
    "b_max_iter": ([0, 1, 5, 20, np.int32(7)], [-3, INF, "5"]),
    "f_tol": ([1e-2, 1e-6, 0, 0.0, np.float32(1e-4)], [NAN, -1, INF, "1e-3", -0.0 - 1e-9]),
    "b_tol": ([1e-4, 1e-8, np.float64(1e-6)], [NAN, -1e-6, INF, "0.1"]),
    "f_stop_mode": (["abs", "rel"], ["relative", None]),
    "b_stop_mode": (["abs", "rel"], ["ABS"]),
    "n_states": ([1, 2, 3], [0, -1, 1.5, NAN]),
    "indexing": ([None, [1], [2, 4], [3, 20]], [[0], [4, 2], ["a"], [NAN]]),
    "grad": ([0, 1, 2, 2, 3, [1, 2]], [-1, [], NAN, "2"]),
    "tau": ([1.0, 0.5, 0.9, np.float64(0.7)], [0, -0.5, 1.5, NAN, INF, "0.5"]),
    "gamma": ([0.0, 0.8, 1.0], [NAN, -0.1, INF]),
    "sup_gap": ([-1, 0, 1, 2], [NAN, 1.5]),
    "sup_loc": ([None, [1], [1], [1, 2]], [[0], [NAN]]),
    "eval_factor": ([1.0, 1.5, 0.5], [0, -1.0, NAN, INF]),
    "jac_loss_weight": ([0.0, 0.1], [NAN, -1.0]),
    "jac_loss_freq": ([0.0, 0.5, 1.0], [1.5, NAN]),
}
# Errors that come from how good values combine name one of these (or a solver argument).
COMBINATION_NAMES = ("n_states", "indexing", "f_max_iter", "grad", "sup_loc", "core")
SOLVER_KWARGS = [  # valid for some solvers only (else an error naming the argument)
    {"m": 3}, {"lam": 1e-3}, {"tau": 0.5}, {"tol": 0.0}, {"stop_mode": "rel"},
    {"f_max_iter": 4}, {"f_max_iter": 0}, {"restart": 5}, {"method": "tsit5"},
]
BAD_SOLVER_KWARGS = [  # a typo, reserved keys, bad values
    {"lamb": 1e-3}, {"max_iter": 3}, {"indexing": [2]}, {"tol": NAN}, {"tol": -1.0},
    {"f_max_iter": -2}, {"f_max_iter": 2.5}, {"m": 0}, {"tau": 2.0}, {"stop_mode": "rell"},
]
MAPS = ("contractive", "expansive", "inf_sample")
OUTCOMES = ("good", "good", "good", "bad config", "bad solver_kwargs")


def _config(data):
    """A config of good values for some keys; sometimes one key with a bad value instead."""
    config = {}
    for key in sorted(KEYS):
        if data.draw(st.integers(0, 2), label=f"{key} set") == 2:
            config[key] = data.draw(st.sampled_from(KEYS[key][0]), label=key)
    outcome = data.draw(st.sampled_from(OUTCOMES), label="outcome")
    bad_key = None
    if outcome == "bad config":
        bad_key = data.draw(st.sampled_from(sorted(KEYS)), label="bad key")
        config[bad_key] = data.draw(st.sampled_from(KEYS[bad_key][1]), label="bad value")
    kwargs = {}
    if outcome == "bad solver_kwargs":
        kwargs = data.draw(st.sampled_from(BAD_SOLVER_KWARGS), label="solver_kwargs")
    elif data.draw(st.booleans(), label="solver_kwargs given"):
        kwargs = data.draw(st.sampled_from(SOLVER_KWARGS), label="solver_kwargs")
    return config, bad_key, kwargs


def _problem(kind, ns, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((DIM, DIM))
    W *= (0.5 if kind == "contractive" else 3.0) / np.linalg.norm(W, 2)
    x = rng.standard_normal((BATCH, DIM))
    shift = np.zeros((BATCH, DIM))
    if kind == "inf_sample":
        shift[1, 0] = INF
    to = (lambda a: array_api_strict.asarray(a)) if ns == "strict" else (lambda a: a)
    W = npdeq.Tensor(to(W), requires_grad=True)
    x, shift = to(x), to(shift)
    return W, (lambda z: npdeq.tanh(z @ W.T + x) + shift), to(np.zeros((BATCH, DIM)))


def _host(a):
    return backend.to_numpy(a.data if isinstance(a, npdeq.Tensor) else a)


def _check_flags(z_out, info):
    """No sample reported converged with a non-finite state or a non-finite residual."""
    converged, nonfinite = _host(info["converged"]), _host(info["nonfinite"])
    assert converged.shape == (BATCH,) and nonfinite.shape == (BATCH,)
    assert not (converged & nonfinite).any()
    for z in z_out:
        finite = np.isfinite(_host(z)).reshape(BATCH, -1).all(axis=1)
        assert not (converged & ~finite).any(), "a non-finite state reported as converged"
    residual = _host(info["solution"].residual)
    assert np.isfinite(residual[converged]).all()


def _names_an_argument(error, names):
    text = str(error)
    return any(f"'{n}'" in text or f"{n}=" in text or f"{n} " in text or f"{n}:" in text
               for n in names)


@pytest.mark.filterwarnings("ignore::npdeq.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::npdeq.core.ConfigWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy on the map's own inf
# Four times the profile's examples: each is cheap (ci: 200 examples, a few seconds).
@settings(max_examples=4 * settings.default.max_examples)
@given(data=st.data())
def test_any_configuration_runs_flagged_or_raises_naming_the_argument(data):
    config, bad_key, solver_kwargs = _config(data)
    training = data.draw(st.integers(0, 4), label="training") > 0
    ns = data.draw(st.sampled_from(("numpy", "strict")), label="namespace")
    W, func, z0 = _problem(data.draw(st.sampled_from(MAPS), label="map"), ns,
                           data.draw(st.integers(0, 3), label="seed"))
    # errors from how good values combine, or from solver arguments some solvers lack
    allowed = set(COMBINATION_NAMES) | set(solver_kwargs)
    try:
        deq = npdeq.get_deq(config).train(training)
        z_out, info = deq(func, z0, solver_kwargs=solver_kwargs)
    except (ValueError, TypeError) as error:
        event(f"raised ({'bad value' if bad_key else 'combination'})")
        if bad_key is not None:   # values are checked before how they combine
            assert f"config key '{bad_key}'" in str(error), f"{error!r} not about {bad_key}"
        else:
            assert _names_an_argument(error, allowed), f"{error!r} names none of {allowed}"
        return
    event(f"ran ({'training' if training else 'eval'})")
    assert bad_key is None, f"bad value accepted: {bad_key}={config[bad_key]!r}"
    assert solver_kwargs not in BAD_SOLVER_KWARGS, f"bad solver_kwargs accepted"
    _check_flags(z_out, info)
    if training and any(z.requires_grad for z in z_out):
        loss = sum((z * z).sum() for z in z_out)
        loss.backward()
        grad = _host(W.grad)
        assert grad.shape == (DIM, DIM)
        if not np.isfinite(grad).all():
            back = info["backward"]
            flagged = bool(_host(info["nonfinite"]).any()) or (
                back is not None and (bool(_host(back["nonfinite"]).any())
                                      or not bool(_host(back["converged"]).all())))
            assert flagged, "a non-finite gradient with nothing flagged"
    z_eval, info = deq.eval()(func, z0, solver_kwargs=solver_kwargs)
    assert len(z_eval) == 1 and not z_eval[0].requires_grad
    _check_flags(z_eval, info)
    budget = solver_kwargs.get("f_max_iter", deq.eval_f_max_iter)
    assert (_host(info["nstep"]) <= budget).all()


# What a good value of a key needs beside it to be usable on its own.
COMPANIONS = {"grad": {"ift": True}, "sup_loc": {"grad": 2}, "f_max_iter": {"core": "sliced"},
              "indexing": {"f_max_iter": 20}}


def test_the_bad_values_are_bad_and_the_good_ones_good():
    """The table itself: each bad value alone raises naming its key, each good one builds."""
    for key, (good, wrong) in KEYS.items():
        for value in good:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", npdeq.core.ConfigWarning)
                companions = dict(COMPANIONS.get(key, {}))
                if isinstance(value, list) and key == "grad":
                    companions["n_states"] = len(value)
                npdeq.get_deq({key: value, **companions})
        for value in wrong:
            with pytest.raises(ValueError, match=f"config key '{key}'"):
                npdeq.get_deq({key: value})
