"""The Gram eigendecompositions behind the short side of an MLP matrix (and of the
embedding), and where they run.

The ``d_model``-side singular vectors of a ``d_model x d_mlp`` matrix ``W`` are the
eigenvectors of its ``d_model x d_model`` Gram, formed and solved in float64
(:func:`core.svd.decompose.token_side_svd`). Two routes (``Settings.gram_eigh``):

* ``device`` (the default): on the decomposition's device, kind after kind. On the CPU
  a pool of single-threaded LAPACK workers (:func:`gram_eighs`); on a GPU cuSOLVER's
  ``syevd`` in batched groups (:func:`batched_gram_eighs`).
* ``host``: the Grams are formed on the device (one float64 product each) and solved on
  the host by a pool of single-threaded LAPACK workers that :class:`HostGrams` starts
  before the first kind is decomposed. On a GPU the solves then run while the device
  decomposes and projects the OV heads. That is what the route is for: on one H200
  (2026-12-04) cuSOLVER's float64 ``syevd`` took 15-28 ms a matrix at ``d_model``
  1024-1600 however the batch was issued, and the precompute waited 0.72 s of
  GPT-2-medium's 2.3 s and 2.66 s of GPT-2-XL's 9.5 s for it. Whether the host route
  beats it there is for ``scripts/gpu_paths.py`` to measure; on a CPU both routes run the
  same solves, the host one side by side with the OV stage.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

#: Matrices per batched Gram eigendecomposition on a GPU.
GPU_GROUP = 8

Eigh = tuple[Float[Tensor, " d"], Float[Tensor, "d d"]]


def gram_eigh(W: Float[Tensor, "m n"], side: str) -> Eigh:
    """Eigenvalues (ascending) and eigenvectors of ``W W^T`` (``side="in"``) or ``W^T W``,
    formed and solved in float64 on ``W``'s device.

    On the CPU this goes through NumPy/SciPy (OpenBLAS): on the AMD CPUs we measured,
    their float64 GEMM and ``syevd`` take about half the time of torch's MKL builds.
    """
    if W.device.type != "cpu":
        Wd = W.to(torch.float64)
        return torch.linalg.eigh(Wd @ Wd.T if side == "in" else Wd.T @ Wd)
    import numpy as np

    Wn = W.detach().numpy().astype(np.float64)
    return _host_eigh(Wn @ Wn.T if side == "in" else Wn.T @ Wn)


def _host_eigh(G: Any) -> Eigh:
    """``syevd`` of the float64 NumPy array ``G`` (overwritten), as torch tensors."""
    import numpy as np
    import scipy.linalg

    ev, Q = scipy.linalg.eigh(G, driver="evd", overwrite_a=True, check_finite=False)
    return torch.from_numpy(ev), torch.from_numpy(np.ascontiguousarray(Q))


def gram_eighs(flat: Float[Tensor, "b m n"], side: str) -> list[Eigh]:
    """:func:`gram_eigh` of every matrix of the batch, on its device (route ``device``).

    On the CPU the matrices are spread over ``torch.get_num_threads()`` worker threads,
    each running single-threaded BLAS/LAPACK: ``syevd`` hardly gains from threads, and
    on the 2-core machine we measured, 12 GPT-2-small-sized solves took 1.5 s this way
    against 2.9-14 s with a 2-thread BLAS one after the other.
    """
    n = flat.shape[0]
    workers = min(n, torch.get_num_threads())
    if flat.device.type != "cpu":
        return batched_gram_eighs(flat, side)
    if workers < 2:
        return [gram_eigh(flat[b], side) for b in range(n)]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: gram_eigh(flat[b], side), range(n)))


def batched_gram_eighs(
    flat: Float[Tensor, "b m n"], side: str, group: int = GPU_GROUP
) -> list[Eigh]:
    """:func:`gram_eigh` of every matrix, ``group`` at a time through batched float64
    products and one batched ``eigh`` call: the GPU route, with fewer launches and host
    round trips than one matrix at a time (``group`` float64 Grams of GPT-2 XL's MLPs
    stay under 1 GB).
    """
    out: list[Eigh] = []
    for b0 in range(0, flat.shape[0], group):
        Wd = flat[b0 : b0 + group].to(torch.float64)
        G = Wd @ Wd.transpose(-1, -2) if side == "in" else Wd.transpose(-1, -2) @ Wd
        ev, Q = torch.linalg.eigh(G)
        out += list(zip(ev.unbind(0), Q.unbind(0), strict=True))
    return out


def host_gram_eigh(W: Float[Tensor, "m n"], side: str) -> Eigh:
    """:func:`gram_eigh` with the Gram formed on ``W``'s device and solved on the host;
    the results are on the CPU. Off the CPU the work is issued on a stream of its own, so
    a worker thread waits for its own product only, not for what the main thread queued.
    """
    if W.device.type == "cpu":
        return gram_eigh(W, side)
    stream = torch.cuda.Stream(W.device)
    with torch.cuda.stream(stream):
        Wd = W.to(torch.float64)
        G = (Wd @ Wd.T if side == "in" else Wd.T @ Wd).cpu()
    return _host_eigh(G.numpy())


class HostGrams:
    """Route ``host``: Gram eigendecompositions started on host threads at once.

    Every matrix of some kinds is solved on a pool of host threads from the moment the
    block is entered; each kind's solves are taken when its decomposition needs them
    (the pool and the one-thread BLAS limit end with the block; solves not taken by then
    are cancelled)::

        with HostGrams({"mlp_in": (W_in, "in"), "mlp_out": (W_out, "out")}) as grams:
            ...                                # the other kinds, meanwhile
            eighs = grams.take("mlp_in")       # waits for that kind's solves

    The matrices are ``[b, m, n]`` batches, on any device; when a worker reads them from
    a GPU, the main thread's copy of them there has finished (the block's entry waits
    for the device).
    """

    def __init__(self, matrices: dict[str, tuple[Tensor, str]], workers: int | None = None):
        self._matrices = matrices
        self._workers = workers or max(1, torch.get_num_threads() - 1)
        self._futures: dict[str, list[Future[Eigh]]] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> HostGrams:
        if not self._matrices:
            return self
        from threadpoolctl import threadpool_limits

        for W, _ in self._matrices.values():
            if W.device.type == "cuda":
                torch.cuda.synchronize(W.device)
        self._stack.enter_context(threadpool_limits(1, user_api="blas"))
        pool = self._stack.enter_context(ThreadPoolExecutor(self._workers))
        # Cancelled first on exit (ExitStack unwinds last-in first): a failed build does
        # not wait for solves nobody will take.
        self._stack.callback(lambda: [f.cancel() for fs in self._futures.values() for f in fs])
        for kind, (W, side) in self._matrices.items():
            self._futures[kind] = [
                pool.submit(host_gram_eigh, W[b], side) for b in range(W.shape[0])
            ]
        return self

    def take(self, kind: str) -> list[Eigh] | None:
        """``kind``'s solves, in matrix order, once all are done; ``None`` when this
        block was not asked for ``kind`` (or it was taken already).
        """
        futures = self._futures.pop(kind, None)
        return None if futures is None else [f.result() for f in futures]

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def sym_eigh(G: Float[Tensor, "d d"]) -> Eigh:
    """Eigenvalues (ascending) and eigenvectors of a symmetric ``G``, in ``G``'s dtype.

    On the CPU through NumPy's LAPACK with one BLAS thread: a threaded ``syevd`` of a
    576 x 576 float64 matrix (SmolLM2's unembedding Gram) took 4-7 s on a 2-core machine
    under load where one thread took 0.1 s (the threads spin against each other).
    """
    if G.device.type != "cpu":
        return torch.linalg.eigh(G)
    import numpy as np
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        ev, Q = np.linalg.eigh(G.detach().numpy())
    return torch.from_numpy(ev), torch.from_numpy(np.ascontiguousarray(Q))
