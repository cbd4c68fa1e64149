"""Which images train, which validate and which are kept for testing: seeded, disjoint and stratified.

NumPy only (no TensorFlow), so the dataset can set aside its test set without loading the training stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from unet.errors import UserError


@dataclass(frozen=True)
class Split:
    """Which stems train and which validate; recorded in the run's dataset.json."""

    train: list[str]
    val: list[str]


def validation_count(pairs: int, validation_split: float) -> int:
    """How many of `pairs` validate: at least one, and at least one left to train on."""
    return min(max(1, round(pairs * validation_split)), pairs - 1)


def training_count(pairs: int, validation_split: float) -> int:
    """How many of `pairs` train, as `split_stems` will split them (for estimates before training)."""
    return max(1, pairs - validation_count(pairs, validation_split)) if pairs >= 2 else max(1, pairs)


def split_stems(stems: Sequence[str], validation_split: float, seed: int,
                classes_of: Callable[[str], set[int]] | None = None,
                group_of: Callable[[str], str] | None = None) -> Split:
    """A fixed split: the same stems, fraction and seed always give the same, disjoint lists.

    At least one pair validates and at least one trains, so a dataset of 2 pairs can still run. With `classes_of`
    (the classes in a stem's mask) the split is stratified: a class found in two or more images but drawn into
    training only is swapped into validation, so that validation scores every class the data allow. Without that,
    a rare class absent from validation is never scored, and the best model is chosen without it.

    With `group_of` (a slice's stack), the slices of one stack stay on one side: neighbouring slices look alike, so
    a stack split across training and validation would score the network on near-copies of what it learned.
    """
    stems = sorted(stems)
    if len(stems) < 2:
        raise UserError(f"the dataset has {len(stems)} image/mask pair(s); training needs at least 2 "
                        "(one to learn from, one to check on)")
    members: dict[str, list[str]] = {}
    for stem in stems:
        members.setdefault(group_of(stem) if group_of else stem, []).append(stem)
    if len(members) < 2:  # one stack only: its slices are all there is to split
        members = {stem: [stem] for stem in stems}
    groups = sorted(members)
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    wanted = validation_count(len(stems), validation_split)
    val: list[str] = []
    for group in order[:-1]:  # at least one group trains
        if sum(len(members[g]) for g in val) >= wanted:
            break
        val.append(group)
    train = [g for g in order if g not in val]
    if classes_of is not None:
        present = {g: set().union(*(classes_of(s) for s in members[g])) for g in groups}
        _stratify(val, train, present)
    return Split(train=sorted(s for g in train for s in members[g]), val=sorted(s for g in val for s in members[g]))


def _stratify(val: list[str], train: list[str], present: dict[str, set[int]]) -> None:
    """Swap images between `val` and `train` (in place) until every class in 2+ images is in both, where possible."""
    counts: dict[int, int] = {}
    for classes in present.values():
        for k in classes:
            counts[k] = counts.get(k, 0) + 1
    for k in sorted(counts, key=lambda c: (counts[c], c)):  # rarest first
        if counts[k] < 2 or any(k in present[s] for s in val):
            continue
        incoming = next(s for s in train if k in present[s])

        def held_elsewhere(stem: str) -> bool:  # every class of `stem` stays in validation without it
            return all(any(c in present[o] for o in val if o != stem) for c in present[stem] if c != 0)

        outgoing = next((s for s in reversed(val) if held_elsewhere(s)), None)
        if outgoing is None:
            continue
        val[val.index(outgoing)], train[train.index(incoming)] = incoming, outgoing
