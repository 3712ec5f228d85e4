"""When the serving benchmark sends each request: vLLM's Poisson / gamma arrival process."""

from __future__ import annotations


def arrival_times(num: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times of ``num`` requests in seconds from the start, as vLLM's ``get_request``:
    gaps drawn from a gamma distribution of shape ``burstiness`` and mean ``1/request_rate``
    (``burstiness`` 1: exponential, a Poisson process; ``inf``: constant gaps) with
    ``numpy.random.RandomState(seed)`` — the draws vLLM makes after ``np.random.seed(seed)`` —
    then scaled so the last request goes out at ``num / request_rate``. All 0 for rate ``inf``.
    """
    import numpy as np

    if request_rate == float("inf"):
        return [0.0] * num
    if burstiness == float("inf"):
        gaps = [1.0 / request_rate] * num
    else:
        rng = np.random.RandomState(seed)
        theta = 1.0 / (request_rate * burstiness)
        gaps = [float(rng.gamma(shape=burstiness, scale=theta)) for _ in range(num)]
    times = []
    total = 0.0
    for gap in gaps:
        total += gap
        times.append(total)
    if times and times[-1] != 0:
        factor = (num / request_rate) / times[-1]
        times = [t * factor for t in times]
    return times
