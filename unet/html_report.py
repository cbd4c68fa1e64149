"""A report on one run for people who do not train models: one self-contained HTML file.

`write_report(run_dir, out_path, data=None)` (the Runs page button, `python -m unet report`) tells the run's story
top to bottom: the data, the augmentation, the model, the training curves, the scores, predictions next to the
truth, and what is needed to reproduce it. The file needs no network to render: plotly.js is embedded once
(inline, ~4.6 MB), pictures are base64 PNG data URIs, the diagram is inline SVG, the styles are inline CSS.

Every string that comes from a user (run, dataset and class names, messages, paths) is HTML-escaped; names shown
inside Plotly charts are escaped too, since Plotly renders a subset of HTML in labels.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from unet import evaluation, postprocess, runs
from unet.augment import preview_pairs
from unet.charts import history_figure, object_ap_figure, threshold_sweep_figure
from unet.config import NORMALISATION_NAMES, RESIZE_NAMES, Config, Task
from unet.dataset import Dataset
from unet.diagram import architecture_svg
from unet.errors import UserError
from unet.images import encode_png
from unet.intensity import Intensity
from unet.model import model_facts
from unet.overlay import class_colors, overlay, to_rgb
from unet.run_summary import (
    OBJECT_SCORES_EXPLAINED,
    network_classes,
    setting_name,
    setting_value,
    summary_row,
    train_command,
)
from unet.units import count_text, duration_text

SAMPLE_PAIRS = 6  # dataset samples shown
PREVIEW_PAIRS = 8  # augmented previews shown
GALLERY_IMAGES = 6  # validation predictions shown
WORST_IMAGES = 6  # worst evaluated images shown
PICTURE_SIDE = 192  # pixels: pictures are shrunk to this before embedding (small ones are enlarged by CSS)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--accent:#2f6f8f;--soft:#f5f7fa}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:var(--ink);
  line-height:1.55;background:#fff}
main{max-width:1080px;margin:0 auto;padding:32px 24px 64px}
h1{font-size:2rem;margin:0 0 4px}h2{font-size:1.35rem;margin:48px 0 8px;padding-bottom:6px;
  border-bottom:2px solid var(--line)}h3{font-size:1.05rem;margin:24px 0 8px}
p{margin:8px 0}.muted{color:var(--muted)}.note{background:var(--soft);border-left:4px solid var(--accent);
  padding:8px 12px;margin:12px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:20px 0}
.card{background:var(--soft);border-radius:10px;padding:14px 16px}.card b{display:block;font-size:1.6rem}
.card span{color:var(--muted);font-size:.9rem}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.95rem}
th,td{text-align:left;padding:6px 12px;border-bottom:1px solid var(--line)}th{background:var(--soft)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:middle;margin-right:6px;
  border:1px solid #0002}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:14px;margin:12px 0}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(340px,1fr))}
figure{margin:0}figure img{width:100%;image-rendering:pixelated;border-radius:6px;border:1px solid var(--line)}
figcaption{font-size:.85rem;color:var(--muted);margin-top:4px;word-break:break-word}
pre{background:var(--soft);padding:12px;border-radius:8px;overflow-x:auto;font-size:.85rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.diagram{max-width:760px}summary{cursor:pointer;font-weight:600;margin:16px 0 8px}
footer{margin-top:56px;color:var(--muted);font-size:.85rem}
"""


# ----------------------------------------------------------------------------------------------------------------
# Small HTML builders
# ----------------------------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def image_uri(picture: np.ndarray) -> str:
    """A uint8 picture as a base64 PNG data URI."""
    return "data:image/png;base64," + base64.b64encode(encode_png(picture)).decode("ascii")


