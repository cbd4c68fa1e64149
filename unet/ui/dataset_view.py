"""The Dataset page's pieces for microscopy data: how stacks are read, and what the check found in the files."""

from __future__ import annotations

import streamlit as st

from unet.dataset import Dataset
from unet.images import CHANNEL_COLOURS
from unet.stacks import CHOICES, LABELS, MAX, MEAN, PLANE, SLICES

_COLOUR_NAMES = {(0, 255, 0): "green", (255, 0, 255): "magenta", (0, 255, 255): "cyan", (255, 255, 0): "yellow",
                 (255, 0, 0): "red", (0, 0, 255): "blue"}


def stack_choice(key: str) -> str:
    """How multi-page TIFFs (z-stacks, time series) become 2D images: the rule for `unet.dataset.ingest`."""
    options = [*CHOICES, PLANE]
    labels = {**LABELS, PLANE: "one chosen plane"}
    with st.expander("TIFF stacks (z-stacks, time series)", icon=":material/layers:"):
        mode = st.selectbox(
            "Use each stack as", options, format_func=labels.__getitem__, key=f"{key}_stacks",
            help=f"Only for multi-page TIFFs. '{labels[SLICES]}' trains on each plane with the same plane of the "
                 f"mask stack; '{labels[MAX]}' and '{labels[MEAN]}' make one image of the stack, for a single mask "
                 "per stack; 'one chosen plane' keeps that plane only. Nothing is dropped without the check saying so.")
        if mode != PLANE:
            return mode
        plane = st.number_input("Plane (counted from 1, as Fiji counts slices)", 1, 1000, 1, key=f"{key}_plane",
                                help="A stack with fewer planes is reported by name and left out.")
        return f"{PLANE} {int(plane)}"


def channel_words(channels: int) -> str:
    return {1: "grey", 3: "colour (RGB)"}.get(channels, f"{channels} channels")


def channel_legend(channels: int) -> str:
    """How previews show channels when there are not 1 or 3: 'channel 1 green, channel 2 magenta'."""
    if channels in (1, 3):
        return ""
    names = [_COLOUR_NAMES[CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)]] for c in range(channels)]
    return "Previews show " + ", ".join(f"channel {c + 1} in {name}" for c, name in enumerate(names)) + "."


def found_caption(dataset: Dataset) -> None:
    """What the files are, the intensity rule and the objects per image, under the dataset's facts."""
    lines = []
    if dataset.found:
        lines.append(f"**Found:** {dataset.found}.")
    if not dataset.rule.is_eight_bit:
        lines.append(f"**Intensity:** {dataset.rule.describe()}. New images get the same rule.")
    if dataset.objects:
        counts = sorted(dataset.objects.values())
        lines.append(f"**Objects:** {counts[0]} to {counts[-1]} per image, {sum(counts):,} in all "
                     f"(median {counts[len(counts) // 2]}).")
    legend = channel_legend(dataset.channels)
    if legend:
        lines.append(legend)
    if lines:
        st.markdown("  \n".join(lines))
