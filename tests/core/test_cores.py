"""DEQIndexing and DEQSliced: sampling positions, gradients against the rules applied
directly, eval mode, statistics, and the checks that run before any solve."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.core import DEQIndexing, DEQSliced, get_deq
from npdeq.core.cores import merge_segment_stats
from npdeq.grad import implicit_grad, phantom_grad, supervised_steps
from npdeq.solver import fixed_point_iter, get_solver
from npdeq.testing import check_grads, contractive_maps, deq_configs

from core_problems import (TwoState, assert_close, expected_indexing_iterates,
                           expected_sliced_iterates, halving, iterate_index, loss_of, mlp_map)

CORES = {"indexing": DEQIndexing, "sliced": DEQSliced}
quiet = pytest.mark.filterwarnings("ignore::npdeq.ConvergenceWarning")

# (f_max_iter, n_states, indexing) -> DEQIndexing's steps, DEQSliced's segments
SCHEDULES = [
    ((24, 1, None), [24], [24]),
    ((24, 2, None), [12, 24], [12, 12]),
    ((24, 3, None), [8, 16, 24], [8, 8, 8]),
    ((25, 2, None), [13, 25], [13, 12]),
    ((20, 1, [5, 12]), [5, 12, 20], [5, 7, 8]),
    ((20, 1, [5, 20]), [5, 20], [5, 15]),
    ((7, 7, None), [1, 2, 3, 4, 5, 6, 7], [1] * 7),
    ((0, 1, None), [0], [0]),
    ((0, 3, None), None, [0, 0, 0]),          # pure unrolling: DEQSliced only
]


class Counter:
    """Wraps a DEQ map and records, per call, whether the tape was recording."""

    def __init__(self, func):
        self.func, self.recording = func, []

    def __call__(self, *zs):
        self.recording.append(npdeq.is_grad_enabled())
        return self.func(*zs)


# --- where the states come from ------------------------------------------------------------

@pytest.mark.parametrize("schedule, steps, segments", SCHEDULES)
@pytest.mark.parametrize("grad, ift", [(1, False), (1, True), (2, False), (3, True)])
def test_sampling_positions(xp, to_xp, check_array, schedule, steps, segments, grad, ift):
    """On z -> z/2 + 1 from 0 every value names its iterate, so each output tells after how
    many evaluations of f (solver steps plus gradient steps) it was taken."""
    f_max_iter, n_states, indexing = schedule
    z0 = to_xp(np.zeros((2, 3)))
    for name, expected in (("indexing", steps), ("sliced", segments)):
        settings = dict(f_max_iter=f_max_iter, n_states=n_states, indexing=indexing, grad=grad,
                        ift=ift, f_tol=1e-30)
        if expected is None:
            with pytest.raises(ValueError, match="pure unrolling"):
                CORES[name](**settings)
            continue
        deq = CORES[name](**settings)
        assert deq.indexing == expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            z_out, info = deq(halving, z0)
        grads = [1 if ift and i == len(expected) - 1 else grad for i in range(len(expected))]
        rule = expected_indexing_iterates if name == "indexing" else expected_sliced_iterates
        assert [int(iterate_index(z)[0, 0]) for z in z_out] == rule(expected, grads)
        for z in z_out:
            check_array(z, shape=(2, 3), dtype=xp.float64)
        assert info["nfe"] == f_max_iter


def test_sampling_with_extra_phantom_states(xp, to_xp):
    """sup_loc adds PhantomGrad states: n_states=2, grad=3, sup_loc=[1] and IFT on the last
    give 2 + 1 outputs."""
    for name, first in (("indexing", 12), ("sliced", 12)):
        deq = CORES[name](f_max_iter=24, n_states=2, grad=3, sup_loc=[1], ift=True, f_tol=1e-30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npdeq.ConvergenceWarning)
            z_out, _ = deq(halving, to_xp(np.zeros((1, 2))))
        got = [int(iterate_index(z)[0, 0]) for z in z_out]
        last = 24 if name == "indexing" else 12 + 2 + 12
        assert got == [first, first + 2, last]


@pytest.mark.parametrize("grad, sup_gap, sup_loc, steps", [   # TorchDEQ's steps in comments
    (1, 2, None, [1]),              # []: no state at all
    (4, 3, None, [3, 4]),           # [3]: step k dropped, its z_out[-1] is step 3
    (3, -1, [3], [3]),              # [3, 3]: step k twice
    (4, 2, [1], [1, 2, 4]),         # [2, 4]: sup_loc ignored when sup_gap > 0
    (5, 2, None, [2, 4, 5]),        # [2, 4]
])
def test_phantom_supervision_always_ends_with_step_k_once(xp, to_xp, grad, sup_gap, sup_loc,
                                                          steps):
    """PhantomGrad's extra states (sup_gap/sup_loc) differ from TorchDEQ's backward_factory
    on purpose: the last unrolled step k is always returned, exactly once, last."""
    for name in ("indexing", "sliced"):
        deq = CORES[name](f_max_iter=6, f_tol=0.0, grad=grad, sup_gap=sup_gap,
                          sup_loc=sup_loc)
        z_out, _ = deq(halving, to_xp(np.zeros((1, 2))))
        # the solve ends at iterate 5 (6 evaluations from x_0), then step j gives x_(5+j)
        assert [int(iterate_index(z)[0, 0]) - 5 for z in z_out] == steps


@quiet
def test_per_call_f_max_iter_reschedules(xp, to_xp):
    z0 = to_xp(np.zeros((1, 2)))
    for name, expected in (("indexing", [5, 10]), ("sliced", [5, 10])):
        deq = CORES[name](f_max_iter=24, n_states=2, f_tol=1e-30)
        z_out, info = deq(halving, z0, solver_kwargs={"f_max_iter": 10})
        assert [int(iterate_index(z)[0, 0]) for z in z_out] == expected and info["nfe"] == 10
        assert deq.f_max_iter == 24 and len(deq.produce_grad) == 2
    # an override that merges indexing's last entry with the final state: one state, IFT
    deq = DEQIndexing(f_max_iter=24, indexing=[12], ift=True, f_tol=1e-30)
    W = npdeq.tensor(to_xp(np.full((2, 2), 0.1)), requires_grad=True)
    z_out, info = deq(lambda z: z @ W + 1.0, z0, solver_kwargs={"f_max_iter": 12})
    assert len(z_out) == 1
    z_out[0].sum().backward()
    assert info["backward"] is not None


def test_indexing_returns_every_state_when_the_solver_stops_early(xp, to_xp, check_array):
    fast = lambda z: 0.1 * z + 1.0  # noqa: E731 - converges in a few steps
    for indexing, n_states in ((None, 3), ([6, 18], 1)):
        deq = DEQIndexing(f_max_iter=24, n_states=n_states, indexing=indexing, f_tol=1e-6)
        z_out, info = deq(fast, to_xp(np.zeros((2, 3))))
        assert len(z_out) == 3 and info["nfe"] < 10
        assert bool(npdeq.backend.to_numpy(info["converged"]).all())
        for z in z_out:
            check_array(z, shape=(2, 3))
            assert_close(z, np.full((2, 3), 1 / 0.9), rtol=1e-5)


# --- gradients equal the rules applied directly ---------------------------------------------

def _array_map(func, single):
    def mapped(*zs):
        with npdeq.no_grad():
            out = func(*[npdeq.Tensor(z) for z in zs])
        return out.data if single else tuple(o.data for o in out)
    return mapped


def _reference(core, func, z0, settings, grads):
    """The states the core should return, built with the solver and the rules by hand."""
    single = not isinstance(z0, tuple)
    solver = get_solver(settings["f_solver"])
    fn = _array_map(func, single)
    tol = dict(tol=settings["f_tol"])
    b_kwargs = dict(tol=settings["b_tol"], max_iter=settings["b_max_iter"], stop_mode="abs")

    def rule(i, state, count):
        state = state if isinstance(state, tuple) else (state,)
        if settings["ift"] and i == count - 1:
            out = [implicit_grad(func, state, "fixed_point_iter", b_kwargs)]
        else:
            out = phantom_grad(func, state, grads[i], settings["tau"])
        return [o[0] if single else o for o in out]

    if core == "indexing":
        steps = settings["steps"]
        _, states, _ = solver(fn, z0, max_iter=settings["f_max_iter"], indexing=steps, **tol)
        return [z for i, s in enumerate(states) for z in rule(i, s, len(steps))]
    out, z = [], z0
    for i, budget in enumerate(settings["segments"]):
        z_star, _, _ = solver(fn, z, max_iter=budget, **tol)
        out += rule(i, z_star, len(settings["segments"]))
        z = out[-1].data if single else tuple(t.data for t in out[-1])
    return out


@quiet
@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("ift, grad", [(True, 3), (False, [1, 2, 3])])
@pytest.mark.parametrize("problem", ["mlp", "two_state"])
def test_training_gradients_equal_the_rules(xp, to_xp, check_array, core, ift, grad, problem):
    if problem == "mlp":
        m = mlp_map(to_xp)
        names, z0 = ("W", "U", "b", "x"), m.z0
        make = lambda p: (lambda z: m.func(z, **p))  # noqa: E731
    else:
        m = TwoState(to_xp)
        names, z0 = m.names, m.z0
        make = lambda p: m.func(*[p[n] for n in names])  # noqa: E731
    settings = dict(f_solver="anderson", f_max_iter=30, f_tol=1e-9, b_tol=1e-10,
                    b_max_iter=200, n_states=3, ift=ift, grad=grad, tau=0.7,
                    steps=[10, 20, 30], segments=[10, 10, 10])
    grads = grad if isinstance(grad, list) else [grad] * 3
    rng = np.random.default_rng(7)
    weights = None
    results = []
    for method in ("core", "rules"):
        p = {n: npdeq.Tensor(m.params[n], requires_grad=True) for n in names}
        func = make(p)
        if method == "core":
            deq = CORES[core](**{k: v for k, v in settings.items()
                                 if k not in ("steps", "segments")})
            states, info = deq(func, z0)
        else:
            states = _reference(core, func, z0, settings, grads)
        if weights is None:
            shapes = [tuple(s.shape for s in (z if isinstance(z, tuple) else (z,)))
                      for z in states]
            weights = [tuple(to_xp(rng.standard_normal(sh)) for sh in shape) for shape in shapes]
        assert len(states) == 3
        loss_of(states, weights).backward()
        results.append({n: p[n].grad for n in names})
        if method == "core":
            assert (info["backward"] is not None) == ift
    for n in names:
        check_array(results[0][n], shape=tuple(m.params[n].shape), dtype=xp.float64)
        assert_close(results[0][n], results[1][n], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_ift_gradient_matches_finite_differences(xp, to_xp, core):
    m = mlp_map(to_xp, seed=3, batch=2, dim=4, in_dim=3)
    deq = get_deq(core=core, f_solver="anderson", f_max_iter=200, f_tol=1e-13, ift=True,
                  b_solver="anderson", b_tol=1e-13, b_max_iter=200)

    def solved(W, U, b, x):
        z_out, _ = deq(lambda z: m.func(z, W, U, b, x), m.z0)
        return z_out[-1]

    check_grads(solved, *[m.params[k] for k in ("W", "U", "b", "x")], rtol=1e-6, atol=1e-9)


def test_tuple_state_outputs_are_tuples(xp, to_xp, check_array):
    m = TwoState(to_xp)
    p = {n: npdeq.Tensor(m.params[n], requires_grad=True) for n in m.names}
    for core in CORES.values():
        deq = core(f_solver="anderson", f_max_iter=40, f_tol=1e-8, n_states=2, ift=True)
        z_eval, info = deq.eval()(m.func(**p), m.z0, sradius_mode=True)
        check_array(info["sradius"], shape=(2,))
        assert np.all(npdeq.backend.to_numpy(info["sradius"]) > 0)
        for z_out in (deq.train()(m.func(**p), list(m.z0))[0], z_eval):
            for z in z_out:
                assert isinstance(z, tuple) and len(z) == 2
                check_array(z[0], shape=(2, 3), dtype=xp.float64)
                check_array(z[1], shape=(2, 2, 2), dtype=xp.float64)


# --- eval mode ------------------------------------------------------------------------------

@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_eval_returns_one_detached_state_and_records_nothing(xp, to_xp, check_array, core):
    m = mlp_map(to_xp)
    p = {k: npdeq.Tensor(v, requires_grad=True) for k, v in m.params.items()}
    func = Counter(lambda z: m.func(z, **p))
    deq = CORES[core](f_solver="anderson", f_max_iter=10, eval_factor=2.5, f_tol=1e-30,
                      n_states=2, ift=True).eval()
    assert deq.eval_f_max_iter == 25 and not deq.training
    with pytest.warns(npdeq.ConvergenceWarning):
        z_out, info = deq(func, m.z0)
    assert len(z_out) == 1 and info["nfe"] == 25 and info["backward"] is None
    z = z_out[0]
    check_array(z, shape=tuple(m.z0.shape), dtype=xp.float64)
    assert not z.requires_grad and z.is_leaf
    assert func.recording and not any(func.recording)
    # eval_f_max_iter wins over eval_factor; a per-call f_max_iter over both
    deq = CORES[core](f_max_iter=10, eval_factor=2.5, eval_f_max_iter=7, f_tol=1e-30).eval()
    with pytest.warns(npdeq.ConvergenceWarning):
        assert deq(func, m.z0)[1]["nfe"] == 7
        assert deq(func, m.z0, solver_kwargs={"f_max_iter": 3})[1]["nfe"] == 3
    assert deq(func, m.z0, solver_kwargs={"f_max_iter": 0})[1]["nfe"] == 0


# --- statistics -----------------------------------------------------------------------------

@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_info_holds_per_sample_statistics_and_the_backward_ones(xp, to_xp, check_array, core):
    m = mlp_map(to_xp, batch=4)
    p = {k: npdeq.Tensor(v, requires_grad=True) for k, v in m.params.items()}
    written = []
    deq = CORES[core](f_solver="anderson", f_max_iter=30, f_tol=1e-8, n_states=2, ift=True,
                      b_tol=1e-9, b_max_iter=100)
    for training in (True, False):
        deq.train(training)
        z_out, info = deq(lambda z: m.func(z, **p), m.z0, backward_writer=written.append)
        for key in ("abs_lowest", "rel_lowest", "nstep", "sradius", "converged", "nonfinite"):
            check_array(info[key], shape=(4,))
        assert info["converged"].dtype == xp.bool and info["nonfinite"].dtype == xp.bool
        assert bool(npdeq.backend.to_numpy(info["converged"]).all())
        assert isinstance(info["nfe"], int) and info["abs_trace"].shape[0] == 4
        assert info["backward"] is None
        if training:
            loss_of(z_out, [1.0, 1.0]).backward()
            back = info["backward"]
            assert back is not None and written == [back]
            check_array(back["converged"], shape=(4,))
            assert bool(npdeq.backend.to_numpy(back["converged"]).all())


@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_nonfinite_samples_are_flagged(xp, to_xp, core):
    c = np.ones((3, 2))
    c[1, 0] = np.nan
    shift = to_xp(c)
    deq = CORES[core](f_max_iter=40, n_states=2, f_tol=1e-6)
    with pytest.warns(npdeq.ConvergenceWarning, match="non-finite"):
        _, info = deq(lambda z: 0.5 * z + shift, to_xp(np.zeros((3, 2))))
    assert npdeq.backend.to_numpy(info["nonfinite"]).tolist() == [False, True, False]
    assert npdeq.backend.to_numpy(info["converged"]).tolist() == [True, False, True]


def test_sliced_statistics_describe_the_whole_forward(xp, to_xp, check_array):
    deq = DEQSliced(f_max_iter=12, n_states=3, f_tol=1e-30)
    with pytest.warns(npdeq.ConvergenceWarning):      # only the last segment may warn
        _, info = deq(halving, to_xp(np.zeros((2, 1))))
    check_array(info["abs_trace"], shape=(2, 12))
    assert info["nfe"] == 12 and npdeq.backend.to_numpy(info["nstep"]).tolist() == [12, 12]
    # the residual of the last segment's best iterate, x_11 (segments of 4 evaluations
    # end at x_3, x_7, x_11; each gradient functor adds one step), is 2^-11
    np.testing.assert_allclose(npdeq.backend.to_numpy(info["abs_lowest"]), 2.0 ** -11)
    single = fixed_point_iter(halving, to_xp(np.zeros((1, 1))), max_iter=2, tol=1.0)[2]
    assert merge_segment_stats([single]) is single


def test_sliced_warns_once_for_non_finite_inner_segments(xp, to_xp):
    calls = []

    def blows_up_once(z):
        calls.append(1)
        return z * 0.5 + (float("nan") if len(calls) == 2 else 1.0)

    deq = DEQSliced(f_max_iter=6, n_states=2, f_tol=1e-30)
    with pytest.warns(npdeq.ConvergenceWarning) as record:
        _, info = deq(blows_up_once, to_xp(np.zeros((1, 1))))
    inner = [w for w in record if "inner solve segment" in str(w.message)]
    assert inner and inner[0].filename == __file__  # at the line that called the DEQ
    assert npdeq.backend.to_numpy(info["nonfinite"]).tolist() == [True]


# --- checks before any solve ---------------------------------------------------------------

@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("settings, match", [
    (dict(n_states=0), "n_states"),
    (dict(indexing=[8, 4]), "config key .indexing.: expected strictly increasing"),
    (dict(indexing=[4, 50]), "beyond f_max_iter=40"),
    (dict(n_states=2, indexing=[4]), "not both"),
    (dict(n_states=50), "cannot be spread"),
    (dict(grad=0), r"PhantomGrad needs >= 1 step for every state \(ift=False\)"),
    (dict(grad=[0, 2], n_states=2, ift=True), "PhantomGrad needs >= 1 step for the states"),
    (dict(grad=[1, 2, 3], n_states=2), "grad has 3 entries for 2"),
    (dict(grad=2, sup_loc=[3]), "sup_loc entry 3"),
    (dict(f_solver="andersen"), "config key 'f_solver': unknown solver 'andersen'"),
    (dict(b_solver="nope"), "config key 'b_solver': unknown solver 'nope'.*'direct'"),
])
def test_invalid_settings_raise_at_construction(core, settings, match):
    with pytest.raises(ValueError, match=match):
        CORES[core](**settings)


def test_grad_zero_is_fine_on_an_ift_state():
    assert len(DEQIndexing(grad=0, ift=True).produce_grad) == 1
    assert len(DEQSliced(grad=[2, 0], n_states=2, ift=True).produce_grad) == 2


@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("training", [True, False])
def test_tuple_state_structure_mismatch_fails_at_the_first_call(xp, to_xp, core, training):
    z0 = (to_xp(np.zeros((2, 3))), to_xp(np.zeros((2, 4))))
    for wrong, match in ((lambda z, y: z, r"returned 1 state\(s\) for 2"),
                         (lambda z, y: (z, y, y), r"returned 3 state\(s\) for 2"),
                         (lambda z, y: (z, z), r"shape \(2, 3\) for state 1")):
        func = Counter(wrong)
        deq = CORES[core](f_max_iter=5).train(training)
        with pytest.raises(ValueError, match=match):
            deq(func, z0)
        assert len(func.recording) == 1
    if training:  # a per-call budget that does not fit the sampling: before any call
        func = Counter(lambda z, y: (z, y))
        with pytest.raises(ValueError, match="beyond f_max_iter=3"):
            CORES[core](indexing=[4])(func, z0, solver_kwargs={"f_max_iter": 3})
        assert not func.recording


# --- any configuration from the strategy ----------------------------------------------------

@quiet
@given(config=deq_configs(max_iter=10), m=contractive_maps(dim=3, batch=2, in_dim=2,
                                                           contraction=st.floats(0.1, 0.8)))
def test_every_configuration_trains_and_evaluates(xp, to_xp, check_array, config, m):
    params = {k: npdeq.Tensor(to_xp(npdeq.backend.to_numpy(v)), requires_grad=True)
              for k, v in m.params.items()}
    func = m.bind(**params)
    z0 = to_xp(npdeq.backend.to_numpy(m.z0))
    deq = get_deq(config)
    z_out, info = deq(func, z0)
    per_state = []
    for i in range(len(deq.indexing)):
        k = deq.grad if isinstance(deq.grad, int) else deq.grad[min(i, len(deq.grad) - 1)]
        last_ift = deq.ift and i == len(deq.indexing) - 1
        per_state.append(1 if last_ift else len(supervised_steps(k, deq.sup_gap, deq.sup_loc)))
    assert len(z_out) == sum(per_state)
    loss_of(z_out, [1.0] * len(z_out)).backward()
    assert all(p.grad is not None for p in params.values())
    for z in z_out:
        check_array(z, shape=(2, 3), dtype=xp.float64)
    check_array(info["converged"], shape=(2,))
    z_eval, info = deq.eval()(func, z0)
    assert len(z_eval) == 1 and not z_eval[0].requires_grad
    assert info["nfe"] <= deq.eval_f_max_iter


# --- nothing is recorded under no_grad -------------------------------------------------------

GRAD_MODES = {"ift": dict(ift=True, n_states=2, grad=2, tau=0.7),
              "phantom": dict(grad=3, tau=0.6, n_states=2, sup_gap=2),
              "1-step": dict(grad=1)}


@quiet
@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("mode", sorted(GRAD_MODES))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("jacobian", [False, True])
def test_no_grad_records_nothing_in_any_core_and_mode(xp, to_xp, core, mode, training,
                                                     jacobian):
    m = mlp_map(to_xp)
    p = {k: npdeq.Tensor(v, requires_grad=True) for k, v in m.params.items()}
    func = Counter(lambda z: m.func(z, **p))
    jac = dict(jac_loss_weight=0.5, jac_loss_freq=1.0) if jacobian else {}
    deq = CORES[core](f_max_iter=12, f_tol=1e-8, **GRAD_MODES[mode], **jac).train(training)

    def outputs():
        z_out, info = deq(func, m.z0)
        extra = info["solution"].jacobian_loss
        return z_out + ([extra] if extra is not None else []), info

    with npdeq.no_grad():
        states, info = outputs()
    assert all(not z.requires_grad and z.is_leaf for z in states)
    assert info["backward"] is None
    if not jacobian:     # the Jacobian estimate needs one VJP, made on a private graph
        assert not any(func.recording)
    assert all(t.grad is None for t in p.values())
    # outside no_grad a training call records, and backward fills every parameter's .grad
    states, info = outputs()
    assert all(z.requires_grad for z in states) == training
    if training:
        loss_of(states, [1.0] * len(states)).backward()
        assert all(t.grad is not None for t in p.values())


# --- settings that have no effect warn, once, at construction --------------------------------

@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("settings, keys", [
    (dict(ift=True, tau=0.5), "tau"),
    (dict(hook_ift=True, tau=0.5), "tau"),
    (dict(ift=True, sup_gap=2), "sup_gap"),
    (dict(ift=True, grad=2, sup_loc=[1]), "sup_loc, grad"),
    (dict(ift=True, grad=[3]), "grad"),
    (dict(b_tol=1e-8, b_max_iter=80), "b_max_iter, b_tol"),
    (dict(b_solver="anderson", grad=2), "b_solver"),
    (dict(b_stop_mode="rel"), "b_stop_mode"),
    (dict(ift=True, b_solver="direct", b_max_iter=10, b_stop_mode="rel"),
     "b_max_iter, b_stop_mode"),
    (dict(jac_loss_weight=0.5), "jac_loss_weight"),
    (dict(jac_loss_freq=0.5), "jac_loss_freq"),
    (dict(eval_factor=2.0, eval_f_max_iter=5), "eval_factor"),
    (dict(f_solver="simple_fixed_point_iter", f_tol=1e-5, f_stop_mode="rel"),
     "f_tol, f_stop_mode"),
])
def test_settings_without_effect_warn_naming_them(core, settings, keys):
    with pytest.warns(npdeq.core.ConfigWarning, match=f"{CORES[core].__name__}: {keys} ha") as w:
        get_deq(core=core, **settings)
    assert len(w) == 1 and w[0].filename == __file__        # the caller's line


@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("settings", [
    dict(ift=True, tau=0.5, n_states=2),          # the first state uses PhantomGrad
    dict(ift=True, tau=0.5, sup_gap=2, grad=2, indexing=[5]),
    dict(ift=True, grad=0), dict(ift=True, grad=1, tau=1.0, sup_loc=[]),  # defaults / off
    dict(tau=0.5, grad=2, sup_gap=1, sup_loc=[1]),
    dict(ift=True, b_solver="gmres", b_tol=1e-8, b_max_iter=80, b_stop_mode="rel"),
    dict(ift=True, b_solver="anderson", b_tol=1e-8),
    dict(ift=True, b_solver="direct"),
    dict(jac_loss_weight=0.5, jac_loss_freq=0.5),
    dict(eval_f_max_iter=5), dict(eval_factor=2.0),
    dict(f_solver="simple_fixed_point_iter"),
])
def test_settings_in_use_do_not_warn(core, settings):
    with warnings.catch_warnings():
        warnings.simplefilter("error", npdeq.core.ConfigWarning)
        get_deq(core=core, **settings)


def test_a_parsed_command_line_of_defaults_does_not_warn():
    import argparse

    parser = npdeq.add_deq_args(argparse.ArgumentParser())
    with warnings.catch_warnings():
        warnings.simplefilter("error", npdeq.core.ConfigWarning)
        get_deq(parser.parse_args(["--ift", "--core", "indexing"]))
    with pytest.warns(npdeq.core.ConfigWarning, match="tau"):
        get_deq(parser.parse_args(["--ift", "--tau", "0.6"]))


# --- solvers whose signature cannot take the core's call fail at construction ---------------

def test_a_backward_solver_that_cannot_take_the_call_fails_at_construction(monkeypatch):
    from npdeq.solver import registry

    def no_stop_mode(func, x0, max_iter=10, tol=1e-3, indexing=None):
        return fixed_point_iter(func, x0, max_iter=max_iter, tol=tol, indexing=indexing)

    def no_indexing(func, x0, max_iter=10, tol=1e-3, stop_mode="abs"):
        return fixed_point_iter(func, x0, max_iter=max_iter, tol=tol, stop_mode=stop_mode)

    monkeypatch.setitem(registry._SOLVERS, "no_stop_mode", no_stop_mode)
    monkeypatch.setitem(registry._SOLVERS, "no_indexing", no_indexing)
    for core in CORES.values():
        with pytest.raises(ValueError, match=r"b_solver 'no_stop_mode' cannot be called .*"
                                             r"stop_mode"):
            core(ift=True, b_solver="no_stop_mode")
        with pytest.raises(ValueError, match=r"f_solver 'no_indexing' cannot be called .*"
                                             r"indexing"):
            core(f_solver="no_indexing")
        # as a forward solver it is called without stop_mode (it does not take one): fine
        z_out, _ = core(f_solver="no_stop_mode", f_tol=1e-8)(halving, np.zeros((1, 2)))
        assert_close(z_out[-1], np.full((1, 2), 2.0), rtol=1e-6)
        with pytest.warns(npdeq.core.ConfigWarning, match="b_solver"):
            core(b_solver="no_stop_mode", ift=False)       # not the backward solver: unused
        core(ift=True, b_solver="no_indexing")              # the adjoint passes no indexing


@pytest.mark.parametrize("core", ["indexing", "sliced"])
@pytest.mark.parametrize("grad_mode", [dict(ift=True), dict(grad=2), dict(grad=1)])
def test_non_finite_values_from_the_gradient_steps_are_flagged(xp, to_xp, core, grad_mode):
    """The solve sees finite values; the gradient functors' calls of f (after it) do not."""
    bad_row = to_xp(np.array([[0.0], [np.inf], [0.0]]))
    calls = []

    def func(z):
        calls.append(1)
        return halving(z) + (bad_row if len(calls) > 3 else 0.0)

    deq = CORES[core](f_max_iter=3, f_tol=0.0, **grad_mode)
    with pytest.warns(npdeq.ConvergenceWarning, match="gradient steps") as record:
        z_out, info = deq(func, to_xp(np.zeros((3, 2))))
    assert {w.filename for w in record if "gradient steps" in str(w.message)} == {__file__}
    assert npdeq.backend.to_numpy(info["nonfinite"]).tolist() == [False, True, False]
    assert not npdeq.backend.to_numpy(info["converged"]).any()
    assert info["solution"].retcode[1] == "nonfinite"
    # with f_max_iter=0 (no solve, pure unrolling) the functors are the only calls of f
    calls[:] = [1, 1, 1]
    if core == "sliced":
        with pytest.warns(npdeq.ConvergenceWarning, match="gradient steps"):
            _, info = deq(func, to_xp(np.zeros((3, 2))), solver_kwargs={"f_max_iter": 0})
        assert npdeq.backend.to_numpy(info["nonfinite"]).tolist() == [False, True, False]
    # a finite run flags nothing and does not warn
    calls[:] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", npdeq.ConvergenceWarning)
        _, info = CORES[core](f_max_iter=30, f_tol=1e-6, **grad_mode)(halving,
                                                                    to_xp(np.zeros((3, 2))))
    assert not npdeq.backend.to_numpy(info["nonfinite"]).any()


