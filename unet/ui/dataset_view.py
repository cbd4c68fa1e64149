"""The Dataset page's pieces for microscopy data: how stacks are read, and what the check found in the files."""

from __future__ import annotations

import re

import streamlit as st

from unet import annotation
from unet.dataset import Dataset, ValueChoices
from unet.errors import UserError
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


def mask_choices(key: str) -> tuple[str, ValueChoices]:
    """How the masks are read: object ids or classes, the background value and the "not labelled" values
    (`unet.dataset.ingest`'s `masks` and `values`); a typo is shown and the defaults are used."""
    with st.expander("How to read the masks (background, not labelled, object ids)", icon=":material/rule:"):
        reading = st.selectbox(
            "Gray masks with many values hold", ["auto", "ids", "classes"], key=f"{key}_masks",
            format_func={"auto": "decide from the masks", "ids": "object ids (one number per object)",
                         "classes": "classes (each number a class)"}.get,
            help="Instance label masks (Cellpose, StarDist, ilastik) give each object its own number; class masks "
                 "give each class one. Decided over the whole dataset unless you say.")
        background = st.text_input(
            "Background value", value="auto", key=f"{key}_background",
            help="The mask value of the background, 'none' when there is none (street scenes: 0 is sky), or 'auto': "
                 "0 when it is the most common value. The background is left out of the headline score.")
        ignored = st.text_input(
            "Values that mean 'not labelled'", value="", key=f"{key}_ignored", placeholder="e.g. 11, or 255",
            help="Pixels nobody labelled (CamVid's 11 'void'; VOC's 255 border is found by itself): left out of "
                 "training, of every score and of the pictures. Separate several with commas.")
    try:
        values = [int(v) for v in re.split(r"[,\s]+", ignored.strip()) if v]
        return reading, ValueChoices.parse(background, values)
    except (ValueError, UserError) as exc:
        st.error(f"How to read the masks: {exc if isinstance(exc, UserError) else 'give whole numbers'}; the "
                 "defaults are used.", icon=":material/error:")
        return reading, ValueChoices()


VOID_WORDS = ("void", "unlabel", "ignore", "unknown", "not labelled", "none")


def values_form(dataset: Dataset) -> Dataset | None:
    """Say what the stored classes mean (background, not labelled) and save it as a new version; returns the new
    version when saved. Classes named void/unlabelled/ignore, or of value 255, are proposed as not labelled."""
    if dataset.instances or dataset.num_classes < 3 and dataset.background == 0:
        return None
    names = [c.name for c in dataset.classes]
    proposed = [c.name for c in dataset.classes
                if any(w in c.name.lower() for w in VOID_WORDS) or c.value == 255]
    with st.form(f"values_{dataset.name}_{dataset.hash[:12]}", border=False):
        st.markdown("**What the values mean**")
        st.caption(
            ("No class is the background: every class is learned and scored alike. "
             if dataset.background is None else f"'{names[0]}' is the background, left out of the headline. ")
            + (f"Not labelled: {', '.join(str(v) for v in dataset.ignore_values)}." if dataset.ignore_values else ""))
        left, right = st.columns(2)
        background = left.selectbox(
            "Background", ["(none)", *names], index=0 if dataset.background is None else 1,
            help="The class that is the background (left out of the headline), or none: street scenes, where value "
                 "0 is sky, have no background.")
        dropped = right.multiselect(
            "Not labelled (left out)", names, default=proposed,
            help="Classes that are really 'nobody labelled this' (CamVid's 'void' 11): their pixels are left out of "
                 "training, of every score and of the pictures. Proposed: classes named void, unlabelled or "
                 "ignore, and value 255.")
        if st.form_submit_button("Save as a new version", icon=":material/save:",
                                 help="The masks are rewritten in a new version (NAME-vN); this one stays as it is "
                                      "for the runs that used it."):
            chosen = None if background == "(none)" else names.index(background)
            return annotation.reread_values(dataset, chosen, [names.index(n) for n in dropped])
    return None


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
