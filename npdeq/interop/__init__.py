"""Bridges from other autodiff systems to npdeq's solvers and gradient rules.

- :mod:`npdeq.interop.autograd`: ``fixed_point`` as a HIPS autograd primitive (needs the
  optional ``autograd`` extra; import the submodule explicitly).

Nothing is imported here, so ``import npdeq.interop`` never needs an optional dependency.
"""
