"""The class map: how a dataset's mask values or colours become class indices, decided once and then only read.

A dataset decides its classes at ingest (`unet.masks.plan_classes`) and records them in its dataset.json as
{index, name, color, value}, where `value` is the mask's own gray value (an int, 16-bit included) or colour
('#rrggbb'). Every run copies that record, and everything after training reads the run's copy: evaluation decodes
new truth masks with it, the Inference page reads an uploaded true mask with it, and `predict` writes masks back in
the user's own values. Nothing re-derives the classes from the masks at hand, because a test set that happens to
lack one class would otherwise shift every class after it (a triangle scored as a square).

Decoding is strict: a value outside the map is a problem that names the file and the value, never silently
assigned. Two forgiving rules, both of which keep the user's intent and are reported where the masks are checked:
- JPEG masks, and masks whose borders blend two classes (`soft_edges`, found at ingest), snap every other
  value to the nearest class;
- in a binary map whose background is 0, a mask of 0 and one other value is the same two classes whatever that
  value is (0/1 masks mixed with 0/255 ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unet.errors import UserError
from unet.masks import _COLOUR_FLAG, PALETTE, _as_colour, _keys, _points

Value = int | str | None  # a gray value, a '#rrggbb' colour, or None for a class no mask paints
IGNORE_INDEX = 255  # stored mask value of pixels marked "not labelled": left out of training and of every score


def colour_key(value: str) -> int:
    """'#rrggbb' as the packed key `unet.masks` uses for colours."""
    text = value.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"'{value}' is not a #rrggbb colour")
    return int(text, 16) | _COLOUR_FLAG


def key_label(key: int) -> str:
    """A packed key as the user knows it: '255' for gray values, '#ff0000' for colours."""
    if key & _COLOUR_FLAG:
        return f"#{key & 0xFFFFFF:06x}"
    return str(key)


@dataclass(frozen=True)
class ClassEntry:
    """One class: its index in the model's output, its name and display colour, and its value in the masks."""

    index: int
    name: str
    color: tuple[int, int, int]
    value: Value

    @property
    def key(self) -> int | None:
        if self.value is None:
            return None
        return colour_key(self.value) if isinstance(self.value, str) else int(self.value)

    def describe(self) -> str:
        return f"{self.name} = {self.value}" if self.value is not None else self.name


