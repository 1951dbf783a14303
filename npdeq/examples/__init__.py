"""Runnable examples of npdeq (each module has a ``main(argv)`` and runs with ``python -m``).

Examples may import NumPy (and optional plotting libraries, lazily): they sit at the top of
the layer stack and are not part of the library's array-namespace-generic core.
"""
