"""The solvers' BLAS limit: one thread inside a measurement, the user's setting back after it, and the
library scan (~5 ms) made once a process rather than twice a measurement."""

import numpy as np
from threadpoolctl import threadpool_info

from tfminima.hessian import solvers


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_runs_on_one_thread_inside_and_as_before_after():
    np.ones((4, 4)) @ np.ones((4, 4))  # NumPy's BLAS is loaded
    before = _blas_threads()
    assert before, "no BLAS library found to limit"
    solvers._blas_controller.cache_clear()
    for _ in range(3):
        with solvers.solver_context():
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == before
    assert solvers._blas_controller.cache_info().misses == 1  # one library scan for the three
