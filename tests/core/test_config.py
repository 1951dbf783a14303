"""DEQConfig, the key checks, and the precedence of args and keywords in the cores."""

from __future__ import annotations

import argparse
import types
import warnings

import numpy as np
import pytest
from hypothesis import given

import npdeq
from npdeq.core import DEFAULTS, DEQConfig, DEQIndexing, DEQSliced, get_deq
from npdeq.core.config import GROUPS, check_value, default, is_default
from npdeq.testing import deq_configs

# TorchDEQ's keys and defaults (its add_deq_args, DEQBase and the cores' constructors).
TORCHDEQ = {
    "f_solver": "fixed_point_iter", "b_solver": "fixed_point_iter", "f_max_iter": 40,
    "b_max_iter": 40, "f_tol": 1e-3, "b_tol": 1e-6, "f_stop_mode": "abs", "b_stop_mode": "abs",
    "eval_factor": 1.0, "eval_f_max_iter": 0, "no_stat": None,
    "norm_type": "weight_norm", "norm_no_scale": False, "norm_clip": False,
    "norm_clip_value": 1.0, "norm_target_norm": 1.0, "sn_n_power_iters": 1,
    "core": "sliced", "ift": False, "hook_ift": False, "n_states": 1, "indexing": None,
    "gamma": 0.8, "grad": 1, "tau": 1.0, "sup_gap": -1, "sup_loc": None,
    "jac_loss_weight": 0.0, "jac_loss_freq": 0.0, "jac_incremental": 0, "sradius_mode": False,
}


# npdeq's own keys, beyond TorchDEQ's.
NPDEQ_ONLY = {"phantom_memory": "store", "b_fallback": "gmres"}


def test_defaults_are_torchdeqs():
    assert DEFAULTS == {**TORCHDEQ, **NPDEQ_ONLY}
    assert set(GROUPS) == {"solver", "norm", "training", "regularization", "monitoring"}


def test_every_default_passes_its_own_check():
    for key, value in DEFAULTS.items():
        assert check_value(key, value) == value, key
    # the command line's spellings of each choice key's None, and its refusal elsewhere
    assert check_value("b_fallback", "None") is None and check_value("b_fallback", None) is None
    with pytest.raises(ValueError, match="config key 'phantom_memory': expected one of"):
        check_value("phantom_memory", "none")


def test_sources_dict_namespace_config_and_kwargs():
    as_dict = DEQConfig({"f_max_iter": 12, "ift": True})
    as_namespace = DEQConfig(argparse.Namespace(f_max_iter=12, ift=True))
    as_config = DEQConfig(as_dict)
    assert as_dict == as_namespace == as_config
    assert as_dict.get("f_max_iter") == 12 and as_dict.f_tol == DEFAULTS["f_tol"]
    assert as_dict.get("f_tol", 5.0) == 5.0          # TorchDEQ's get(key, default)
    assert as_dict["ift"] is True and "ift" in as_dict and "f_tol" not in as_dict
    assert DEQConfig(types.SimpleNamespace(f_max_iter=3)).f_max_iter == 3
    assert DEQConfig() == DEQConfig(None) and len(DEQConfig()) == 0
    assert as_dict.to_dict() == {"f_max_iter": 12, "ift": True}
    assert as_dict.to_dict(with_defaults=True) == {**DEFAULTS, "f_max_iter": 12, "ift": True}


@pytest.mark.parametrize("args", [
    {"f_max_iter": 12, "n_states": 2, "f_solver": "anderson"},
    argparse.Namespace(f_max_iter=12, n_states=2, f_solver="anderson"),
    DEQConfig({"f_max_iter": 12, "n_states": 2, "f_solver": "anderson"}),
])
@pytest.mark.parametrize("make", [
    lambda args, **kw: get_deq(args, core="indexing", **kw),
    lambda args, **kw: DEQIndexing(args, **kw),
])
def test_keywords_win_over_args_and_args_over_defaults(args, make):
    deq = make(args, f_max_iter=20)
    assert deq.f_max_iter == 20                       # keyword > args
    assert deq.arg_n_states == 2 and deq.f_solver == "anderson"   # args > defaults
    assert deq.indexing == [10, 20] and deq.f_tol == DEFAULTS["f_tol"]
    # an explicit keyword equal to the default still wins over args
    assert make(args, f_max_iter=40).f_max_iter == 40


def test_constructor_defaults_show_their_values():
    marker = default("f_max_iter")
    assert repr(marker) == "40" and is_default(marker) and not is_default(40)
    import inspect

    params = inspect.signature(DEQSliced).parameters
    assert repr(params["n_states"].default) == "1" and repr(params["indexing"].default) == "None"