# --- phantom_memory: what PhantomGrad keeps for the backward pass ---------------------------

@quiet
@pytest.mark.parametrize("core", ["indexing", "sliced"])
def test_phantom_memory_modes_give_the_same_gradients(xp, to_xp, core):
    m = mlp_map(to_xp)
    results, calls = {}, {}
    for memory in ("store", "recompute"):
        p = {k: npdeq.Tensor(v, requires_grad=True) for k, v in m.params.items()}
        func = Counter(lambda z: m.func(z, **p))
        deq = CORES[core](f_solver="anderson", f_max_iter=12, n_states=2, grad=3, tau=0.7,
                          phantom_memory=memory)
        assert deq.phantom_memory == memory
        z_out, _ = deq(func, m.z0)
        before = len(func.recording)
        loss_of(z_out, [1.0] * len(z_out)).backward()
        calls[memory] = len(func.recording) - before
        results[memory] = [z.numpy() for z in z_out] + [p[k].grad.numpy() for k in sorted(p)]
    for a, b in zip(results["store"], results["recompute"]):
        np.testing.assert_array_equal(a, b)
    assert calls["store"] == 0 and calls["recompute"] == 2 * 3   # 3 steps per state, 2 states


def test_phantom_memory_is_checked_and_warned_about_where_unused():
    with pytest.raises(ValueError, match="phantom_memory"):
        get_deq(phantom_memory="keep")
    with pytest.warns(npdeq.ConfigWarning, match="phantom_memory"):
        get_deq(ift=True, phantom_memory="recompute")


