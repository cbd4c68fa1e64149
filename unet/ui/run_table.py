"""The table of runs, drawn by the Train page (a short form) and the Runs page (every column): one definition of
its columns, their names and their help texts, over `unet.run_summary.summary_row`.

The Train page redraws it while a run trains (`refresh_seconds`), so its state and epochs follow the run as the
live view above it does; a cell with nothing in it yet (the held-back Dice of a run still training) shows a dash.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from unet.run_summary import summary_row
from unet.runs import Run
from unet.ui.score_view import EMPTY

# summary_row's key -> how the column is shown; None hides it.
COLUMNS = {
    "name": "Run",
    "dataset": st.column_config.TextColumn(
        "Dataset", help="The dataset (version) the run trained on: annotating makes NAME-v2, -v3…"),
    "started_from": st.column_config.TextColumn(
        "Started from", help="Fine-tuned runs: the run or model file whose weights they started from."),
    "state": st.column_config.TextColumn("State", help="As the badge of the run on the Train page says it."),
    "best_val_dice": st.column_config.NumberColumn(
        "Val Dice (training view)", format="%.4f",
        help="The live check during training, on centre crops or shrunk images: it picks the best model."),
    "best_val_iou": None,
    "held_back_dice": st.column_config.NumberColumn(
        "Held-back Dice", format="%.4f",
        help="The best model on the whole validation images at the end of training (mean over the classes in "
             "the \"Averaged over\" column of the Runs page)."),
    "baseline_dice": st.column_config.NumberColumn(
        "Baseline Dice", format="%.4f",
        help="What painting every pixel the most common class scores on the same images."),
    "averaged_over": "Averaged over",
    "near_baseline": st.column_config.CheckboxColumn(
        "Near baseline", help="Ticked when the model is barely better than the baseline: it learned little."),
    "best_epoch": "Best epoch",
    "epochs": st.column_config.TextColumn(
        "Epochs", help="Finished of planned, and the epoch in progress; early stopping may end a run sooner."),
    "epochs_done": None,
    "duration": "Duration",
    "started": "Started",
}
NUMBERS = ("best_val_dice", "best_val_iou", "held_back_dice", "baseline_dice", "best_epoch")
SHORT = ("name", "state", "held_back_dice", "baseline_dice", "near_baseline", "epochs", "duration", "started")


def run_frame(all_runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run (summary_row's keys but the id), numbers as numbers (empty where not known yet)."""
    table = pd.DataFrame([summary_row(run) for run in all_runs]).drop(columns=["id"])
    for column in NUMBERS:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def run_table(all_runs: Sequence[Run], columns: Sequence[str] | None = None,
              refresh_seconds: float | None = None) -> None:
    """Draw one row per run; `columns` picks and orders summary_row's keys (None: every column);
    `refresh_seconds` redraws the table that often (while a run trains), else it is drawn once."""

    def draw() -> None:
        st.dataframe(run_frame(all_runs), hide_index=True, width="stretch", column_config=COLUMNS,
                     column_order=list(columns) if columns else None, placeholder=EMPTY)

    if refresh_seconds:
        st.fragment(draw, run_every=refresh_seconds)()
    else:
        draw()
