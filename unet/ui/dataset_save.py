"""Saving an upload as a dataset without ever replacing one: a name that is taken asks what the user means.

Two answers, both safe: add the new images to the stored dataset (a new version `NAME-vN` that keeps its images
and every mask drawn; the stored one and the runs that used it are untouched), or save under a free name
(`NAME-2`). The question is drawn by `ask_about_taken_name` on the next run after the button, while the uploaded
files are still in their widgets, so answering it needs no second upload.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from unet import annotation, workspace
from unet.dataset import Dataset, free_name, ingest, name_taken
from unet.errors import UserError
from unet.ui.feedback import user_errors
from unet.workspace import safe_name

_TAKEN = "dataset_name_taken"  # {form key: the taken name}, set by `save_under`, answered by `ask_about_taken_name`
Progress = Callable[[float, str], None]


def save_under(key: str, name: str, save_new: Callable[[str], None]) -> None:
    """Save under `name` when it is free; when taken, remember to ask (on the next run) instead of saving."""
    if name_taken(workspace.datasets_dir(), name):
        st.session_state.setdefault(_TAKEN, {})[key] = safe_name(name)
        st.rerun()
    st.session_state.get(_TAKEN, {}).pop(key, None)
    save_new(name)


def ask_about_taken_name(key: str, save_new: Callable[[str], None], add_to: Callable[[Dataset], None],
                         what: str) -> None:
    """If the last save of form `key` met a taken name, ask: add to that dataset, or save under a free name."""
    name = st.session_state.get(_TAKEN, {}).get(key)
    if not name:
        return
    root = workspace.datasets_dir()
    try:
        existing: Dataset | None = Dataset.load(root / name)
    except UserError:
        existing = None  # a folder that is not a dataset: only a new name is possible
    free = free_name(root, name)
    size = (f" ({len(existing.stems)} image(s) with a mask, {len(existing.unlabelled)} without)"
            if existing else "")
    with st.container(border=True):
        st.warning(f"A dataset named **{name}** exists already{size}. It is kept as it is: choose what to do with "
                   f"the {what}.", icon=":material/content_copy:")
        cols = st.columns(3)
        add = cols[0].button(f"Add them to “{name}” as a new version", key=f"{key}_add", disabled=existing is None,
                             type="primary", icon=":material/library_add:",
                             help="Makes the next version of that dataset holding its images, its masks (drawn ones "
                                  "included) and the new images. The dataset as it is now stays, for the runs that "
                                  "used it.")
        new = cols[1].button(f"Save them as “{free}”", key=f"{key}_new", icon=":material/add:",
                             help="A separate dataset under a name nobody uses yet.")
        cancel = cols[2].button("Cancel", key=f"{key}_cancel", help="Save nothing; change the name and try again.")
    if add or new or cancel:
        st.session_state[_TAKEN].pop(key, None)
    if add and existing is not None:
        with user_errors(f"adding the {what} to '{name}'"):
            add_to(existing)
            st.rerun()
    elif new:
        with user_errors(f"saving the {what}"):
            save_new(free)
            st.rerun()
    elif cancel:
        st.rerun()


def add_pairs(existing: Dataset, source: Path, progress: Progress, label: str | None = None,
              stacks: str | None = None) -> tuple[Dataset, list[tuple[str, str]]]:
    """Images with masks (a zip or staged files) added to `existing` as its next version: the masks are read with
    `existing`'s class map, so a value it does not know is named instead of becoming a new class."""
    with workspace.staging() as staging:
        staged, _ = ingest(source, "staged", staging / "datasets", progress=progress, label=label,
                           class_map=existing.class_map, stacks=stacks)
        return annotation.add_as_version(existing, staged)


def add_images(existing: Dataset, files: list[tuple[Path, str]], progress: Progress,
               stacks: str | None = None) -> tuple[Dataset, list[tuple[str, str]]]:
    """Images without masks added to `existing` as its next version, to be drawn there."""
    with workspace.staging() as staging:
        staged, problems = annotation.new_image_dataset(
            files, "staged", staging / "datasets", [c.name for c in existing.classes], existing.instances,
            stacks=stacks, progress=progress)
        joined, left_out = annotation.add_as_version(existing, staged)
        return joined, problems + left_out
