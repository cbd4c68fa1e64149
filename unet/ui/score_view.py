"""How a score is shown: what it averages, every class, and the trivial baseline beside it.

One place for the Train page (the held-back scores written at the end of training) and the Runs page (an
evaluation the user asks for), so both say the same thing in the same words. A model that is barely better
than painting every pixel one class is called out with what to try, never shown as a plain success.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from unet import runs
from unet.evaluation import headline_sentence
from unet.units import count_text

EMPTY = "–"  # what a table cell without a value shows (Streamlit's own default is the word "None")
NEAR_BASELINE_ADVICE = (
    "Try a bigger input size or crops at the images' own resolution (Model page), more epochs, or class weights; "
    "thin structures such as membranes vanish when large images are shrunk."
)


def _value(value: float | None) -> str:
    return "not scored" if value is None else f"{value:.3f}"


def class_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: the model's Dice and IoU, the baseline's Dice, and the pixels behind them."""
    baseline = {row["class"]: row for row in (result.get("baseline") or {}).get("per_class", [])}
    return [
        {"Class": row["name"], "Mask value": "" if row.get("value") is None else str(row["value"]),
         "Dice": row["dice"], "IoU": row["iou"], "Baseline Dice": baseline.get(row["class"], {}).get("dice"),
         "True pixels": row["support_pixels"], "Predicted pixels": row["predicted_pixels"]}
        for row in result.get("per_class", [])
    ]


def scores_panel(result: dict[str, Any], what: str) -> None:
    """The headline with what it averages, the baseline, a warning near the baseline, and the per-class table."""
    over = result.get("averaged_over") or []
    base = result.get("baseline") or {}
    cells = st.columns(3)
    cells[0].metric(
        "Dice", _value(result.get("dice")),
        help=f"Mean over {', '.join(over) or 'no class'}: 1.0 means the prediction covers exactly the true pixels "
             "of those classes. Every class is in the table below, background included.",
    )
    cells[1].metric(
        "Baseline Dice", _value(base.get("dice")),
        help=f"What a model that paints every pixel \"{base.get('predicts', '?')}\" (the most common class on these "
             "images) would score. A useful model is well above it.",
    )
    cells[2].metric("Pixel accuracy", f"{result.get('pixel_accuracy', 0):.3f}",
                    help="Share of pixels given the right class; the baseline reaches "
                         f"{base.get('pixel_accuracy', 0):.3f}.")
    st.caption(f"{what}: {headline_sentence(result)}")
    if result.get("near_baseline"):
        st.warning(
            f"**Barely better than the baseline.** Painting every pixel \"{base.get('predicts')}\" scores almost as "
            f"well as this model, so it has learned little. {NEAR_BASELINE_ADVICE}",
            icon=":material/warning:",
        )
    st.dataframe(
        class_rows(result), hide_index=True, width="stretch", placeholder=EMPTY,
        column_config={name: st.column_config.NumberColumn(format="%.3f") for name in ("Dice", "IoU", "Baseline Dice")},
    )
    objects = result.get("objects")
    if objects:
        st.markdown(f"**Objects** · {objects['summary']}.")
        st.caption(f"Predicted objects: {objects['predicted_by']}. True objects: {objects['true_from']}.")


def held_back_panel(run: runs.Run) -> None:
    """The scores the trainer wrote at the end of the run, on the whole held-back images."""
    result = runs.read_json(run.file(runs.HELD_BACK))
    if not result:
        return
    images = result.get("images", 0)
    st.markdown(f"**Held-back images** · the best model on {count_text(images, 'whole validation image')}, "
                "never trained on")
    scores_panel(result, count_text(images, "held-back image"))
