"""get_deq, register_deq and reset_deq."""

from __future__ import annotations

import argparse

import pytest

import npdeq
from npdeq.core import DEQIndexing, DEQSliced, get_deq, register_deq, reset_deq
from npdeq.core import registry


def test_get_deq_defaults_to_sliced_and_builds_both_cores():
    assert type(get_deq()) is DEQSliced
    assert type(get_deq(core="indexing")) is DEQIndexing
    assert type(get_deq({"core": "indexing"})) is DEQIndexing
    assert type(get_deq(argparse.Namespace(core="indexing"), core="sliced")) is DEQSliced
    assert registry.registered_deqs()[:2] == ["indexing", "sliced"]


def test_unknown_core_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown DEQ core 'slicd'; did you mean 'sliced'"):
        get_deq(core="slicd")


def test_register_deq():
    class Custom(DEQSliced):
        pass

    register_deq("custom", Custom)
    try:
        deq = get_deq(core="custom", f_max_iter=8, n_states=2)
        assert type(deq) is Custom and deq.indexing == [4, 4]
    finally:
        registry._CORES.pop("custom")
    with pytest.raises(TypeError, match="non-empty string"):
        register_deq("", Custom)
    with pytest.raises(TypeError, match="must be a class"):
        register_deq("x", 3)


def test_top_level_names():
    for name in ("get_deq", "reset_deq", "register_deq", "DEQBase", "DEQIndexing", "DEQSliced",
                 "DEQConfig", "add_deq_args"):
        assert getattr(npdeq, name) is getattr(npdeq.core, name)
        assert name in npdeq.__all__


def test_reset_deq_is_a_no_op_without_hooks_and_calls_registered_ones():
    class Tree:
        def __init__(self):
            self.children = [object(), object()]

        def modules(self):
            return [self, *self.children]

    tree = Tree()
    reset_deq(tree)          # nothing registered: nothing happens
    reset_deq(get_deq())     # a DEQ core itself has nothing to reset
    seen = []
    registry.register_reset_hook(seen.append)
    registry.register_reset_hook(seen.append)          # registered once
    try:
        reset_deq(tree)
        assert seen == tree.modules()
        seen.clear()
        single = object()
        reset_deq(single)                                # no modules(): the object alone
        assert seen == [single]
    finally:
        registry._RESET_HOOKS.remove(seen.append)
    with pytest.raises(TypeError, match="callable"):
        registry.register_reset_hook(None)
