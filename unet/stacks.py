"""How a stack of planes (a z-stack or a time series) becomes the 2D images a U-Net trains on; the user chooses.

- "slices": every plane is its own image, paired with the same plane of a mask stack (the default when the mask
  has one plane per image plane).
- "max" / "mean": one projection of the whole stack, paired with a single-plane mask (the default then is "max").
- "plane N": one chosen plane (counted from 1, as Fiji counts slices), with the mask's plane N or its only plane.
Nothing is dropped silently: a rule that cannot apply to a file is a problem naming the file and both plane counts.
NumPy only; called by `unet.dataset` (ingest) and `unet.inference` (predicting a stack plane by plane).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unet.errors import UserError

AUTO = "auto"
SLICES = "slices"
MAX = "max"
MEAN = "mean"
PLANE = "plane"
CHOICES = (AUTO, SLICES, MAX, MEAN)  # and "plane N"
LABELS = {
    AUTO: "automatic (slices when each slice has its mask, else the maximum projection)",
    SLICES: "every slice as its own image",
    MAX: "maximum-intensity projection",
    MEAN: "mean projection",
}


@dataclass(frozen=True)
class StackRule:
    mode: str = AUTO
    plane: int | None = None  # 0-based, for mode PLANE

    @classmethod
    def parse(cls, text: str | None) -> StackRule:
        """'auto', 'slices', 'max', 'mean' or 'plane N' (N from 1); anything else is a UserError saying the choices."""
        words = (text or AUTO).strip().lower().replace(":", " ").split()
        if len(words) == 1 and words[0] in CHOICES:
            return cls(words[0])
        if len(words) == 2 and words[0] == PLANE and words[1].isdigit() and int(words[1]) >= 1:
            return cls(PLANE, int(words[1]) - 1)
        raise UserError(f"'{text}' is not a way to read stacks; use one of {', '.join(CHOICES)} or 'plane N'")

    def __str__(self) -> str:
        return f"{PLANE} {self.plane + 1}" if self.mode == PLANE and self.plane is not None else self.mode

    def describe(self) -> str:
        return f"plane {self.plane + 1} of each stack" if self.mode == PLANE and self.plane is not None \
            else LABELS[self.mode]


def resolve(images: np.ndarray, masks: np.ndarray | None, rule: StackRule, image_name: str, mask_name: str = ""
            ) -> tuple[str, list[tuple[int | None, np.ndarray, np.ndarray | None]]]:
    """(the mode applied, [(plane index or None, image [H, W, C], mask plane or None)]) for one file pair.

    `images` is [P, H, W, C]; `masks` is [Pm, H, W(, 3)] or None (images without masks, at inference). A single
    plane passes through as (None, image, mask). Raises UserError naming the file when the rule cannot apply.
    """
    planes = images.shape[0]
    mask_planes = masks.shape[0] if masks is not None else None
    if planes == 1:
        if mask_planes not in (None, 1):
            raise UserError(f"mask '{mask_name}' has {mask_planes} planes but its image '{image_name}' has one")
        return SLICES, [(None, images[0], masks[0] if masks is not None else None)]
    mode = rule.mode
    if mode == AUTO:
        mode = SLICES if mask_planes in (None, planes) else MAX
    if mask_planes not in (None, 1, planes):
        raise UserError(f"mask '{mask_name}' has {mask_planes} planes but its image '{image_name}' has {planes}; "
                        "give one mask plane per image plane, or a single mask for a projection")
    if mode == SLICES:
        if mask_planes == 1:
            raise UserError(f"'{image_name}' has {planes} planes but its mask '{mask_name}' only one; to train on "
                            "every slice, give a mask stack with one plane per slice, or choose a projection")
        return SLICES, [(i, images[i], masks[i] if masks is not None else None) for i in range(planes)]
    if mode == PLANE:
        index = rule.plane or 0
        if index >= planes:
            raise UserError(f"'{image_name}' has {planes} planes, so it has no plane {index + 1}")
        mask = None if masks is None else masks[index if mask_planes == planes else 0]
        return PLANE, [(index, images[index], mask)]
    if mask_planes == planes and mask_planes != 1:
        raise UserError(f"mask '{mask_name}' has a plane per slice, which a {mode} projection cannot use; read "
                        "the stack as slices instead")
    if mode == MAX:
        projected = images.max(axis=0)
    elif images.dtype.kind == "f":
        projected = images.mean(axis=0, dtype=np.float64).astype(images.dtype)
    else:  # the mean of whole numbers, rounded: the data keeps its bit depth (half a grey level at most)
        projected = np.rint(images.mean(axis=0, dtype=np.float64)).astype(images.dtype)
    return mode, [(None, projected, masks[0] if masks is not None else None)]
