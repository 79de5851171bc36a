"""How much a retained product keeps, and what fits in a memory budget.

A retained product keeps the forward pass and the first gradient of its batch on a tape for as long as
its block (or its Lanczos run) lasts; a recomputed one frees them after every product. What is kept is
measured, not guessed from layer types: the bytes of the floating-point tensors that the traced forward
pass produces (:func:`graph_tensor_bytes`), times :data:`RETAINED_FACTOR` for the first gradient kept,
plus :data:`PRODUCT_FACTOR` for each of the :data:`PARALLEL_PRODUCTS` second backward passes in flight.
The factors are calibrated on the benchmark's batch-norm CNN (BENCHMARKS.md: peak memory 3.5× its
forward pass's tensors above the process's baseline with a block in flight). :func:`plan_block` turns
that into the block size a budget allows.
"""

from __future__ import annotations

__all__ = [
    "MAX_BLOCK",
    "PARALLEL_PRODUCTS",
    "PRODUCT_FACTOR",
    "RETAINED_FACTOR",
    "graph_tensor_bytes",
    "plan_block",
    "retained_bytes",
]

RETAINED_FACTOR = 1.5
"""What a retained first gradient keeps, in forward passes: the activations and the first backward
pass's intermediates that the second backward pass reads."""
PRODUCT_FACTOR = 1.0
"""What one second backward pass in flight holds, in forward passes."""
PARALLEL_PRODUCTS = 2
"""Second backward passes a block runs at once (more did not help on 2 cores)."""
MAX_BLOCK = 128
"""Vectors a block at most: beyond this the forward pass is already <1 % of the block."""

_SKIPPED_OPS = {"Placeholder", "Const", "ReadVariableOp", "VarHandleOp", "Identity", "NoOp"}


def graph_tensor_bytes(graph) -> int:
    """Bytes of the floating-point tensors a traced graph's operations produce (inputs and constants
    excluded): an upper bound of the activations it keeps, since every intermediate is counted."""
    total = 0
    for op in graph.get_operations():
        if op.type in _SKIPPED_OPS:
            continue
        for tensor in op.outputs:
            if tensor.dtype.is_floating and tensor.shape.is_fully_defined():
                total += tensor.shape.num_elements() * tensor.dtype.size
    return total


def retained_bytes(forward_bytes: int) -> int:
    """Bytes a retained product computation holds: the first gradient kept, and the products in flight."""
    return int(forward_bytes * (RETAINED_FACTOR + PARALLEL_PRODUCTS * PRODUCT_FACTOR))


def plan_block(budget: int, kept_bytes: int, n: int) -> int:
    """The block size that fits what is left of ``budget`` after ``kept_bytes``: each vector of a block
    costs its float64 input and output (``16 n`` bytes); at least 1, at most :data:`MAX_BLOCK`."""
    room = max(budget - kept_bytes, 0)
    return int(max(1, min(MAX_BLOCK, room // (16 * max(n, 1)))))
