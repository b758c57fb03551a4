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


def packed_batch(batch_size: int, rows: int, packed_rows: int, rows_per_pass: int) -> tuple[int, int]:
    """(packed rows per device per step, packed rows per pass) for train.packing.

    train.batch_size counts the dataset's rows whether packing is on or off: packing takes the padding
    out of a step, it does not make the step bigger. A step takes the most packed rows that hold at most
    batch_size rows on average (`rows` rows packed into `packed_rows`), at least one, so a packed run
    has at least as many optimizer steps as the unpacked one and no step longer than its padded batch
    (the LR schedule, the time to the first step and an out-of-memory error at step 1 stay as they
    were). A pass holds at most rows_per_pass of them (train.micro_batch_size); the step is rounded
    down to whole passes."""
    per_step = max(1, batch_size * packed_rows // rows) if rows > 0 and packed_rows > 0 else max(1, batch_size)
    per_step = min(per_step, max(1, batch_size))
    per_pass = max(1, min(rows_per_pass, per_step))
    return per_step - per_step % per_pass, per_pass


def total_steps(per_epoch: int, epochs: float, max_steps: int = -1) -> int:
    """Optimizer steps of a whole run: `max_steps` when set (> 0), else whole epochs rounded up
    (at least one step)."""
    if max_steps > 0:
        return max_steps
    return max(1, per_epoch * math.ceil(epochs))
