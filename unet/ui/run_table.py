"""The table of runs, drawn by the Train page (a short form) and the Runs page (every column): one definition of
its columns, their names and their help texts, over `unet.run_summary.summary_row`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from unet.run_summary import summary_row
from unet.runs import Run

# summary_row's key -> how the column is shown; None hides it.
COLUMNS = {
    "name": "Run",
    "dataset": st.column_config.TextColumn(
        "Dataset", help="The dataset (version) the run trained on: annotating makes NAME-v2, -v3…"),
    "started_from": st.column_config.TextColumn(
        "Started from", help="Fine-tuned runs: the run or model file whose weights they started from."),
    "state": "State",
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
    "epochs": "Epochs",
    "duration": "Duration",
    "started": "Started",
}
NUMBERS = ("best_val_dice", "best_val_iou", "held_back_dice", "baseline_dice", "best_epoch")
SHORT = ("name", "state", "held_back_dice", "baseline_dice", "near_baseline", "epochs", "duration", "started")


def run_table(all_runs: Sequence[Run], columns: Sequence[str] | None = None) -> None:
    """Draw one row per run; `columns` picks and orders summary_row's keys (None: every column)."""
    table = pd.DataFrame([summary_row(run) for run in all_runs]).drop(columns=["id"])
    for column in NUMBERS:
        table[column] = pd.to_numeric(table[column], errors="coerce")  # a queued run: an empty cell, not "None"
    st.dataframe(table, hide_index=True, width="stretch", column_config=COLUMNS,
                 column_order=list(columns) if columns else None)
