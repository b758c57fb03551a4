"""Effective batch and steps per epoch: the one home of both rules.

The dataset statistics (core.data.stats), the wizard's hyperparameter and dataset steps and the
training process all count steps with these, so a figure shown before a run is the one the run has.
`world_size` is the number of processes that train together (core.hardware.run_world_size).
"""

from __future__ import annotations

import math


def effective_batch(batch_size: int, gradient_accumulation_steps: int = 1, world_size: int = 1) -> int:
    """Rows per optimizer step: batch per device x accumulation x processes."""
    return max(1, batch_size) * max(1, gradient_accumulation_steps) * max(1, world_size)


def steps_per_epoch(rows: float, effective: int) -> int:
    """Optimizer steps in one pass over `rows` training rows (or packed sequences); 0 for no rows.
    The last, partial batch is a step too."""
    return math.ceil(rows / max(1, effective)) if rows > 0 else 0


def total_steps(per_epoch: int, epochs: float, max_steps: int = -1) -> int:
    """Optimizer steps of a whole run: `max_steps` when set (> 0), else whole epochs rounded up
    (at least one step)."""
    if max_steps > 0:
        return max_steps
    return max(1, per_epoch * math.ceil(epochs))
