"""Runnable examples of npdeq (each module has a ``main(argv)`` and runs with ``python -m``).

The examples are applications of the library, not part of its array-namespace-generic core:
they use NumPy directly for their data and reports, and plotting libraries where installed.
"""