def _figure(picture: np.ndarray, caption: str) -> str:
    picture = postprocess.shrink(picture, PICTURE_SIDE * 3 if picture.shape[1] > 2 * picture.shape[0] else
                                 PICTURE_SIDE)
    return (f'<figure><img src="{image_uri(picture)}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table (no header row when `headers` is None); cells are escaped unless given as `_Raw`."""
    head = f"<thead><tr>{''.join(f'<th>{_e(h)}</th>' for h in headers)}</tr></thead>" if headers else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ""
            cells.append(f"<td{css}>{cell.html if isinstance(cell, _Raw) else _e(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Markup built here (already escaped) to put in a table cell as it is."""

    def __init__(self, html: str) -> None:
        self.html = html


def _swatch(name: str, color: Sequence[int]) -> _Raw:
    r, g, b = (int(c) for c in color)
    return _Raw(f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>{_e(name)}')


class _Plots:
    """Plotly figures as HTML: plotly.js goes inline with the first figure only."""

    def __init__(self) -> None:
        self.included = False

    def html(self, figure: go.Figure) -> str:
        out = pio.to_html(figure, include_plotlyjs=not self.included, full_html=False, config=PLOTLY_CONFIG)
        self.included = True
        return out


# ----------------------------------------------------------------------------------------------------------------
# What the report reads
# ----------------------------------------------------------------------------------------------------------------


class _RunFacts:
    """The run folder read once: config, dataset record, history, status, versions, class names and colours."""

    def __init__(self, run_dir: Path) -> None:
        self.run = runs.Run(Path(run_dir))
        if not self.run.file(runs.CONFIG).exists():
            raise UserError(f"'{self.run.path.name}' is not a run folder (it has no {runs.CONFIG})")
        self.config: Config = self.run.config()
        self.recorded: dict[str, Any] = self.run.training_data()
        self.history = self.run.read_history()
        self.status = self.run.read_status()
        self.versions: dict[str, Any] = runs.read_json(self.run.file(runs.VERSIONS), {}) or {}
        self.held_back: dict[str, Any] = runs.read_json(self.run.file(runs.HELD_BACK), {}) or {}
        self.separates_objects = self.config.data.task == Task.INSTANCES
        # The network's classes (history's per-class figures) and the classes its predictions are shown in: the same
        # for a semantic run; background / interior / boundary, and background / object, for a separate-objects run.
        self.network_names, self.network_colors = network_classes(self.run)
        recorded = self.recorded.get("classes", [])
        k = len(recorded) if self.separates_objects and recorded else self.config.model.num_classes
        by_index = {int(c["index"]): c for c in recorded if "index" in c}
        self.names = [str(by_index.get(i, {}).get("name") or f"class {i}") for i in range(k)]
        given = [by_index[i]["color"] for i in range(k) if "color" in by_index.get(i, {})]
        self.colors = class_colors(k, given if len(given) == k else None)
        try:
            self.dataset: Dataset | None = Dataset.load(Path(self.recorded.get("path", "")))
        except UserError:
            self.dataset = None

    @property
    def best(self) -> dict[str, Any]:
        scored = [r for r in self.history if isinstance(r.get("val_dice"), (int, float))]
        return max(scored, key=lambda r: r["val_dice"]) if scored else {}

    def pairs(self, stems: Sequence[str], count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        if self.dataset is None:
            return []
        present = set(self.dataset.stems)
        return [(s, *self.dataset.read_pair(s)) for s in stems if s in present][:count]

    def picture(self, image: np.ndarray) -> np.ndarray:
        """What figures draw on: the dataset's view of a stored image (16-bit and multi-channel by its rule)."""
        return self.dataset.picture(image) if self.dataset else image


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------


def _proxy_label(facts: _RunFacts) -> str:
    """What the trainer's validation Dice was measured on: the training-time proxy, not the held-back figure."""
    seen = "centre crops" if facts.config.data.resize == "crop" else "images shrunk to the input size"
    return f"training-time check on validation {seen} (picked the best epoch)"


def _header(facts: _RunFacts) -> str:
    row = summary_row(facts.run)
    best = facts.best
    held_back = facts.held_back
    cards: list[tuple[str, str]] = []
    if isinstance(held_back.get("dice"), (int, float)):
        over = ", ".join(held_back.get("averaged_over") or []) or "the foreground"
        cards.append((_number(held_back["dice"]), f"Dice on {count_text(held_back.get('images', 0), 'held-back image')}"
                                                  f", whole ({over}; 1 = perfect)"))
        baseline = (held_back.get("baseline") or {}).get("dice")
        cards.append((_number(baseline), "the baseline's Dice: every pixel the most common class"))
    objects = held_back.get("objects") or {}
    if isinstance(objects.get("ap50"), (int, float)):
        cards.append((_number(objects["ap50"], 2), f"objects: AP@0.5 ({objects.get('true_objects', 0)} true objects "
                                                   "in the held-back images)"))
    cards += [
        (_number(best.get("val_dice")), f"best validation Dice, {_proxy_label(facts)}"),
        (f"{row['epochs_done']}", f"{'epoch' if row['epochs_done'] == 1 else 'epochs'} trained "
                                  f"(best: {best.get('epoch', '–')})"),
        (row["duration"] or "–", "training time"),
    ]
    card_html = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for v, label in cards)
    message = facts.status.get("message") or ""
    headline = ("The first figure is the headline: the best model on the whole held-back images at the end of "
                "training. " if held_back else
                "The held-back images have not been scored yet (the run has not ended), so only the training-time "
                "check is shown. ")
    return (
        f"<header><h1>{_e(facts.run.name)}</h1>"
        f'<p class="muted">Segmentation model trained with U-Net Studio on the dataset '
        f"<b>{_e(facts.recorded.get('name', 'unknown'))}</b>; started {_e(row['started'] or 'unknown')}, "
        f"state: {_e(row['state'])}{' (' + _e(message) + ')' if message else ''}.</p>"
        f'<div class="cards">{card_html}</div>'
        f'<p class="note">{_e(headline)}Dice and IoU measure how well the predicted outline overlaps the true one: '
        "1 means a perfect match, 0 no overlap. The validation images were held back from training, but they were "
        "used to choose the best epoch, so a separate test set is the stricter check. Every score stands beside the "
        "trivial baseline: what painting every pixel the most common class would score.</p></header>"
    )


def _dataset_section(facts: _RunFacts) -> str:
    r, cfg = facts.recorded, facts.config
    train, val = r.get("train", []), r.get("val", [])
    sizes = facts.dataset.image_sizes if facts.dataset else {}
    size_text = ""
    if sizes.get("min") and sizes.get("max"):
        (h0, w0), (h1, w1) = sizes["min"], sizes["max"]
        size_text = f"{w0}x{h0}" if (h0, w0) == (h1, w1) else f"from {w0}x{h0} to {w1}x{h1}"
    rows = [
        ("Name", r.get("name", "unknown")),
        ("Image/mask pairs", f"{len(train) + len(val)} ({len(train)} to learn from, {len(val)} to check on)"),
        ("Image type", {1: "grayscale", 3: "colour (RGB)"}.get(cfg.data.channels, f"{cfg.data.channels} channels")
         + (f"; {r['found']}" if r.get("found") else "")),
        ("Intensity", Intensity.from_record(r.get("intensity"), cfg.data.channels, r.get("source_bits")).describe()),
        ("Task", "separate touching objects (background, object interior and boundary learned; one id per object "
                 f"by a watershed; objects from {r.get('objects_from') or 'the masks'})"
         if cfg.data.task == Task.INSTANCES else "segment classes (one class per pixel)"),
        ("Image sizes", size_text or "unknown"),
        ("Training input", f"{cfg.data.input_size}x{cfg.data.input_size} pixels, "
                           f"{RESIZE_NAMES.get(cfg.data.resize, cfg.data.resize).lower()}; brightness scaled "
                           f"{NORMALISATION_NAMES.get(cfg.data.normalisation, cfg.data.normalisation).lower()}"),
    ]
    parts = ["<section><h2>1. The data</h2>", _table(None, rows)]
    if facts.separates_objects:
        parts.append("<h3>Objects</h3><p>The model finds objects, one id each, and is scored object by object. To "
                     "separate touching objects it learns three classes:</p>")
        parts.append(_table(["#", "class learned"], [(k, _swatch(n, facts.network_colors[k]))
                                                     for k, n in enumerate(facts.network_names)]))
    else:
        parts.append("<h3>Classes</h3>")
        parts.append(_table(["#", "class"], [(k, _swatch(n, facts.colors[k])) for k, n in enumerate(facts.names)]))
    samples = facts.pairs(train + val, SAMPLE_PAIRS)
    if samples:
        parts.append("<h3>Sample images with their masks</h3><div class='grid'>")
        for stem, image, mask in samples:
            parts.append(_figure(overlay(facts.picture(image), mask, facts.colors, 0.45, contours=True), stem))
        parts.append("</div>")
    else:
        parts.append('<p class="note">The dataset is no longer on disk, so no sample images are shown.</p>')
    return "".join(parts) + "</section>"


def _augment_section(facts: _RunFacts) -> str:
    aug = facts.config.augment
    parts = ["<section><h2>2. Augmentation</h2>"]
    if not aug.enabled:
        parts.append("<p>Augmentation was <b>switched off</b>: training saw every image only resized, as it is.</p>")
    else:
        parts.append("<p>During training each image was changed at random in these ways (image and mask alike), "
                     "so the model learns what stays the same.</p>")
        rows = [(setting_name(f"augment.{key}"), setting_value(f"augment.{key}", value))
                for key, value in aug.__dict__.items() if key != "enabled"]
        parts.append(_table(["setting", "value"], rows))
    samples = facts.pairs(facts.recorded.get("train", []), 4)
    if samples and aug.enabled:
        scale = facts.dataset.rule.as_scale() if facts.dataset else None
        previews = preview_pairs([s[1] for s in samples], [s[2] for s in samples], aug, facts.config.data,
                                 n=PREVIEW_PAIRS, seed=0, scale=scale)
        parts.append("<h3>What training saw (examples)</h3><div class='grid'>")
        for i, (image, mask) in enumerate(previews):
            parts.append(_figure(overlay(image, mask, facts.colors, 0.45), f"augmented example {i + 1}"))
        parts.append("</div>")
    return "".join(parts) + "</section>"


def _model_section(facts: _RunFacts) -> str:
    cfg = facts.config
    m = model_facts(cfg)  # no number of images: nothing to time, so the machine is never calibrated
    rows = [
        ("Parameters (learned numbers)", f"{m.params:,}"),
        ("Compute per image", f"{m.gflops:.3f} GFLOPs at {cfg.data.input_size}x{cfg.data.input_size}"),
        ("Training memory (estimate)", f"{m.memory_gb:.2f} GB for a batch of {cfg.train.batch_size}"),
        ("Receptive field", f"{m.receptive_field} pixels (how far each pixel's decision can look)"),
        ("Depth / base filters", f"{cfg.model.depth} / {cfg.model.base_filters}"),
        ("Loss, optimiser, learning rate", f"{setting_value('train.loss', cfg.train.loss)}, "
                                           f"{setting_value('train.optimizer', cfg.train.optimizer)}, "
                                           f"{cfg.train.learning_rate:g}"),
    ]
    return ("<section><h2>3. The model</h2><p>A U-Net: it shrinks the image step by step to see context, then "
            "grows it back to full size to draw the outline, with shortcuts (dashed) that keep fine detail.</p>"
            f'<div class="diagram">{architecture_svg(cfg)}</div>{_table(None, rows)}</section>')


def _training_section(facts: _RunFacts, plots: _Plots) -> str:
    if not facts.history:
        return "<section><h2>4. Training</h2><p>No epoch has finished yet.</p></section>"
    names = [_e(n) for n in facts.network_names]  # Plotly renders HTML-like tags in legends
    seconds = sum(float(r.get("seconds") or 0) for r in facts.history)
    return ("<section><h2>4. Training</h2>"
            f"<p>{count_text(len(facts.history), 'epoch')} (passes over the training images), "
            f"{_e(duration_text(seconds))} inside "
            "the epochs themselves (the training time above adds start-up, saving and every resumed session). "
            "Curves that keep rising on the validation images mean the model was still learning; "
            "a validation curve that falls while training rises means it started memorising.</p>"
            f"{plots.html(history_figure(facts.history, names, facts.network_colors))}</section>")


def _class_score_rows(result: dict[str, Any], facts: _RunFacts) -> list[tuple]:
    baseline = {row["class"]: row for row in (result.get("baseline") or {}).get("per_class", [])}
    return [(_swatch(c["name"], facts.colors[c["class"]]), _number(c["dice"]), _number(c["iou"]),
             _number(baseline.get(c["class"], {}).get("dice")), f"{c['support_pixels']:,}")
            for c in result.get("per_class", []) if c["class"] < len(facts.colors)]


def _headline_html(result: dict[str, Any]) -> str:
    text = f"<p>{_e(evaluation.headline_sentence(result))} Pixel accuracy {_number(result.get('pixel_accuracy'))}.</p>"
    if result.get("near_baseline"):
        text += ('<p class="note"><b>Warning:</b> the model is barely better than painting every pixel '
                 f"\"{_e((result.get('baseline') or {}).get('predicts'))}\": it has learned little.</p>")
    return text


def _objects_html(objects: dict[str, Any] | None, plots: _Plots) -> str:
    """Object-level scores (issue #15): the sentence, what was compared, and AP/F1 over IoU thresholds."""
    if not objects:
        return ""
    rows = [(f"{r['threshold']:.2f}", r["tp"], r["fp"], r["fn"], _number(r["precision"]), _number(r["recall"]),
             _number(r["f1"]), _number(r["average_precision"])) for r in objects.get("pooled", [])[::2]]
    return ("<h4>Objects</h4>"
            f"<p>{_e(objects.get('summary', ''))}. Predicted objects: {_e(objects.get('predicted_by', ''))}; true "
            f"objects: {_e(objects.get('true_from', ''))}.</p>"
            + _table(["IoU needed", "found", "extra", "missed", "precision", "recall", "F1", "AP"], rows,
                     numeric=tuple(range(1, 8)))
            + f"<p class='muted'>{_e(OBJECT_SCORES_EXPLAINED)}</p>"
            + plots.html(object_ap_figure(objects)))


def _validation_scores(facts: _RunFacts, plots: _Plots) -> str:
    held_back = facts.held_back
    if held_back.get("per_class"):
        return (f"<h3>On the {count_text(held_back.get('images', 0), 'held-back image')}, whole, with the best "
                "model (the headline)</h3>"
                + _table(["class", "Dice", "IoU", "baseline Dice", "true pixels"],
                         _class_score_rows(held_back, facts), numeric=(1, 2, 3, 4))
                + _headline_html(held_back) + _objects_html(held_back.get("objects"), plots))
    best = facts.best
    if not best:
        return ""
    rows = [(_swatch(name, facts.network_colors[k]), _number(best.get(f"val_dice_{k}")),
             _number(best.get(f"val_iou_{k}"))) for k, name in enumerate(facts.network_names)]
    return (f"<h3>On the validation images as training saw them, at the best epoch ({_e(best.get('epoch'))}): the "
            f"{_e(_proxy_label(facts))}</h3>"
            f"{_table(['class', 'Dice', 'IoU'], rows, numeric=(1, 2))}")


def _evaluation_html(result: evaluation.Evaluation, data: Path, facts: _RunFacts, plots: _Plots) -> str:
    scored = result.to_dict()
    nouns = {"val": "held-back image", "test": "test image", "train": "training image"}
    parts = [f"<h3>On the dataset '{_e(result.data or data.name)}' "
             f"({count_text(result.images, nouns.get(result.split, 'image'))}, every pixel at full size)</h3>",
             _table(["class", "Dice", "IoU", "baseline Dice", "true pixels"], _class_score_rows(scored, facts),
                    numeric=(1, 2, 3, 4)),
             _headline_html(scored), _objects_html(scored.get("objects"), plots)]
    if result.sweep:
        figure = threshold_sweep_figure(result.sweep, result.best_threshold, height=300)
        parts.append(f"<p>Best threshold: <b>{result.best_threshold:g}</b> (Dice against the threshold that turns "
                     "a probability into 'object').</p>" + plots.html(figure))
    if result.num_classes > 2:
        header = ["true \\ predicted", *[n for n in result.class_names]]
        rows = [[result.class_names[i], *[f"{v:,}" for v in result.confusion[i]]] for i in range(result.num_classes)]
        parts.append("<p>Confusion matrix (pixels): rows are the true class, columns the predicted one.</p>")
        parts.append(_table(header, rows, numeric=tuple(range(1, result.num_classes + 1))))
    if result.worst:
        parts.append("<h3>The hardest images</h3><p class='muted'>green: found correctly, red: claimed but not "
                     "there, blue: missed.</p><div class='grid'>")
        parts += [_figure(item.picture, f"{item.image}: Dice {item.dice:.3f}") for item in result.worst]
        parts.append("</div>")
    return "".join(parts)


def _results_section(facts: _RunFacts, data: Path | None, plots: _Plots) -> str:
    parts = ["<section><h2>5. Results</h2>", _validation_scores(facts, plots)]
    if data is not None:
        result = evaluation.evaluate_detailed(facts.run.path, data, gallery=WORST_IMAGES)
        parts.append(_evaluation_html(result, Path(data), facts, plots))
    else:
        parts.append('<p class="note">Scores above come from the held-back validation images. To score the model '
                     "on a separate test set, evaluate it on the Runs page and make the report there.</p>")
    return "".join(parts) + "</section>"


def _gallery_section(facts: _RunFacts) -> str:
    head = "<section><h2>6. Predictions on validation images</h2>"
    samples = facts.pairs(facts.recorded.get("val", []), GALLERY_IMAGES)
    if not samples:
        return head + '<p class="note">The validation images are no longer on disk.</p></section>'
    try:
        from unet.inference import Predictor

        predictor = Predictor.from_run(facts.run.path)
    except UserError as exc:
        return head + f'<p class="note">{_e(exc)}</p></section>'
    parts = [head, "<p class='muted'>Each row: the image, the true mask, the model's prediction.</p>",
             "<div class='grid wide'>"]
    for stem, image, truth in samples:
        mask = predictor.predict(image).mask()
        score = postprocess.headline(postprocess.scores(mask, truth, facts.names))  # as evaluation's headline
        shown = facts.picture(image)
        picture = np.concatenate([to_rgb(shown), overlay(shown, truth, facts.colors, 0.5),
                                  overlay(shown, mask, facts.colors, 0.5)], axis=1)
        parts.append(_figure(picture, f"{stem}: " + ("nothing to score" if score is None else
                                                     f"Dice {score:.3f} (foreground classes)")))
    return "".join(parts) + "</div></section>"


def _reproduce_section(facts: _RunFacts) -> str:
    versions = _table(["software", "version"], list(facts.versions.items())) if facts.versions else (
        "<p>versions.json is missing.</p>")
    config = json.dumps(facts.config.to_dict(), indent=2)
    return ("<section><h2>7. How to reproduce it</h2>"
            "<p>Save the settings below as <code>config.json</code> and run, on any machine with U-Net Studio:</p>"
            f"<pre><code>{_e(train_command(facts.run, private=True))}</code></pre>{versions}"
            f"<details><summary>config.json (every setting)</summary><pre><code>{_e(config)}</code></pre></details>"
            "</section>")


# ----------------------------------------------------------------------------------------------------------------
# The document
# ----------------------------------------------------------------------------------------------------------------


def build_report(run_dir: Path, data: Path | None = None) -> str:
    """The report of `run_dir` as one HTML document (a string); `data` adds an evaluation on that dataset."""
    facts = _RunFacts(Path(run_dir))
    plots = _Plots()
    sections = [
        _header(facts), _dataset_section(facts), _augment_section(facts), _model_section(facts),
        _training_section(facts, plots), _results_section(facts, data, plots), _gallery_section(facts),
        _reproduce_section(facts),
    ]
    made = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(facts.run.name)}: U-Net Studio report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}"
        f"<footer>Made by U-Net Studio on {_e(made)} from the run folder {_e(facts.run.id)}.</footer>"
        "</main></body></html>"
    )


def write_report(run_dir: Path, out_path: Path, data: Path | None = None) -> Path:
    """Write the report of `run_dir` to `out_path` (replaced whole, never half-written) and return the path."""
    html = build_report(Path(run_dir), Path(data) if data is not None else None)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text_atomic(out_path, html)
    return out_path
