"""Statistics of recorded series (training trajectories, SGD chains) shared by the paper
packages: the integrated autocorrelation time, hence the effective number of independent samples
of a window (Sokal 1997, "Monte Carlo methods in statistical mechanics", Sec. 3).

Example:
    >>> import torch
    >>> x = torch.randn(4000, generator=torch.Generator(), dtype=torch.float64)
    >>> round(integrated_autocorrelation_time(x))
    1
"""

from __future__ import annotations

import torch

__all__ = ["integrated_autocorrelation_time"]


def integrated_autocorrelation_time(series: torch.Tensor, c: float = 5.0) -> float:
    """Integrated autocorrelation time ``tau = 1 + 2 sum_{t>=1} rho(t)`` of a 1-D series, summed
    up to Sokal's automatic window (the first ``M >= c tau(M)``); ``T / tau`` is the effective
    number of independent samples.

    Example:
        >>> g = torch.Generator()
        >>> white = torch.randn(4000, generator=g, dtype=torch.float64)
        >>> round(integrated_autocorrelation_time(white))
        1
    """
    x = series.double() - series.double().mean()
    T = x.shape[0]
    f = torch.fft.rfft(x, n=2 * T)
    acf = torch.fft.irfft(f * f.conj(), n=2 * T)[:T]
    acf = acf / acf[0]
    tau = 1.0
    for m in range(1, T):
        tau += 2.0 * float(acf[m])
        if m >= c * tau:
            break
    return max(tau, 1.0)
