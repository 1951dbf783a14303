"""npdeq: Deep Equilibrium models and implicit layers on NumPy and CuPy."""

from npdeq.exceptions import ConvergenceWarning

__version__ = "0.1.0"
