"""The augmentation controls and the live preview grid on the Dataset page."""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

from unet.augment import preview_pairs
from unet.config import FILL_MODES, AugmentConfig, Config
from unet.dataset import Dataset
from unet.overlay import class_colors, overlay

# (field, label, slider maximum, step, help) for every transform with a strength.
STRENGTHS = (
    ("rotate", "Rotation (degrees)", 180.0, 5.0, "Turns each sample by a random angle up to this many degrees."),
    ("zoom", "Zoom", 0.5, 0.05, "Scales each sample up or down by up to this fraction (0.1 = ±10%)."),
    ("shift", "Shift", 0.5, 0.05, "Moves each sample by up to this fraction of its width and height."),
    ("shear", "Shear (degrees)", 45.0, 1.0, "Slants each sample, as if seen at an angle."),
    ("elastic", "Elastic deformation", 1.0, 0.05, "Gently warps the sample like soft tissue. Good for cells."),
    ("brightness", "Brightness", 1.0, 0.05, "Makes images randomly lighter or darker. Masks are not changed."),
    ("contrast", "Contrast", 1.0, 0.05, "Randomly raises or lowers contrast. Masks are not changed."),
    ("gamma", "Gamma", 0.9, 0.05, "Randomly brightens or darkens the mid-tones. Masks are not changed."),
    ("noise", "Noise", 0.5, 0.01, "Adds random grain, like a noisy camera. Masks are not changed."),
    ("blur", "Blur (pixels)", 5.0, 0.25, "Randomly softens focus by up to this many pixels. Masks are not changed."),
)
_DEFAULTS = AugmentConfig()


def augment_controls(current: AugmentConfig) -> AugmentConfig:
    """Widgets for every augmentation option, first filled from `current`; returns the config they describe."""
    state = st.session_state
    state.setdefault("aug_enabled", current.enabled)
    state.setdefault("aug_flip", current.flip)
    state.setdefault("aug_rotate90", current.rotate90)
    state.setdefault("aug_fill_mode", current.fill_mode)
    enabled = st.toggle(
        "Augment training images",
        key="aug_enabled",
        help="Shows the network varied copies of your images (turned, flipped, lighter...) so it learns from few "
        "examples and does not memorise them. The preview is exactly what training will see.",
    )
    flip = st.checkbox("Flip", key="aug_flip", disabled=not enabled, help="Mirrors samples left-right and up-down.")
    rotate90 = st.checkbox(
        "Quarter turns", key="aug_rotate90", disabled=not enabled, help="Turns samples by 0, 90, 180 or 270°."
    )
    values: dict[str, float] = {}
    for field, label, maximum, step, help_text in STRENGTHS:
        value = float(getattr(current, field))
        fallback = float(getattr(_DEFAULTS, field)) or step * 2
        state.setdefault(f"aug_on_{field}", value > 0)
        state.setdefault(f"aug_{field}", value if value > 0 else min(fallback, maximum))
        on = st.checkbox(label, key=f"aug_on_{field}", disabled=not enabled, help=help_text)
        strength = st.slider(
            f"{label} strength",
            min_value=0.0,
            max_value=maximum,
            step=step,
            disabled=not (enabled and on),
            key=f"aug_{field}",
            label_visibility="collapsed",
            format="%.0f°" if "degrees" in label else ("%.2f px" if "pixels" in label else "%.2f"),
            help=help_text,
        )
        values[field] = strength if on else 0.0
    fill_mode = st.selectbox(
        "Fill corners with",
        FILL_MODES,
        key="aug_fill_mode",
        disabled=not enabled,
        help="What appears where a rotation or shift uncovers the border: 'reflect' mirrors the image (and mask), "
        "'constant' fills with black background, 'nearest' repeats the edge pixels.",
    )
    return dataclasses.replace(current, enabled=enabled, flip=flip, rotate90=rotate90, fill_mode=fill_mode, **values)


@st.cache_data(max_entries=4, show_spinner=False)
def _sample_pairs(root: str, data_hash: str, stems: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs the preview draws from, read once per dataset version (the hash changes when the data does)."""
    dataset = Dataset.load(root)
    return [dataset.read_pair(stem) for stem in stems]


def preview_grid(dataset: Dataset, config: Config, seed: int, count: int = 8, columns: int = 4) -> None:
    """A grid of augmented samples with their masks overlaid, exactly as training will see them."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(dataset.stems), size=min(count, len(dataset.stems)), replace=False)
    stems = tuple(dataset.stems[i] for i in sorted(picked))
    pairs = _sample_pairs(str(dataset.root), dataset.hash, stems)
    repeated = [pairs[i % len(pairs)] for i in range(count)]
    previews = preview_pairs(
        [p[0] for p in repeated], [p[1] for p in repeated], config.augment, config.data, n=count, seed=seed,
        scale=dataset.rule.as_scale(),
    )
    colors = class_colors(dataset.num_classes, [c.color for c in dataset.classes])
    cells = st.columns(columns)
    for i, (image, mask) in enumerate(previews):
        with cells[i % columns]:
            st.image(overlay(image, mask, colors, opacity=0.45, contours=True), width="stretch")