def test_callers_object_is_copied_never_aliased():
    indexing = [4, 8]
    args = {"indexing": indexing, "f_max_iter": 12}
    namespace = argparse.Namespace(indexing=indexing, f_max_iter=12)
    for source in (args, namespace):
        deq = get_deq(source, f_max_iter=16, core="indexing")
        assert deq.indexing == [4, 8, 16]
        indexing.append(10)                              # the caller changes its list later
        assert deq.args.get("indexing") == [4, 8] and deq.indexing == [4, 8, 16]
        indexing.pop()
    assert args == {"indexing": [4, 8], "f_max_iter": 12}    # get_deq did not write to it
    assert vars(namespace) == {"indexing": [4, 8], "f_max_iter": 12}
    config = DEQConfig(args)
    copy = DEQConfig(config)
    copy.update(f_max_iter=3)
    assert config.get("f_max_iter") == 12
    get_deq(config, f_max_iter=20, core="indexing").args.update(tau=0.5)
    assert config.get("f_max_iter") == 12 and "tau" not in config and "core" not in config


@pytest.mark.parametrize("call", [
    lambda: get_deq(stop_mode="rel"),
    lambda: get_deq({"stop_mode": "rel"}),
    lambda: get_deq(argparse.Namespace(stop_mode="rel")),
    lambda: DEQIndexing(stop_mode="rel"),
    lambda: DEQSliced({"stop_mode": "rel"}),
    lambda: DEQConfig().update(stop_mode="rel"),
])
def test_unknown_key_names_the_key_and_the_closest_valid_ones(call):
    with pytest.raises(ValueError, match=r"unknown config key 'stop_mode'; did you mean "
                                         r"'f_stop_mode', 'b_stop_mode'\?"):
        call()


def test_misspelled_max_iter_is_an_error_everywhere():
    for call in (lambda: get_deq(f_maxiter=5), lambda: DEQSliced(argparse.Namespace(f_maxiter=5)),
                 lambda: npdeq.DEQBase({"f_maxiter": 5})):
        with pytest.raises(ValueError, match=r"'f_maxiter'; did you mean 'f_max_iter'"):
            call()


def test_namespace_keeps_the_scripts_own_flags_aside():
    args = argparse.Namespace(lr=0.1, batch_size=32, f_max_iter=12, core="indexing")
    config = DEQConfig(args)
    assert config.to_dict() == {"f_max_iter": 12, "core": "indexing"}
    assert config.ignored == {"lr": 0.1, "batch_size": 32}
    assert get_deq(args).f_max_iter == 12
    with pytest.raises(ValueError, match="unknown config key 'lr'"):
        DEQConfig(args, strict=True)
    with pytest.raises(ValueError, match="unknown config key 'lr'"):
        get_deq({"lr": 0.1})                 # a dict is strict...
    assert DEQConfig({"lr": 0.1}, strict=False).ignored == {"lr": 0.1}   # ...unless asked


@pytest.mark.parametrize("key, value", [
    ("f_max_iter", -1), ("f_max_iter", 2.5), ("f_max_iter", True), ("f_tol", -1e-3),
    ("f_stop_mode", "relative"), ("tau", 0.0), ("tau", 1.5), ("n_states", 0), ("ift", 1),
    ("indexing", ["a"]), ("grad", []), ("f_solver", ""), ("eval_factor", -1.0),
    ("jac_loss_weight", -0.1), ("no_stat", "yes"),
])
def test_invalid_values_are_rejected(key, value):
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        DEQConfig({key: value})


def test_values_are_normalised():
    assert check_value("indexing", (4, 8)) == [4, 8] and check_value("indexing", 5) == [5]
    assert check_value("f_max_iter", 12.0) == 12 and check_value("grad", [2, 3]) == [2, 3]
    assert check_value("grad", 2) == 2
    with pytest.raises(ValueError, match="unknown config key"):
        check_value("nope", 1)


def test_config_objects_of_other_kinds_are_refused():
    with pytest.raises(TypeError, match="a DEQ config must be"):
        DEQConfig(42)


def test_attribute_access_and_repr():
    config = DEQConfig({"f_solver": "anderson"})
    assert config.f_solver == "anderson" and config.n_states == 1
    assert repr(config) == "DEQConfig(f_solver='anderson')"
    with pytest.raises(AttributeError, match="not a DEQ key"):
        config.lr


@given(config=deq_configs(max_iter=12))
def test_every_strategy_config_builds_both_cores(config):
    deq = get_deq(config)
    assert type(deq) is {"indexing": DEQIndexing, "sliced": DEQSliced}[config.get("core",
                                                                                  "sliced")]
    for key, value in config.items():
        assert deq.args.get(key) == check_value(key, value)


# --- every numeric key: finiteness, range, NumPy scalars ---------------------------------

