"""DEQConfig, the key checks, and the precedence of args and keywords in the cores."""

from __future__ import annotations

import argparse
import types

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


def test_defaults_are_torchdeqs():
    assert DEFAULTS == TORCHDEQ
    assert set(GROUPS) == {"solver", "norm", "training", "regularization", "monitoring"}


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
    ("f_max_iter", -1), ("f_max_iter", 2.5), ("f_max_iter", True), ("f_tol", 0.0),
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
