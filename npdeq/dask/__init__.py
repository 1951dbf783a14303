"""Many independent fixed points on Dask arrays: batch solving and gradients per chunk.

For very many independent equilibrium problems (a steady state per parameter set, per site,
per simulation) whose data is a Dask array chunked along the batch axis 0, with NumPy or
CuPy chunks:

- :func:`fixed_point` solves every chunk on its worker with :func:`npdeq.fixed_point` and
  returns z* and the per-sample statistics as lazy Dask arrays;
- :func:`value_and_grad` computes a summed (or mean) loss over all samples and its gradient
  with respect to shared parameters, each chunk's IFT or PhantomGrad gradient on its worker,
  combined by Dask's tree reduction.

Nothing is computed until you ask (``dask.compute``), under the threaded scheduler or a
``distributed.Client``. ``func``, ``loss_fn`` and shared parameters are each one key of the
graph, sent once to each worker rather than once per chunk. Dask is imported when these
functions are called: ``import npdeq`` (and ``import npdeq.dask``) never imports it. Install
with ``pip install 'npdeq[dask]'``.
"""

from npdeq.dask.gradients import value_and_grad
from npdeq.dask.solve import fixed_point

__all__ = ["fixed_point", "value_and_grad"]