def test_fixed_point_takes_phantom_memory():
    W = npdeq.tensor(0.3 * np.eye(3), requires_grad=True)
    grads = []
    for memory in ("store", "recompute"):
        W.grad = None
        z, _ = npdeq.fixed_point(lambda z: npdeq.tanh(z @ W + 1.0), np.zeros((2, 3)), grad=4,
                                 tau=0.8, phantom_memory=memory)
        z.sum().backward()
        grads.append(W.grad.numpy())
    np.testing.assert_array_equal(*grads)
    with pytest.raises(ValueError, match="memory"):
        npdeq.fixed_point(lambda z: z * 0.5, np.zeros((1, 2)), grad=2, phantom_memory=None)


# --- b_fallback: the IFT adjoint's GMRES fallback as a config key ---------------------------

@pytest.mark.parametrize("fallback", ["gmres", None, "none"])
def test_b_fallback_reaches_the_adjoint_solve(fallback):
    # J = 1.5 I at every z: the fixed-point adjoint diverges, GMRES solves (I - J^T) u = g.
    b = npdeq.tensor(np.ones((2, 3)), requires_grad=True)
    deq = get_deq(ift=True, f_solver="anderson", f_max_iter=20, b_solver="fixed_point_iter",
                  b_max_iter=5, b_fallback=fallback)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z_out, info = deq(lambda z: 1.5 * z - 0.5 * b, np.zeros((2, 3)))
        z_out[-1].sum().backward()
    backward = info["backward"]
    if fallback == "gmres":
        assert bool(backward["fallback"].all()) and bool(backward["converged"].all())
        np.testing.assert_allclose(b.grad.numpy(), 1.0, rtol=1e-6)   # dz*/db = -0.5/(1-1.5)
    else:
        assert not bool(backward["fallback"].any()) and not bool(backward["converged"].any())
        assert any(issubclass(w.category, npdeq.ConvergenceWarning) for w in caught)


def test_b_fallback_is_checked_and_warned_about_where_unused():
    with pytest.raises(ValueError, match="b_fallback"):
        get_deq(b_fallback="lgmres")
    with pytest.warns(npdeq.ConfigWarning, match="b_fallback"):
        get_deq(ift=False, b_fallback=None)
    with pytest.warns(npdeq.ConfigWarning, match="b_fallback"):
        get_deq(ift=True, b_solver="direct", b_fallback=None)