# Each numeric key: a value inside its range, values just outside it, and the kind of value
# (count: ints; real: finite numbers; list: ints or lists of ints).
NUMERIC = {
    "f_max_iter": ("count", 0, [-1]), "b_max_iter": ("count", 0, [-1]),
    "eval_f_max_iter": ("count", 0, [-1]), "jac_incremental": ("count", 0, [-1]),
    "n_states": ("count", 1, [0, -1]), "sn_n_power_iters": ("count", 1, [0]),
    "sup_gap": ("count", -1, []),
    "indexing": ("list", [1, 2], [[0], [-3]]), "sup_loc": ("list", [1], [[0]]),
    "grad": ("list", 0, [-1, [1, -1]]),
    "f_tol": ("real", 0.0, [-1e-3]), "b_tol": ("real", 0.0, [-1e-9]),
    "gamma": ("real", 0.0, [-0.5]), "jac_loss_weight": ("real", 0.0, [-0.1]),
    "jac_loss_freq": ("real", 1.0, [-0.1, 1.5]),
    "eval_factor": ("real", 0.5, [0.0, -1.0]), "norm_clip_value": ("real", 2.0, [0.0]),
    "norm_target_norm": ("real", 1.0, [0.0]), "tau": ("real", 1.0, [0.0, -0.5, 1.01]),
}
NOT_NUMBERS = [float("nan"), float("inf"), -float("inf"), "1", b"1", True, False, np.True_,
               None, 1 + 0j, [1.0, 2.0], np.array([0.5])]


def test_the_table_covers_every_numeric_key():
    numeric = {k for k, v in DEFAULTS.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(NUMERIC) == numeric | {"indexing", "sup_loc"}


@pytest.mark.parametrize("key", sorted(NUMERIC))
def test_numeric_keys_refuse_non_finite_and_non_numbers(key):
    kind, good, bad = NUMERIC[key]
    assert DEQConfig({key: good}).get(key) is not None
    wrong = [v for v in NOT_NUMBERS
             if not (kind == "list" and (v is None or isinstance(v, list)))]
    if kind in ("count", "list"):
        wrong += [2.5, np.float64(0.5)]
    for value in wrong + bad:
        for make in (lambda: DEQConfig({key: value}), lambda: get_deq(**{key: value})):
            with pytest.raises(ValueError, match=f"config key '{key}': expected"):
                make()


@pytest.mark.parametrize("key", sorted(NUMERIC))
def test_numeric_keys_take_numpy_scalars_as_python_numbers(key):
    kind, good, _ = NUMERIC[key]
    if kind == "real":
        for value in (np.float64(good), np.float32(good), np.array(good), np.int64(int(good))
                      if float(good).is_integer() else np.float16(good)):
            out = check_value(key, value)
            assert type(out) is float and out == float(np.asarray(value))
    else:
        plain = good[0] if isinstance(good, list) else good
        for value in (np.int64(plain), np.int32(plain), np.uint8(max(plain, 0)), float(plain)):
            expected = max(plain, 0) if isinstance(value, np.uint8) else plain
            out = check_value(key, [value] if isinstance(good, list) else value)
            assert out == ([expected] if isinstance(good, list) else expected)
            assert all(type(v) is int for v in (out if isinstance(out, list) else [out]))


def test_flags_take_numpy_booleans_and_stop_modes_only_strings():
    assert check_value("ift", np.True_) is True and check_value("no_stat", np.False_) is False
    for value in (1, "True", np.array(True)):
        with pytest.raises(ValueError, match="config key 'ift'"):
            check_value("ift", value)
    with pytest.raises(ValueError, match="config key 'f_stop_mode'"):
        check_value("f_stop_mode", np.array("abs"))


def test_zero_tolerance_runs_to_max_iter():
    """TorchDEQ accepts tol=0 (no early stop): so do the config, the cores and the solvers."""
    assert check_value("f_tol", 0) == 0.0 and check_value("b_tol", 0.0) == 0.0
    W = npdeq.tensor(np.array([[0.3, 0.1], [-0.2, 0.4]]), requires_grad=True)
    for core in ("indexing", "sliced"):
        deq = get_deq(core=core, f_tol=0, f_max_iter=7, ift=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            z_out, info = deq(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 2)))
        assert info["nfe"] == 7 and not info["converged"].any()
        assert not info["nonfinite"].any()


def test_zero_backward_tolerance_runs_to_b_max_iter():
    A = np.array([[0.3, 0.1], [-0.2, 0.4]])

    def gradient(**settings):
        W = npdeq.tensor(A, requires_grad=True)
        deq = get_deq(core="indexing", ift=True, f_tol=1e-12, f_max_iter=100, **settings)
        z_out, info = deq(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 2)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            (z_out[-1] ** 2).sum().backward()
        assert info["backward"] is not None
        return W.grad.numpy()

    exact = gradient(b_solver="direct")
    for b_solver in ("fixed_point_iter", "anderson", "gmres"):
        np.testing.assert_allclose(gradient(b_solver=b_solver, b_tol=0, b_max_iter=60), exact,
                                   rtol=1e-8, atol=1e-12)
