"""How a model's loss is measured and its products computed: the options every Hessian tool shares.

They travel together from the public functions (which take them as keywords) through the operator to
the traced functions, so they are one frozen value instead of six arguments threaded everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, TypedDict

__all__ = ["DEFAULT_BATCH_SIZE", "MODES", "ProductKeywords", "ProductOptions"]

DEFAULT_BATCH_SIZE = 1024
MODES = ("forward", "reverse")


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
    """

    loss: Any = None
    training: bool = False
    mode: str = "forward"
    strategy: Any = None
    batch_size: int = DEFAULT_BATCH_SIZE
    architecture: Hashable | None = None
    jit_compile: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'forward' or 'reverse', got {self.mode!r}")
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
