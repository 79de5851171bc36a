"""The edge of stability: the largest curvature a step of SGD can stay at, and how close a measurement is.

On a quadratic of curvature λ, heavy-ball gradient descent ``v ← βv − η∇L, θ ← θ + v`` is stable only for
``λ < 2(1+β)/η``, and Nesterov's variant (Keras' ``nesterov=True``) only for ``λ < 2(1+β)/((1+2β)η)``.
Full-batch training sharpens until λ_max reaches that edge and hovers there (Cohen et al. 2021); under
mini-batch SGD the batch sharpness settles there instead (Andreyev and Beneventano, arXiv 2412.20553).

One formula for every reader: the monitors log ``stability`` with it, the report draws and tables it.
``lr`` is always the nominal η of the schedule; SVAG with ``l > 1`` steps at η/l (Li, Malladi, Arora 2021),
so its edge is l times higher. No TensorFlow here.
"""

from __future__ import annotations

__all__ = ["edge_of_stability", "stability_ratio"]


def edge_of_stability(lr: float, momentum: float = 0.0, *, nesterov: bool = False, svag: int = 1) -> float:
    """``2(1+β)/η_step`` (heavy ball) or ``2(1+β)/((1+2β)η_step)`` (Nesterov), with ``η_step = lr/svag``
    (``lr > 0``, ``svag >= 1``: the config's ranges)."""
    step = lr / svag
    return 2.0 * (1.0 + momentum) / (step * ((1.0 + 2.0 * momentum) if nesterov else 1.0))


def stability_ratio(
    curvature: float, lr: float, momentum: float = 0.0, *, nesterov: bool = False, svag: int = 1
) -> float:
    """``curvature / edge``: λ_max·η/(2(1+β)) for plain heavy ball; 1 is the edge of stability."""
    return curvature / edge_of_stability(lr, momentum, nesterov=nesterov, svag=svag)
