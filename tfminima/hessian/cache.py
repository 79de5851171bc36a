"""The memo of traced product functions, which never keeps a model alive.

Tracing a Hessian-vector product costs about as much as ~50 products on a small model, and a sweep
builds one model a run, so traces are kept:

* per model (``architecture=None``): the entry lives exactly as long as the model (a weak key);
* per architecture: ``architecture`` is a hashable key that the caller guarantees names how the model
  was built (layers, input shape, dtype policy; not its weights). Models with the same key and the same
  variable layout share one entry; the :data:`SHARED_TRACES` most recently used entries are kept.

A trace runs the Python code of *a* model of its architecture (``stateless_call`` at the variable values
passed in). A shared entry therefore holds the models that used it weakly and traces with any that is
still alive -- the caller that triggers a trace holds its own model, so one always is -- and a model the
user drops is freed even while its architecture's trace stays cached.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["SHARED_TRACES", "Template", "loss_key", "shareable", "traced"]

Template = Callable[[], Any]
"""Returns the model whose code a trace runs (called at trace time, never stored)."""

SHARED_TRACES = 4  # architectures whose traces are kept

_PER_MODEL: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()
_SHARED: collections.OrderedDict[Any, tuple[Any, _LiveModels]] = collections.OrderedDict()


class _LiveModels:
    """The template of a shared entry: any still-alive model among those that used it (held weakly)."""

    def __init__(self):
        self._models: weakref.WeakSet = weakref.WeakSet()

    def add(self, model) -> None:
        self._models.add(model)

    def __call__(self):
        for model in self._models:
            return model
        raise RuntimeError("no model of this architecture is alive to trace the products with")


def traced(model, key: tuple, make: Callable[[Template], Any], architecture: Hashable | None = None):
    """The memoised ``make(template)`` for ``model`` and ``key`` (what and how the functions compute).

    ``make`` builds the traced functions for the model ``template()`` and must not keep the model itself
    (only the template). Per model unless ``architecture`` is given (see the module docstring).
    """
    if architecture is None:
        per_model = _PER_MODEL.setdefault(model, {})
        full = key + (tuple(id(v) for v in model.variables),)
        if full not in per_model:
            per_model[full] = make(weakref.ref(model))
        return per_model[full]
    layout = tuple((tuple(v.shape), str(v.dtype), bool(v.trainable)) for v in model.variables)
    full = (architecture, layout) + key
    entry = _SHARED.get(full)
    if entry is not None:
        _SHARED.move_to_end(full)
        entry[1].add(model)
        return entry[0]
    users = _LiveModels()
    users.add(model)
    value = make(users)
    _SHARED[full] = (value, users)
    while len(_SHARED) > SHARED_TRACES:
        _SHARED.popitem(last=False)
    return value


def shareable(architecture: Hashable | None, strategy) -> Hashable | None:
    """``architecture`` when traces may be shared under ``strategy``, else None (one trace a model).

    Under a strategy with several replicas (MirroredStrategy, multi-worker) the replicas' code runs in
    threads of their own, and there a shared trace's ``stateless_call`` computed with the *template's*
    variables, not the values passed in: the second model of a sweep got the first one's loss,
    products and evaluation (tests/test_hessian_cache_distributed.py). One-replica strategies share.
    """
    return architecture if getattr(strategy, "num_replicas_in_sync", 1) <= 1 else None


def loss_key(model, loss):
    """Cache key of a loss argument: the object itself, or the identity of the compiled loss."""
    return loss if loss is not None else ("compiled", id(getattr(model, "loss", None)))