@dataclass(frozen=True)
class ClassMap:
    """The classes of a dataset (and of every run trained on it), index order, background first."""

    entries: tuple[ClassEntry, ...]
    soft_edges: bool = False  # the masks blend classes along borders; in-between values go to the nearest class
    ignore: int | None = None  # a gray value that marks pixels as "not labelled" (VOC's 255 border)
    instances: bool = False  # instance label images: 0 is background, every id above 0 one object of class 1
    background: int | None = 0  # the background class's index (0), or None: every class is a class to find
    also_ignored: tuple[int, ...] = ()  # more gray values that mean "not labelled" (CamVid's 11 beside VOC's 255)

    # -- building and recording ----------------------------------------------------------------------------------

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], soft_edges: bool = False,
                     ignore: int | None = None, instances: bool = False, background: int | None = 0,
                     also_ignored: Sequence[int] = ()) -> ClassMap | None:
        """From dataset.json's "classes"; None for a record written before classes carried their values."""
        if not records or any("value" not in r for r in records):
            return None
        entries = []
        for i, r in enumerate(sorted(records, key=lambda r: int(r["index"]))):
            if int(r["index"]) != i:
                return None
            color = r.get("color") or PALETTE[i % len(PALETTE)]
            value = r["value"]
            entries.append(ClassEntry(i, str(r.get("name") or f"class {i}"), tuple(int(c) for c in color), value))
        return cls(tuple(entries), soft_edges, None if ignore is None else int(ignore), bool(instances),
                   0 if background == 0 or instances else None,
                   tuple(int(v) for v in also_ignored if v != ignore))

    @classmethod
    def from_record(cls, recorded: dict[str, Any]) -> ClassMap | None:
        """From a whole dataset.json (a stored dataset's or a run's copy): the classes and the reading rules."""
        ignored = [int(v) for v in recorded.get("ignore_values") or []]
        return cls.from_records(recorded.get("classes", []), bool(recorded.get("soft_edges", False)),
                                recorded.get("ignore_value"), bool(recorded.get("instances", False)),
                                recorded.get("background", 0), ignored)

    @property
    def ignored_values(self) -> tuple[int, ...]:
        """Every gray value that means "not labelled"."""
        return ((self.ignore,) if self.ignore is not None else ()) + self.also_ignored

    @property
    def first_scored(self) -> int:
        """The first class the headline averages over: 1 when class 0 is the background, else 0 (every class)."""
        return 1 if self.background == 0 else 0

    @property
    def scored_names(self) -> list[str]:
        """The classes the headline averages over, by name (what `averaged_over` lists)."""
        return self.names[self.first_scored:]

    def choices(self) -> dict[str, Any]:
        """The reading rules dataset.json and a run's training_data.json record beside the classes."""
        return {"background": self.background, "ignore_value": self.ignore,
                "ignore_values": list(self.ignored_values)}

    def records(self) -> list[dict[str, Any]]:
        return [{"index": e.index, "name": e.name, "color": list(e.color), "value": e.value} for e in self.entries]

    @property
    def num_classes(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def colour(self) -> bool:
        """True when the classes are colours in the masks (an RGB mask), False for gray values."""
        return any(isinstance(e.value, str) for e in self.entries)

    @property
    def keys(self) -> list[int | None]:
        return [e.key for e in self.entries]

    def describe(self) -> str:
        """'membrane = 0, cell = 255': the map in the words of a message."""
        if self.instances:
            return f"{self.entries[0].name} = 0, {self.entries[-1].name} = every object id above 0"
        text = ", ".join(e.describe() for e in self.entries)
        ignored = " and ".join(str(v) for v in self.ignored_values)
        return text + (f"; {ignored} = not labelled" if ignored else "")

    # -- masks -> class indices ----------------------------------------------------------------------------------

    def _binary_foreground(self) -> int | None:
        """The foreground index of a binary gray map whose background is value 0, else None."""
        if self.colour or self.num_classes != 2 or self.entries[0].value != 0:
            return None
        return 1

    def lookup(self, keys: np.ndarray, lossy: bool = False) -> tuple[np.ndarray, list[int]]:
        """Class index per key (packed like `unet.masks._keys`), and the keys that belong to no class.

        Gray keys meet a colour map as gray colours; unknown keys get index 0 and are listed.
        """
        keys = np.asarray(keys, np.int64)
        if self.instances:
            index = np.where(keys == 0, 0, 1)
            for value in self.ignored_values:
                index = np.where(keys == value, IGNORE_INDEX, index)
            unknown = [int(k) for k in keys if k & _COLOUR_FLAG]
            return index.astype(np.uint8), unknown
        if self.colour:
            keys = _as_colour(keys)
        known = {k: e.index for e in self.entries if (k := e.key) is not None}
        if not self.colour:
            known.update({value: IGNORE_INDEX for value in self.ignored_values})
        index = np.array([known.get(int(k), -1) for k in keys], np.int64)
        missing = index < 0
        if missing.any() and self._binary_foreground() is not None:
            nonzero = [int(k) for k in keys if k != 0 and not k & _COLOUR_FLAG]
            if len(nonzero) == 1 and missing.sum() == 1 and len(keys) <= 2:  # 0/1 masks where 0/255 was planned
                index[missing] = self._binary_foreground()
                missing = index < 0
        if missing.any() and (lossy or self.soft_edges):
            levels = [(e.index, e.key) for e in self.entries if e.key is not None]
            there = _points(np.array([k for _, k in levels], np.int64), self.colour)
            here = _points(keys[missing], self.colour)
            nearest = ((here[:, None, :] - there[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)  # never to "ignore"
            index[missing] = [levels[n][0] for n in nearest]
            missing = index < 0
        unknown = [int(k) for k in keys[missing]]
        return np.where(index < 0, 0, index).astype(np.uint8), unknown

    def stand_in_notes(self, keys: np.ndarray, index: np.ndarray, subject: str, lossy: bool = False) -> list[str]:
        """What `lookup` read as a class although it is not that class's value, one note per value, in words
        ("`subject` has the value 128, which is not one of the model's values (...); it was read as 'foreground'
        (255)"): the forgiving binary rule, a 0/128 mask for a 0/255 map. `subject` names the mask ("mask 'a.png'").
        Values snapped to the nearest class in a JPEG or soft-edged mask are noise, not the user's choice, and get
        no note; nor do instance ids."""
        if self.instances or lossy or self.soft_edges:
            return []
        known = {k for k in self.keys if k is not None} | set(self.ignored_values)
        if self.colour:
            keys = _as_colour(np.asarray(keys, np.int64))
        notes = []
        for key, k in zip(np.asarray(keys, np.int64).tolist(), np.asarray(index).tolist(), strict=True):
            if key in known or k >= self.num_classes:
                continue
            entry = self.entries[k]
            what = "colour" if self.colour else "value"
            notes.append(f"{subject} has the {what} {key_label(key)}, which is not one of the model's values "
                         f"({self.describe()}); it was read as '{entry.name}'"
                         + (f" ({entry.value})" if entry.value is not None else ""))
        return notes

    def unknown_message(self, label: str, unknown: Sequence[int]) -> str:
        shown = ", ".join(key_label(k) for k in list(unknown)[:5]) + (" and more" if len(unknown) > 5 else "")
        what = "colour" if self.colour else "value"
        return (f"mask '{label}' has the {what}{'s' if len(unknown) > 1 else ''} {shown}, which belong to no class "
                f"of this dataset ({self.describe()})")

    def decode(self, raw: np.ndarray, label: str, lossy: bool = False) -> np.ndarray:
        """A raw mask (HxW gray or HxWx3 RGB) as uint8 class indices; UserError naming the file for unknown values."""
        if raw.ndim == 3 and not self.colour:
            raise UserError(f"mask '{label}' is a colour picture, but this dataset's classes are gray values "
                            f"({self.describe()})")
        keys, inverse = np.unique(_keys(raw), return_inverse=True)
        index, unknown = self.lookup(keys, lossy)
        if unknown:
            raise UserError(self.unknown_message(label, unknown))
        return index[inverse.reshape(raw.shape[:2])]

    # -- class indices -> masks in the user's values ---------------------------------------------------------------

    def encode(self, indices: np.ndarray) -> np.ndarray:
        """Class indices as the user's own mask values: HxW uint8/uint16 gray, or HxWx3 uint8 RGB colours.

        A class without a value (added when every mask was background, or the 'object' class of instance
        labels, which paint it in one id per object) is written with its index, so an instance map writes the
        class mask 0 (background) / 1 (object); object ids are `Prediction.labels`' to give, not a class map's.
        "Not labelled" pixels (IGNORE_INDEX) are written with the ignore value.
        """
        indices = np.asarray(indices)
        if self.colour:
            table = np.zeros((IGNORE_INDEX + 1, 3), np.uint8)
            table[: self.num_classes] = [_rgb(e) for e in self.entries]
            return table[indices]
        values = [e.value if e.value is not None else e.index for e in self.entries]
        top = max([int(v) for v in values] + [self.ignore or 0])
        table = np.zeros(IGNORE_INDEX + 1, np.uint8 if top <= 255 else np.uint16)
        table[: self.num_classes] = values
        if self.ignore is not None:
            table[IGNORE_INDEX] = self.ignore
        return table[indices]

    def palette(self) -> list[tuple[int, int, int]]:
        """256 display colours indexed by gray value: a palette PNG of `encode`'s output shows the class colours."""
        table = [(v, v, v) for v in range(256)]
        for e in self.entries:
            value = e.value if e.value is not None else e.index
            if not isinstance(value, str) and 0 <= int(value) <= 255:
                table[int(value)] = tuple(e.color)
        return table


def _rgb(entry: ClassEntry) -> tuple[int, int, int]:
    key = entry.key
    if key is None or not key & _COLOUR_FLAG:
        return tuple(entry.color)
    return ((key >> 16) & 255, (key >> 8) & 255, key & 255)
