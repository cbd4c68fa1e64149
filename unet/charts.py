"""Plotly figures of a run (history, threshold sweep, confusion, object AP): shared by the Train page, the Runs
page and the HTML report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PANELS = (("loss", "Loss (lower is better)"), ("dice", "Dice (higher is better)"), ("iou", "IoU (higher is better)"))
TRAIN_COLOR = "#2f6f8f"
VALIDATION_COLOR = "#e07a1f"
MAX_POINTS = 400  # long runs are thinned so the browser redraw stays cheap


def _thin(rows: Sequence[dict]) -> list[dict]:
    if len(rows) <= MAX_POINTS:
        return list(rows)
    step = len(rows) / MAX_POINTS
    picked = [rows[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*picked, rows[-1]]


def history_figure(history: Sequence[dict], class_names: Sequence[str] | None = None,
                   class_colors: Sequence[Sequence[int]] | None = None) -> go.Figure:
    """Loss, Dice and IoU per epoch, train and validation side by side, the best validation Dice marked.

    Per-class validation Dice curves are added (dotted): the background class always (on ISBI it is the membrane,
    the class that matters), and every foreground class when there is more than one. Each is drawn in its class's
    colour (`class_colors`, [r, g, b] per class: the colours of the masks and overlays), when given.
    """
    rows = _thin(history)
    epochs = [r["epoch"] for r in rows]
    figure = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in PANELS], horizontal_spacing=0.07)
    for col, (key, _) in enumerate(PANELS, start=1):
        for prefix, name, color in (("", "train", TRAIN_COLOR), ("val_", "validation", VALIDATION_COLOR)):
            values = [r.get(prefix + key) for r in rows]
            figure.add_trace(
                go.Scatter(
                    x=epochs, y=values, name=name, legendgroup=name, showlegend=col == 1,
                    mode="lines+markers" if len(rows) < 40 else "lines", line={"color": color},
                ),
                row=1, col=col,
            )
    names = list(class_names or [])
    shown = list(enumerate(names)) if len(names) > 2 else list(enumerate(names))[:1]
    if names:
        colors = list(class_colors or [])
        for k, name in shown:
            line = {"dash": "dot"}
            if k < len(colors):
                line["color"] = "rgb({}, {}, {})".format(*(int(c) for c in colors[k]))
            figure.add_trace(
                go.Scatter(x=epochs, y=[r.get(f"val_dice_{k}") for r in rows], name=f"val Dice: {name}",
                           mode="lines", line=line),
                row=1, col=2,
            )
    scored = [r for r in history if r.get("val_dice") is not None]
    if scored:
        best = max(scored, key=lambda r: r["val_dice"])
        figure.add_trace(
            go.Scatter(x=[best["epoch"]], y=[best["val_dice"]], name=f"best (epoch {best['epoch']})",
                       mode="markers", marker={"symbol": "star", "size": 14, "color": "#c0392b"}),
            row=1, col=2,
        )
    figure.update_xaxes(title_text="epoch", rangemode="tozero")
    figure.update_yaxes(range=[0, 1.02], row=1, col=2)
    figure.update_yaxes(range=[0, 1.02], row=1, col=3)
    figure.update_layout(
        height=330, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.25}, template="plotly_white", uirevision="history",
    )
    return figure


METRIC_NAMES = {
    "val_dice": "validation Dice", "val_iou": "validation IoU", "val_loss": "validation loss",
    "dice": "training Dice", "loss": "training loss", "iou": "training IoU",
}


def compare_figure(histories: dict[str, Sequence[dict]], key: str = "val_dice") -> go.Figure:
    """One metric of several runs overlaid, for the Runs page."""
    figure = go.Figure()
    for name, history in histories.items():
        rows = _thin(history)
        epochs = [r["epoch"] for r in rows]
        figure.add_trace(go.Scatter(x=epochs, y=[r.get(key) for r in rows], name=name, mode="lines"))
    figure.update_layout(
        height=360, xaxis_title="epoch", yaxis_title=METRIC_NAMES.get(key, key.replace("_", " ")),
        template="plotly_white",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def object_ap_figure(objects: dict) -> go.Figure:
    """Object scores over IoU thresholds (an evaluation's `objects` section): AP and F1 pooled over all images,
    and AP averaged per image (dotted), as the DSB2018 and StarDist papers plot them."""
    pooled, per_image = objects.get("pooled", []), objects.get("per_image_mean", [])
    figure = go.Figure()
    for rows, key, name, style in ((pooled, "average_precision", "AP, pooled", {"color": TRAIN_COLOR}),
                                   (pooled, "f1", "F1, pooled", {"color": VALIDATION_COLOR}),
                                   (per_image, "average_precision", "AP, mean per image",
                                    {"color": TRAIN_COLOR, "dash": "dot"})):
        figure.add_trace(go.Scatter(x=[r["threshold"] for r in rows], y=[r.get(key) for r in rows], name=name,
                                    mode="lines+markers", line=style))
    figure.update_layout(height=300, xaxis_title="IoU needed to count an object as found", yaxis_title="score",
                         template="plotly_white", margin={"l": 10, "r": 10, "t": 20, "b": 10}, yaxis_range=[0, 1.02],
                         legend={"orientation": "h", "y": -0.3})
    return figure


def threshold_sweep_figure(sweep: Sequence[dict], best: float | None, height: int = 280) -> go.Figure:
    """Dice against the threshold that turns a probability into the foreground, the best one marked (the Runs
    page's evaluation and the HTML report)."""
    figure = go.Figure(go.Scatter(x=[row["threshold"] for row in sweep], y=[row["dice"] for row in sweep],
                                  mode="lines+markers", name="Dice", line={"color": "#2f6f8f"}))
    if best is not None:
        figure.add_vline(x=best, line_dash="dash", line_color="#c0392b", annotation_text=f"best {best:g}")
    figure.update_layout(height=height, xaxis_title="threshold", yaxis_title="Dice", template="plotly_white",
                         margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_range=[0, 1.02])
    return figure


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Each true class's pixels by predicted class, as shares of the row (the counts written in the cells)."""
    share = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    figure = go.Figure(go.Heatmap(z=share, x=list(class_names), y=list(class_names), colorscale="Blues",
                                  zmin=0, zmax=1, text=confusion.astype(int), texttemplate="%{text}"))
    figure.update_layout(height=360, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                         margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return figure

