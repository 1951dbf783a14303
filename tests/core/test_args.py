"""add_deq_args: TorchDEQ's flags and defaults, and a round trip through argparse."""

from __future__ import annotations

import argparse

import pytest

from npdeq.core import DEFAULTS, DEQConfig, DEQIndexing, add_deq_args, get_deq


def test_add_deq_args_round_trip():
    parser = add_deq_args(argparse.ArgumentParser())
    parser.add_argument("--lr", type=float, default=0.1)      # the script's own flag
    defaults = parser.parse_args([])
    assert {k: v for k, v in vars(defaults).items() if k != "lr"} == {
        **{k: v for k, v in DEFAULTS.items() if k != "no_stat"},
        "indexing": [], "grad": [1], "sup_loc": []}          # TorchDEQ's flag defaults
    # the parsed defaults build the same DEQ as no config at all
    for core in ("indexing", "sliced"):
        a, b = get_deq(defaults, core=core), get_deq(core=core)
        assert (a.indexing, a.grad, a.sup_loc, a.f_max_iter) == (b.indexing, [1], [], 40)
    args = parser.parse_args(
        "--core indexing --f_solver anderson --f_max_iter 24 --f_tol 1e-5 --f_stop_mode rel "
        "--ift --indexing 6 18 --grad 2 --tau 0.5 --sup_loc 1 --norm_type spectral_norm "
        "--norm_clip --jac_loss_weight 0.5 --sradius_mode --lr 0.01".split())
    deq = get_deq(args)
    assert isinstance(deq, DEQIndexing) and deq.indexing == [6, 18, 24]
    assert (deq.f_solver, deq.f_max_iter, deq.f_tol, deq.f_stop_mode) == ("anderson", 24, 1e-5,
                                                                          "rel")
    assert deq.ift and deq.grad == [2] and deq.tau == 0.5 and deq.sup_loc == [1]
    stored = deq.args
    assert stored.norm_type == "spectral_norm" and stored.norm_clip is True
    assert stored.jac_loss_weight == 0.5 and stored.sradius_mode is True
    assert DEQConfig(args).ignored == {"lr": 0.01}
    help_text = parser.format_help()
    for group in ("DEQ solver", "DEQ normalisation", "DEQ training", "DEQ regularisation",
                  "DEQ monitoring"):
        assert group in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["--f_stop_mode", "relative"])


def test_add_deq_args_on_an_argument_group():
    parser = argparse.ArgumentParser()
    add_deq_args(parser.add_argument_group("mine"))
    assert parser.parse_args(["--n_states", "3"]).n_states == 3
