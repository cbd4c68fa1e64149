"""`python -m unet`: the command line, the same engine the browser uses.

Each subcommand parses its arguments, calls one function of the core and prints its result. A `UserError`
becomes a one-line message on stderr and exit code 2; heavy modules (TensorFlow) are imported only by the
subcommands that need them, so `inspect` and `demo-data` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from unet.config import TASKS
from unet.errors import UserError

if TYPE_CHECKING:
    from unet.config import Config
    from unet.finetune import Source

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _demo_data(args: argparse.Namespace) -> int:
    from unet.demo import write_demo_dataset

    out = write_demo_dataset(Path(args.out), kind=args.kind, count=args.count, size=args.size, seed=args.seed)
    print(f"wrote the '{args.kind}' demo dataset ({args.count} pairs) to {out}")
    return 0


MASKS_HELP = ("how gray masks with many values are read: ids (instance labels, one id per object: 0 background, "
              "every other value one object), classes (each value a class), or auto (the default: decided over the "
              "whole dataset)")
MASK_READINGS = ("auto", "ids", "classes")  # unet.masks.MASK_READINGS (the parser is built without importing it)
STACKS_HELP = ("how multi-plane TIFFs (z-stacks, time series) become 2D images: auto (each slice when each has its "
               "mask, else the maximum projection), slices, max, mean, or 'plane N' (one plane, counted from 1)")


def _inspect(args: argparse.Namespace) -> int:
    from unet.dataset import inspect_source

    report = inspect_source(Path(args.data), stacks=args.stacks, masks=args.masks, values=_values(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        for label, text in (("found", report.found), ("intensity", report.intensity)):
            if text:
                print(f"  {label}: {text}")
        for problem in report.problems:
            print(f"  {'skipped' if problem.skipped else 'note'}: {problem.file + ': ' if problem.file else ''}"
                  f"{problem.problem}")
    return 0


def _values(args: argparse.Namespace):
    """--background and --ignore-value as `unet.dataset.ValueChoices`."""
    from unet.dataset import ValueChoices

    return ValueChoices.parse(args.background, args.ignore_value or ())


def _load_config(args: argparse.Namespace, dataset=None):
    """Defaults, then a preset or the suggestion for the data, then --config's keys, then --epochs/--max-minutes.

    `dataset`, when given, is the stored dataset the suggestion plans on (`train` stores it once, in the run)."""
    import dataclasses

    from unet.config import Config

    config = Config()
    from unet.runs import CONFIG

    recorded = Path(args.out) / CONFIG if getattr(args, "resume", False) and getattr(args, "out", None) else None
    if recorded is not None and recorded.exists():  # a resume continues the run's own settings (its network's shape)
        config = Config.load(recorded)
    elif getattr(args, "preset", None):
        from unet.presets import apply_preset

        config = apply_preset(config, args.preset)
    if getattr(args, "suggest", False) and not (recorded is not None and recorded.exists()):
        config = _suggestion(Path(args.data), args.minutes, dataset, getattr(args, "task", None)).config
    if args.config:
        Config.load(args.config)  # refuses an unreadable file, bad JSON, an unknown key or a bad value, naming it
        config = Config.from_dict(_merge(config.to_dict(), json.loads(Path(args.config).read_bytes())))
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if overrides:
        config = config.replace(train=dataclasses.replace(config.train, **overrides))
    return config


def _merge(base: dict, given: dict) -> dict:
    """`given`'s sections laid over `base`'s, key by key (a file may give only some keys)."""
    if not isinstance(given, dict):
        raise UserError("the config file must hold a JSON object with the sections data, augment, model, train")
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in given.items():
        if isinstance(values, dict) and section in merged:
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def _suggestion(data: Path, minutes: float, dataset=None, task_name: str | None = None):
    """The suggestion for `dataset` (else `data`, stored in a scratch folder), for the task the run will have:
    `task_name`, else the dataset's default (separate objects for instance label masks), so that what the task
    needs (the boundary class's weights) is part of it."""
    import dataclasses
    import tempfile

    from unet import pipeline, task
    from unet.config import Config
    from unet.suggest import suggest

    def planned(stored) -> object:
        base = Config()
        base = base.replace(data=dataclasses.replace(base.data, task=task_name or task.default_task(stored)))
        return suggest(stored, minutes, base=base)

    if dataset is not None:
        return planned(dataset)
    with tempfile.TemporaryDirectory(prefix="unet-suggest-") as scratch:
        return planned(pipeline.open_dataset(data, Path(scratch) / "data"))


def _preset_names() -> list[str]:
    from unet.presets import PRESETS

    return list(PRESETS)


def _suggest(args: argparse.Namespace) -> int:
    suggestion = _suggestion(Path(args.data), args.minutes)
    if args.json:
        print(json.dumps(suggestion.to_dict(), indent=2))
    else:
        cfg = suggestion.config
        print(f"input {cfg.data.input_size}x{cfg.data.input_size} ({cfg.data.resize}), depth {cfg.model.depth}, "
              f"{cfg.model.base_filters} base filters, {cfg.train.epochs} epochs")
        for reason in suggestion.reasons:
            print(f"  because {reason}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    source = _init_source(args)  # before anything heavy: a wrong path is named at once
    said_values = args.background != "auto" or args.ignore_value
    if (args.masks != "auto" or said_values) and (Path(args.data) / "dataset.json").exists():
        flag = f"--masks {args.masks}" if args.masks != "auto" else "--background/--ignore-value"
        raise UserError(f"{flag} says how raw masks are read, and '{Path(args.data).name}' is a stored "
                        "dataset whose masks were read when it was saved; give the raw folder or zip instead")
    from unet.training import load_data, train

    data, dataset = Path(args.data), None
    if getattr(args, "suggest", False) and not args.resume:  # store the data once, in the run, and plan on it
        dataset = load_data(data, Path(args.out).resolve(), reuse=False, stacks=args.stacks, masks=args.masks,
                            values=_values(args))
        data = dataset.root
    config = _load_config(args, dataset)
    if args.task:
        config = config.replace(data=dataclasses.replace(config.data, task=args.task))
    if source is not None:
        config = _fine_tuned(config, source, args.epochs)
    said = bool(args.task) or (args.config and "task" in json.loads(Path(args.config).read_bytes()).get("data", {}))
    return train(Path(args.out), data, config, resume=args.resume, test_split=args.test_split,
                 stacks=args.stacks, task_given=bool(said), masks=args.masks, values=_values(args))


def _submit(args: argparse.Namespace) -> int:
    """Start a training through the configured backend (this machine, or the Ray cluster in UNET_RAY_ADDRESS)
    and return at once; the run folder tells how it goes, as for `train`."""
    from unet import backend, runs

    data, out = Path(args.data), Path(args.out)
    if not data.exists():
        raise UserError(f"there is no dataset at '{data}'")
    address = backend.ray_address()
    cluster = backend.Cluster(address) if address else None  # an unreachable cluster starts nothing
    if args.resume:
        if not (out / runs.CONFIG).exists():
            raise UserError(f"cannot resume '{out}': it has no {runs.CONFIG}; submit it without --resume first")
    else:
        config = _load_config(args)
        out.mkdir(parents=True, exist_ok=True)
        runs.write_text_atomic(out / runs.CONFIG, config.to_json())
        if not (out / runs.RUN_INFO).exists():
            runs.write_json_atomic(out / runs.RUN_INFO, {"name": out.name, "created": runs.now_iso(),
                                                          "dataset": str(data.resolve())})
    placement = backend.start(out, data, resume=args.resume, epochs=args.epochs if args.resume else None,
                              max_minutes=args.max_minutes if args.resume else None, cluster=cluster)
    print(f"started {out.name} {placement.describe()}; its progress is in {out / runs.STATUS}")
    return 0


def _init_source(args: argparse.Namespace) -> Source | None:
    """The `--init-from` source, or None."""
    if not args.init_from:
        return None
    if args.resume:
        raise UserError("--init-from starts a new training and --resume continues this run from its last.keras; "
                        "use one or the other")
    from unet.finetune import resolve_source

    return resolve_source(args.init_from)


def _fine_tuned(config: Config, source: Source, epochs: int | None) -> Config:
    """`unet.finetune.fine_tune_config`, with an explicit --epochs kept; says what it changed in one line."""
    import dataclasses

    from unet.finetune import LR_FACTOR, RUN, fine_tune_config

    tuned = fine_tune_config(config, source)
    if epochs is not None:
        tuned = tuned.replace(train=dataclasses.replace(tuned.train, epochs=epochs))
    rate = tuned.train.learning_rate
    whose = "its" if source.kind == RUN else "the config's"
    settings = " with its model settings" if source.kind == RUN else ""
    count = tuned.train.epochs
    print(f"fine-tuning from {source.label}{settings}: learning rate {rate:.3g} (a tenth of {whose} "
          f"{rate / LR_FACTOR:.3g}), {count} epoch{'s' if count != 1 else ''}; change them with --config/--epochs")
    return tuned


def _evaluate(args: argparse.Namespace) -> int:
    from unet.evaluation import evaluate

    result = evaluate(Path(args.run), Path(args.data) if args.data else None, split=args.split)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(evaluation_text(result))
    return 0


def _score(value: float | None, digits: int = 4) -> str:
    return "not scored" if value is None else f"{value:.{digits}f}"


def evaluation_text(result: dict) -> str:
    """`evaluate`'s plain text from its JSON: the headline, every class, the object scores when there are any,
    the files left out ("skipped") and the notes on files that were scored."""
    from unet.evaluation import headline_sentence

    lines = [f"{result['images']} images ({result['split']}) of {result['data']}", headline_sentence(result)]
    if result["near_baseline"]:
        lines.append("  WARNING: the model is barely better than painting every pixel one class")
    for row in result["per_class"]:
        named = row["name"] if row.get("value") is None else f"{row['name']} = {row['value']}"
        lines.append(f"  class {row['class']} ({named}): Dice {_score(row['dice'])}  IoU {_score(row['iou'])}"
                     f"  ({row['support_pixels']} true pixels)")
    lines.append(f"  pixel accuracy {result['pixel_accuracy']:.4f}")
    if result.get("best_threshold") is not None:
        lines.append(f"  best threshold {result['best_threshold']:g}")
    objects = result.get("objects")
    if objects:
        at50 = next((row for row in objects.get("pooled", []) if row["threshold"] == 0.5), {})
        thresholds = objects.get("thresholds") or [0.5]
        span = f"{min(thresholds):g}-{max(thresholds):g}" if len(thresholds) > 1 else f"{thresholds[0]:g}"
        lines.append(f"objects ({objects['true_objects']} true, {objects['predicted_objects']} predicted, "
                     f"matched at IoU 0.5): AP@0.5 {_score(objects.get('ap50'))}  F1 {_score(objects.get('f1_50'))}"
                     f"  precision {_score(at50.get('precision'))}  recall {_score(at50.get('recall'))}"
                     f"  mean AP over IoU {span} {_score(objects.get('mean_ap'))}")
        for key in ("predicted_by", "true_from"):
            if objects.get(key):
                lines.append(f"  {key.replace('_', ' ')} {objects[key]}")
    for problem in result["problems"]:
        verb = "skipped" if problem.get("skipped", True) else "note on"
        lines.append(f"  {verb} {problem['file']}: {problem['problem']}")
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from unet.inference import predict_folder

    if args.labels and args.class_indices:
        raise UserError("--labels writes object ids and --class-indices class numbers; give one of them")
    written = predict_folder(
        Path(args.run) if args.run else None,
        Path(args.images),
        Path(args.out),
        model_file=Path(args.model) if args.model else None,
        threshold=args.threshold,
        class_indices=args.class_indices,
        labels=True if args.labels else (False if args.classes or args.class_indices else None),
    )
    print(f"wrote {len(written)} masks to {args.out}" + (", and objects.csv (one row per object)" if written else ""))
    return 0 if written else 2


def _export(args: argparse.Namespace) -> int:
    if args.format == "bioimageio":
        from unet.model_zoo import export_package

        package = export_package(Path(args.run), Path(args.out), args.author or [], args.license,
                                 args.description)
        print(package.summary())
        for message in package.messages:
            print(f"  - {message}")
        return 0 if package.ok else 1
    from unet.export import export_model

    result = export_model(Path(args.run), args.format, Path(args.out))
    print(result.summary())
    return 0 if result.ok else 1


def _report(args: argparse.Namespace) -> int:
    from unet.html_report import write_report

    path = write_report(Path(args.run), Path(args.out), Path(args.data) if args.data else None)
    print(f"wrote the report to {path} ({path.stat().st_size / 1e6:.1f} MB); it opens offline in any browser")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from unet.bench import main as bench_main

    return bench_main(json_output=args.json, quality=args.quality, tiny=args.tiny)


def _value_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--background", default="auto", metavar="VALUE|none",
                   help="the mask value of the background, or none (every class is learned and scored alike, as "
                        "street scenes whose 0 is sky). Default: 0 when it is the most common value (raw data)")
    p.add_argument("--ignore-value", type=int, action="append", metavar="V",
                   help="a mask value that means 'not labelled' (left out of training, scores and pictures); "
                        "repeat for several (CamVid: --ignore-value 11). VOC's 255 beside class numbers is found "
                        "by itself (raw data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet", description="U-Net Studio from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("demo-data", _demo_data, "write a generated demo dataset as OUT/images/*.png and OUT/masks/*.png")
    p.add_argument("out", help="folder to write")
    p.add_argument("--kind", choices=["cells", "shapes"], default="cells")
    p.add_argument("--count", type=int, default=48, help="number of image/mask pairs")
    p.add_argument("--size", type=int, default=128, help="side of each image in pixels")
    p.add_argument("--seed", type=int, default=0)

    p = command("inspect", _inspect, "check a dataset folder or zip and report its pairs, classes and problems")
    p.add_argument("data", help="folder or zip holding images/ and masks/")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--stacks", default="auto", help=STACKS_HELP)
    p.add_argument("--masks", choices=MASK_READINGS, default="auto", help=MASKS_HELP)
    _value_arguments(p)

    p = command("suggest", _suggest, "settings that fit a dataset and a time budget, with the reasons")
    p.add_argument("data", help="folder or zip holding images/ and masks/, or a stored dataset")
    p.add_argument("--minutes", type=float, default=5.0, help="about how long training may take (default 5)")
    p.add_argument("--json", action="store_true", help="print the config (data, augment, model, train) and reasons")

    p = command("train", _train, "train a U-Net; leaves config.json, status.json, history.jsonl, model.keras")
    p.add_argument("--data", required=True, help="folder or zip holding images/ and masks/, or a stored dataset")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", help="config.json (sections data, augment, model, train; missing keys take defaults, "
                                    "or the preset's / the suggestion's values)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--preset", choices=_preset_names(), help="start from a preset's settings")
    start.add_argument("--suggest", action="store_true",
                       help="start from the settings `suggest` proposes for this data (see --minutes)")
    p.add_argument("--minutes", type=float, default=5.0, help="with --suggest: the time budget (default 5)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    p.add_argument("--resume", action="store_true", help="continue a stopped or interrupted run from last.keras")
    p.add_argument("--init-from", metavar="RUN_DIR|FILE.keras",
                   help="fine-tune: start from a run's best model (its model settings are used) or from a .keras "
                        "file built with the same settings; sets a tenth of the learning rate and at most 20 "
                        "epochs (--epochs still wins). A new output layer is learned when the classes differ")
    p.add_argument("--task", choices=TASKS,
                   help="semantic: a class per pixel; instances: also separate touching objects (one id each). "
                        "Default: instances for instance label masks, else semantic (or the config's data.task)")
    p.add_argument("--stacks", default="auto", help=STACKS_HELP + " (for raw data)")
    p.add_argument("--masks", choices=MASK_READINGS, default="auto", help=MASKS_HELP + " (for raw data)")
    _value_arguments(p)
    p.add_argument("--test-split", type=float, default=0.0, metavar="SHARE",
                   help="set this share of the images (0 to 0.5) aside as a test set, never trained on nor used to "
                        "choose the model; `evaluate` scores it first")

    p = command("submit", _submit, "start a training through the configured backend (this machine, or the Ray "
                                   "cluster in $UNET_RAY_ADDRESS) and return at once")
    p.add_argument("--data", required=True, help="folder or zip holding images/ and masks/, or a stored dataset")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", help="config.json (missing keys take defaults)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    p.add_argument("--resume", action="store_true", help="continue a stopped or interrupted run from last.keras")

    p = command("evaluate", _evaluate, "Dice, IoU and pixel accuracy of a run's best model on a labelled dataset")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", help="folder or zip holding images/ and masks/, or a stored dataset "
                                  "(default: the dataset the run trained on)")
    p.add_argument("--split", choices=("test", "val", "train", "all"),
                   help="which of the run's own images to score: test (the dataset's test set; the default when it "
                        "has one), val (held back from training; the default otherwise), train, or all (the default "
                        "on other data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("predict", _predict, "one mask PNG per image, in the training masks' own values, at the image's "
                                     "own size and name")
    p.add_argument("--run", help="run folder (its best model, preprocessing and class names)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="folder for the masks")
    p.add_argument("--model", help="a .keras file (with --run: the run's settings are kept)")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability above which a pixel is foreground (default 0.5, or for a run that separates "
                        "touching objects the one chosen on its held-back images: see its objects.json)")
    p.add_argument("--class-indices", action="store_true",
                   help="write class numbers 0..K-1 instead of the masks' own values (0/255, colours, ...); for a "
                        "run trained to separate touching objects, its class mask (0 background, 1 object) instead "
                        "of object ids")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--labels", action="store_true",
                      help="write one id per object (8-bit PNG, 16-bit past 255 objects): the default for runs "
                           "trained to separate touching objects; for other binary runs, their connected regions")
    kind.add_argument("--classes", action="store_true",
                      help="write the class mask even for a run trained to separate touching objects (0 "
                           "background, 1 object)")

    p = command("export", _export, "export a run's best model and check its predictions against the trained model")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--format", required=True, choices=["keras", "savedmodel", "tflite", "onnx", "bioimageio"],
                   help="bioimageio: a BioImage Model Zoo package (zip) for Fiji/deepImageJ, napari, ilastik, "
                        "QuPath, validated and tested with bioimageio.spec/core")
    p.add_argument("--out", required=True, help="folder to write into (model.keras, saved_model/, model.tflite, ...)")
    p.add_argument("--author", action="append", metavar="NAME",
                   help="bioimageio: an author of the model (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="bioimageio: the SPDX licence id (default CC-BY-4.0)")
    p.add_argument("--description", help="bioimageio: one or two sentences on what the model does (default: "
                                         "written from the run)")

    p = command("report", _report, "write one self-contained HTML report of a run (opens offline)")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--data", help="a labelled dataset to evaluate the model on (optional)")

    p = command("bench", _bench, "performance figures of this machine: throughput, pipeline efficiency, "
                "prediction time, memory (see bench/README.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quality", action="store_true",
                   help="also train the Balanced preset on ISBI 2012 for 5 minutes (validation Dice)")
    p.add_argument("--tiny", action="store_true", help="a tiny model and dataset (seconds; for tests)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
