"""How a model's loss is measured and its products computed: the options every Hessian tool shares.

They travel together from the public functions (which take them as keywords) through the operator to
the traced functions, so they are one frozen value instead of six arguments threaded everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, TypedDict

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MEMORY_BUDGET", "HVP_MODES", "MODES", "ProductKeywords", "ProductOptions"]

DEFAULT_BATCH_SIZE = 1024
DEFAULT_MEMORY_BUDGET = 2**30  # bytes: 1 GiB
MODES = ("forward", "reverse")
HVP_MODES = ("auto", "retained", "recomputed")


@dataclasses.dataclass(frozen=True)
class ProductOptions:
    """The options of a measurement's products.

    ``loss``: the per-example loss (a callable, a Keras ``Loss`` or its name; None: the model's compiled
    loss, else sparse categorical cross-entropy from logits). ``training``: run the model in training
    mode (default inference mode). ``mode``: Hessian-vector products forward-over-backward
    (``"forward"``) or double backward (``"reverse"``); both exact. ``strategy``: the ``tf.distribute``
    strategy (None: the current one). ``batch_size``: examples a batch when the data are placed.
    ``architecture``: a hashable key naming how the model was built, so that models built alike share one
    trace (see :mod:`tfminima.hessian.cache`). ``jit_compile``: XLA-compile the products.

    ``hvp_mode``: ``"retained"`` computes the forward pass and the first gradient once and keeps them
    for many products (a block of vectors known in advance, or a whole Lanczos run in one traced loop):
    each product then costs about one gradient. ``"recomputed"`` redoes both for every product (about
    two gradients a product) and keeps nothing. ``"auto"`` (default) retains what fits in
    ``memory_budget`` bytes (the activations kept, see :mod:`tfminima.hessian.memory`). Results state
    what was used in their own ``hvp_mode``. ``mode`` applies to recomputed products; retained ones
    are always double backward (the only way to share the first gradient).
    """

    loss: Any = None
    training: bool = False
    mode: str = "forward"
    strategy: Any = None
    batch_size: int = DEFAULT_BATCH_SIZE
    architecture: Hashable | None = None
    jit_compile: bool = False
    hvp_mode: str = "auto"
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'forward' or 'reverse', got {self.mode!r}")
        if self.hvp_mode not in HVP_MODES:
            raise ValueError(f"hvp_mode must be 'auto', 'retained' or 'recomputed', got {self.hvp_mode!r}")
        if self.memory_budget < 1:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}")
        object.__setattr__(self, "training", bool(self.training))
        object.__setattr__(self, "jit_compile", bool(self.jit_compile))

    @classmethod
    def of(cls, options: ProductOptions | None = None, **changes) -> ProductOptions:
        """``options`` (default: all defaults) with ``changes``: what a function taking both gets."""
        if options is not None and not isinstance(options, cls):
            raise TypeError(f"options must be a ProductOptions, got {type(options).__name__}")
        unknown = sorted(set(changes) - set(_NAMES))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (product options: {', '.join(_NAMES)})")
        base = cls() if options is None else options
        return dataclasses.replace(base, **changes) if changes else base

    def resolved(self) -> ProductOptions:
        """These options with ``strategy`` fixed to the current one if it was None."""
        if self.strategy is not None:
            return self
        import tensorflow as tf  # only here: the options themselves are plain values

        return dataclasses.replace(self, strategy=tf.distribute.get_strategy())


_NAMES = tuple(f.name for f in dataclasses.fields(ProductOptions))


class ProductKeywords(TypedDict, total=False):
    """:class:`ProductOptions`' fields as keyword arguments (``**options: Unpack[ProductKeywords]``)."""

    loss: Any
    training: bool
    mode: str
    strategy: Any
    batch_size: int
    architecture: Hashable | None
    jit_compile: bool
    hvp_mode: str
    memory_budget: int
