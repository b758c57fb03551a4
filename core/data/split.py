"""Train / validation split: seeded, and stratified when the rows carry a label.

`split_indices(n, fraction, seed, labels=None)` returns two sorted index lists. With labels, each label
keeps its share in both parts (at least one validation row per label that has two or more rows), so a
90/10 label mix stays 90/10 in validation. The same (n, fraction, seed, labels) always gives the same
split, so a resumed run validates on the same rows.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Hashable, Sequence

MIN_ROWS_TO_SPLIT = 10


def validation_size(n: int, fraction: float) -> int:
    if fraction <= 0 or n < MIN_ROWS_TO_SPLIT:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def split_indices(n: int, fraction: float, seed: int,
                  labels: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """(train indices, validation indices). No split (all train) below MIN_ROWS_TO_SPLIT rows."""
    k = validation_size(n, fraction)
    if k == 0:
        return list(range(n)), []
    rng = random.Random(seed)
    if labels is None or len(set(labels)) < 2:
        order = list(range(n))
        rng.shuffle(order)
        return sorted(order[k:]), sorted(order[:k])
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        groups[lab].append(i)
    val: list[int] = []
    # largest remainder: each label gets its proportional share of the k validation rows
    shares = {lab: len(ix) * k / n for lab, ix in groups.items()}
    take = {lab: int(s) for lab, s in shares.items()}
    rest = k - sum(take.values())
    for lab in sorted(groups, key=lambda g: (-(shares[g] - take[g]), str(g)))[:rest]:
        take[lab] += 1
    for lab in sorted(groups, key=str):
        ix = groups[lab][:]
        rng.shuffle(ix)
        t = take[lab]
        if t == 0 and len(ix) >= 2 and fraction > 0:
            t = 1
        val += ix[: min(t, len(ix) - 1) if len(ix) > 1 else 0]
    vs = set(val)
    return [i for i in range(n) if i not in vs], sorted(val)
