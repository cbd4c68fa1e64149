"""What checking a dataset found, in plain words: one `Problem` per file, gathered in a `DatasetReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (`file` is its path inside the dataset, e.g. 'masks/a.png').

    `skipped` says whether the file was left out; a warning (a mask with no foreground) keeps it.
    """

    file: str
    problem: str
    skipped: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "problem": self.problem}


@dataclass
class DatasetReport:
    """The result of checking a source: how many pairs are usable, the classes, and every problem."""

    pairs: int = 0
    classes: list[dict[str, Any]] = field(default_factory=list)  # {"index", "name", "pixels", "color", "value"}
    problems: list[Problem] = field(default_factory=list)
    image_sizes: dict[str, Any] = field(default_factory=dict)  # {"min": [h, w], "max": [h, w], "distinct": n}
    channels: int = 0
    mask_kind: str = ""
    objects: dict[str, int] = field(default_factory=dict)  # instance label masks: objects per image, by file
    layout: str = ""  # the folder convention recognised, e.g. "BiaPy (x / y)"
    test_pairs: int = 0  # pairs from the test part of a train/test tree, kept as the test set
    found: str = ""  # what the files are, e.g. "12 stacks of 25 planes (each slice an image): 300 images, 2 channels"
    intensity: str = ""  # the rule that scales the images for the network, in words

    def add(self, file: str, problem: str, skipped: bool = True) -> None:
        self.problems.append(Problem(file, problem, skipped))

    @property
    def skipped_files(self) -> int:
        return len({p.file for p in self.problems if p.skipped})

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "classes": self.classes,
            "problems": [p.to_dict() for p in self.problems],
            "image_sizes": self.image_sizes,
            "channels": self.channels,
            "mask_kind": self.mask_kind,
            "objects_per_image": self.objects,
            "layout": self.layout,
            "test_pairs": self.test_pairs,
            "found": self.found,
            "intensity": self.intensity,
        }

    def summary(self) -> str:
        """One line for the user, e.g. '28 pairs ready, 2 files skipped, 1 warning'."""
        parts = [f"{self.pairs} pair{'s' if self.pairs != 1 else ''} ready"]
        if self.layout and self.layout != "images / masks":
            parts[0] += f" (layout: {self.layout})"
        if self.test_pairs:
            parts.append(f"{self.test_pairs} of them kept as the test set")
        skipped = self.skipped_files
        if skipped:
            parts.append(f"{skipped} file{'s' if skipped != 1 else ''} skipped")
        warnings = sum(1 for p in self.problems if not p.skipped)
        if warnings:
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
        if self.classes:
            parts.append(f"{len(self.classes)} classes ({', '.join(c['name'] for c in self.classes)})")
        if self.objects:
            counts = sorted(self.objects.values())
            parts.append(f"{counts[0]} to {counts[-1]} objects per image ({sum(counts)} in all)")
        return ", ".join(parts)

    def reasons(self, limit: int = 5) -> str:
        """The first few problems joined for an error message."""
        shown = [f"'{p.file}': {p.problem}" if p.file else p.problem for p in self.problems[:limit]]
        more = len(self.problems) - limit
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
