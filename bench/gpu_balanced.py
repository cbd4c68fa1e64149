"""Train U-Net Studio's "Balanced" preset on ISBI 2012 EM membranes on a GPU, mixed precision; report speed and Dice.

WHY THIS SCRIPT EXISTS, AND WHY IT USES KERAS' JAX BACKEND
    The project's trainer (`unet.training`) is Keras 3 on TensorFlow, fed by a `tf.data` pipeline
    (`unet.pipeline`, `unet.augment`). The rented GPU machine this runs on has NO TensorFlow (and no network): it has
    JAX with CUDA. So this is a stand-in for the tf.data trainer that keeps what decides speed and quality the same:
      * the architecture: built by the project's own `unet.model.build_unet` from `unet.presets.apply_preset(Config(),
        "Balanced")` (depth 4, 8 base filters, batch norm, dropout 0.1 at the bottleneck, bilinear up-sampling,
        one sigmoid output in float32). `unet.model`, `unet.config`, `unet.presets` and `unet.schedule` import only
        keras / the standard library, so they are imported as they are (a TensorFlow-free fallback is below, in case
        someone adds a TensorFlow import to the package's `__init__`);
      * the loss: `unet.metrics.make_loss("dice_ce", 2)` is TensorFlow code, so `dice_ce_loss` below re-implements it
        in `keras.ops` term by term (soft Dice over the whole batch, foreground only, smoothing 1, plus pixel-mean
        cross-entropy with probabilities clipped at 1e-7);
      * the schedule: Adam at 1e-3, warm-up over 5% of the steps from 10% of the rate, then half a cosine down to 1%
        (`unet.schedule.cosine_rate`, set per step as `unet.callbacks.CosineSchedule` does; here as a Keras
        LearningRateSchedule so it lives inside the jitted step);
      * the data: the project's split (`unet.pipeline.split_stems` copied: seeded permutation of the sorted stems,
        validation_split 0.2, seed 42 -> 24 train / 6 validation), random 256x256 crops, batches of 4 drawn from a
        reshuffled, repeating stream (6 steps per epoch), and the default augmentation of `AugmentConfig`: flips,
        quarter turns, brightness +-0.1, contrast x[0.9, 1.1] (done in NumPy instead of `tf.image`);
      * masks: ISBI paints membrane 0 (black) and cell interior 255 (white); the project's mask plan numbers the values
        in order, so class 0 = membrane, class 1 = cell (the sigmoid's foreground); images are scaled to 0..1 ("unit").
    What differs from `unet.training`: no per-epoch validation, checkpointing, early stopping (patience 30) or run
    folder; the input pipeline is synchronous NumPy rather than tf.data; mixed precision is on
    (`mixed_float16`, with Keras' automatic dynamic loss scaling), which the CPU runs of the preset did not use.

WHAT IT DOES
    (a) the preset as on CPU: 150 epochs x 6 steps of 4 crops (override with --epochs / --batch), timed;
    (b) only with --extra-epochs N: a second, fresh model trained for N epochs (its own warm-up + cosine over N),
        to see what a GPU's longer budget buys;
    then, for each trained model: whole-image (512x512, native resolution) validation Dice and IoU per class from
    the 0.5-thresholded prediction, in NumPy, with the trivial "majority class everywhere" baseline; and inference
    images/s for whole 512x512 images at batch 1 and batch 8.
    --time-limit (default 360 s, counted from the start of the script) stops training at the end of an epoch and
    says so in the report ("stopped_by_time_limit").
    Prints one JSON report at the end and writes it to <--out>/gpu_balanced.json (also after phase (a)).

RUN ON THE DEVICE (from the repository root; wheels are plain zips, so no pip is needed):
    mkdir -p /tmp/site && for w in .gpu/wheels/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done &&
    PYTHONPATH=/tmp/site:. KERAS_BACKEND=jax python3 bench/gpu_balanced.py --data .gpu/isbi --out "$OUT"
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
if os.environ["KERAS_BACKEND"] != "jax":
    raise SystemExit(f"this script needs KERAS_BACKEND=jax, not {os.environ['KERAS_BACKEND']}")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

STARTED = time.monotonic()
REPO = Path(__file__).resolve().parent.parent  # .gpu/ sits in the repository root
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402


def import_project():
    """unet.config, unet.presets, unet.model, unet.schedule; without running unet/__init__ if that needs TensorFlow."""
    names = ("config", "presets", "model", "schedule")
    try:
        return [importlib.import_module(f"unet.{n}") for n in names] + ["package import"]
    except ImportError as error:
        if "tensorflow" not in str(error):
            raise
    for key in [k for k in sys.modules if k == "unet" or k.startswith("unet.")]:
        del sys.modules[key]
    bare = types.ModuleType("unet")  # a package object with the right __path__, but no __init__ code run
    bare.__path__ = [str(REPO / "unet")]
    sys.modules["unet"] = bare
    return [importlib.import_module(f"unet.{n}") for n in names] + ["bare package (unet/__init__ imports tensorflow)"]


unet_config, unet_presets, unet_model, unet_schedule, IMPORT_MODE = import_project()

# Copied from unet.metrics (TensorFlow module, not importable here).
SMOOTH = 1.0
EPSILON = 1e-7
THRESHOLD = 0.5
MEMBRANE, CELL = 0, 1


# --------------------------------------------------------------------------------------------------------------
# Data: the project's split, crops and default augmentation, in NumPy
# --------------------------------------------------------------------------------------------------------------


def split_stems(stems, validation_split, seed):
    """unet.pipeline.split_stems, verbatim (that module imports TensorFlow)."""
    stems = sorted(stems)
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val = min(max(1, round(len(stems) * validation_split)), len(stems) - 1)
    val = sorted(stems[i] for i in order[:n_val])
    train = sorted(stems[i] for i in order[n_val:])
    return train, val


def load_dataset(folder: Path):
    """{stem: (uint8 image HxW, uint8 class mask HxW)}; mask 0 (membrane) -> class 0, 255 (cell) -> class 1."""
    pairs = {}
    for image_path in sorted((folder / "images").glob("*.png")):
        image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
        raw = cv2.imread(str(folder / "masks" / image_path.name), cv2.IMREAD_UNCHANGED)
        if image is None or raw is None:
            raise SystemExit(f"cannot read the pair {image_path.name}")
        values = set(np.unique(raw).tolist())
        if not values <= {0, 255}:
            raise SystemExit(f"mask {image_path.name} holds values {sorted(values)}, expected 0 and 255")
        pairs[image_path.stem] = (image, (raw == 255).astype(np.uint8))
    if len(pairs) < 2:
        raise SystemExit(f"no image/mask pairs under {folder}")
    return pairs


def batches(pairs, stems, batch, size, augment_cfg, rng):
    """Endless (images float32 [B,S,S,1] in 0..1, masks float32 [B,S,S,1] of 0/1) like unet.pipeline.train_pipeline:
    the stems reshuffled every pass of a repeating stream, a random size x size crop each, then the augmentation."""
    stream = []
    while True:
        images, masks = [], []
        for _ in range(batch):
            if not stream:
                stream = list(rng.permutation(stems))
            image, mask = pairs[stream.pop(0)]
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            image = image[top:top + size, left:left + size].astype(np.float32) / 255.0
            mask = mask[top:top + size, left:left + size]
            if augment_cfg.enabled and augment_cfg.flip:
                if rng.random() < 0.5:
                    image, mask = image[:, ::-1], mask[:, ::-1]
                if rng.random() < 0.5:
                    image, mask = image[::-1], mask[::-1]
            if augment_cfg.enabled and augment_cfg.rotate90:
                k = int(rng.integers(0, 4))
                image, mask = np.rot90(image, k), np.rot90(mask, k)
            if augment_cfg.enabled and augment_cfg.brightness:
                image = image + rng.uniform(-augment_cfg.brightness, augment_cfg.brightness)
            if augment_cfg.enabled and augment_cfg.contrast:
                mean = image.mean()
                image = (image - mean) * rng.uniform(1 - augment_cfg.contrast, 1 + augment_cfg.contrast) + mean
            images.append(np.clip(image, 0.0, 1.0))
            masks.append(mask)
        yield (np.ascontiguousarray(np.stack(images)[..., None], dtype=np.float32),
               np.ascontiguousarray(np.stack(masks)[..., None], dtype=np.float32))


def check_augmentation(augment_cfg):
    unsupported = {k: getattr(augment_cfg, k) for k in ("rotate", "zoom", "shift", "shear", "elastic", "gamma",
                                                       "noise", "blur") if getattr(augment_cfg, k)}
    if augment_cfg.enabled and unsupported:
        raise SystemExit(f"the default AugmentConfig now turns on {unsupported}, which this script does not do")


# --------------------------------------------------------------------------------------------------------------
# Loss and schedule: unet.metrics "dice_ce" and unet.schedule "cosine", in keras.ops
# --------------------------------------------------------------------------------------------------------------


def dice_ce_loss(y_true, y_pred):
    """unet.metrics.SegmentationLoss("dice_ce", num_classes=2): soft_dice + cross_entropy, no class weights.

    y_true [B,H,W,1] class indices 0/1, y_pred [B,H,W,1] sigmoid of class 1. Probabilities of both classes are
    [1 - p, p]; the soft Dice sums over the whole batch and is averaged over foreground classes (class 1 only).
    """
    y_pred = ops.cast(y_pred, "float32")
    truth = ops.one_hot(ops.cast(y_true[..., 0], "int32"), 2, dtype="float32")
    probs = ops.concatenate([1 - y_pred, y_pred], axis=-1)
    per_pixel = -ops.sum(truth * ops.log(ops.maximum(probs, EPSILON)), axis=-1)
    cross_entropy = ops.mean(per_pixel)  # == sum(per_pixel * 1) / sum(1)
    intersection = ops.sum(truth * probs, axis=(0, 1, 2))
    total = ops.sum(truth, axis=(0, 1, 2)) + ops.sum(probs, axis=(0, 1, 2))
    dice = (2 * intersection + SMOOTH) / (total + SMOOTH)
    soft_dice = 1 - ops.mean(dice[1:])
    return soft_dice + cross_entropy


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """unet.schedule.cosine_rate(base, step / total_steps), inside the jitted train step (optimizer.iterations)."""

    def __init__(self, base: float, total_steps: int):
        self.base, self.total_steps = float(base), int(total_steps)

    def __call__(self, step):
        w, start, floor = unet_schedule.WARMUP, unet_schedule.WARMUP_START, unet_schedule.FLOOR
        progress = ops.minimum(ops.cast(step, "float32") / self.total_steps, 1.0)
        warm = self.base * (start + (1 - start) * progress / w)
        decay = ops.minimum((progress - w) / (1 - w), 1.0)
        cosine = self.base * (floor + (1 - floor) * 0.5 * (1 + ops.cos(math.pi * decay)))
        return ops.where(progress < w, warm, cosine)

    def get_config(self):
        return {"base": self.base, "total_steps": self.total_steps}


# --------------------------------------------------------------------------------------------------------------
# Training, evaluation, inference timing
# --------------------------------------------------------------------------------------------------------------


class EpochClock(keras.callbacks.Callback):
    """Wall time and loss per epoch (the epoch end syncs the JAX state, so the time covers the device work);
    stops after the epoch during which the deadline passed."""

    def __init__(self, deadline: float, label: str, print_every: int):
        super().__init__()
        self.deadline, self.label, self.print_every = deadline, label, print_every
        self.seconds, self.losses, self.stopped_by_time = [], [], False

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.t0)
        self.losses.append(float(logs["loss"]))
        if epoch == 0 or (epoch + 1) % self.print_every == 0:
            print(f"[{self.label}] epoch {epoch + 1}: loss {self.losses[-1]:.4f}, {self.seconds[-1]:.2f} s "
                  f"(elapsed {time.monotonic() - STARTED:.0f} s)", flush=True)
        if time.monotonic() > self.deadline:
            self.stopped_by_time = True
            self.model.stop_training = True


def build(cfg):
    model = unet_model.build_unet(cfg)
    return model


def train(cfg, pairs, train_stems, epochs, batch, deadline, label, seed):
    keras.utils.set_random_seed(seed)
    model = build(cfg)
    steps = max(1, -(-len(train_stems) // batch))  # unet.pipeline.steps_for
    schedule = WarmupCosine(cfg.train.learning_rate, epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=dice_ce_loss, jit_compile=True)
    clock = EpochClock(deadline, label, print_every=max(1, epochs // 10))
    data = batches(pairs, train_stems, batch, cfg.data.input_size, cfg.augment, np.random.default_rng(seed))
    t0 = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[clock], shuffle=False)
    wall = time.perf_counter() - t0
    done = len(clock.seconds)
    steady = clock.seconds[1:]
    images_per_epoch = steps * batch
    facts = {
        "epochs_planned": epochs,
        "epochs_done": done,
        "batch_size": batch,
        "steps_per_epoch": steps,
        "stopped_by_time_limit": clock.stopped_by_time,
        "train_wall_s": round(wall, 2),
        "first_epoch_s_incl_compile": round(clock.seconds[0], 2) if done else None,
        "steady_s_per_epoch_mean": round(float(np.mean(steady)), 4) if steady else None,
        "steady_s_per_epoch_median": round(float(np.median(steady)), 4) if steady else None,
        "steady_train_images_per_s": round(images_per_epoch * len(steady) / sum(steady), 1) if steady else None,
        "steady_train_steps_per_s": round(steps * len(steady) / sum(steady), 1) if steady else None,
        "optimizer": type(model.optimizer).__name__,  # LossScaleOptimizer under mixed_float16
        "final_lr": float(schedule(done * steps)),
        "loss_first_last": [round(clock.losses[0], 4), round(clock.losses[-1], 4)] if done else None,
        "loss_every_10th_epoch": [round(v, 4) for v in clock.losses[9::10]],
    }
    return model, facts


def inference_fn(model):
    @jax.jit
    def infer(trainable, non_trainable, x):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return out

    return infer


def scores(truth, predicted, k):
    """Dice and IoU of class k over all pixels of all images (as the project's epoch metrics pool the counts)."""
    t, p = truth == k, predicted == k
    tp = float(np.sum(t & p))
    fp = float(np.sum(~t & p))
    fn = float(np.sum(t & ~p))
    dice = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 1.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return round(dice, 4), round(iou, 4)


def evaluate(model, pairs, val_stems, train_stems):
    infer = inference_fn(model)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    images = np.stack([pairs[s][0] for s in val_stems])[..., None].astype(np.float32) / 255.0
    truth = np.stack([pairs[s][1] for s in val_stems])
    probs = np.concatenate([np.asarray(infer(tv, ntv, images[i:i + 1]))[..., 0] for i in range(len(images))])
    predicted = (probs > THRESHOLD).astype(np.uint8)
    result = {"images": len(val_stems), "size": list(images.shape[1:3]), "stems": val_stems}
    for name, k in (("membrane", MEMBRANE), ("cell", CELL)):
        dice, iou = scores(truth, predicted, k)
        result[f"dice_{k}_{name}"], result[f"iou_{k}_{name}"] = dice, iou
    result["pixel_accuracy"] = round(float(np.mean(truth == predicted)), 4)
    # Trivial baseline: the training masks' majority class painted everywhere.
    train_cell_share = float(np.mean([pairs[s][1].mean() for s in train_stems]))
    majority = CELL if train_cell_share >= 0.5 else MEMBRANE
    constant = np.full_like(truth, majority)
    result["baseline_majority_class"] = majority
    result["baseline_dice_0_membrane"] = scores(truth, constant, MEMBRANE)[0]
    result["baseline_dice_1_cell"] = scores(truth, constant, CELL)[0]
    result["val_cell_pixel_share"] = round(float(truth.mean()), 4)
    return result, infer, tv, ntv, images


def time_inference(infer, tv, ntv, images, batch, min_seconds=2.0):
    """Whole 512x512 images per second at `batch`: device-resident input (pure model time), and from host NumPy
    to a host NumPy result (adds the transfers)."""
    x = np.concatenate([images] * (-(-batch // len(images))))[:batch]
    x_dev = jax.device_put(x)
    jax.block_until_ready(infer(tv, ntv, x_dev))  # compile
    out = {}
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds or n < 3:
        y = infer(tv, ntv, x_dev)
        n += 1
    jax.block_until_ready(y)
    out["device_resident_images_per_s"] = round(n * batch / (time.perf_counter() - t0), 1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds or n < 3:
        np.asarray(infer(tv, ntv, x))
        n += 1
    out["host_to_host_images_per_s"] = round(n * batch / (time.perf_counter() - t0), 1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / ".gpu" / "isbi", help="folder with images/ and masks/")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="report folder")
    parser.add_argument("--epochs", type=int, default=None, help="phase (a) epochs (preset: 150)")
    parser.add_argument("--batch", type=int, default=None, help="phase (a) batch size (preset: 4)")
    parser.add_argument("--extra-epochs", type=int, default=0, help="phase (b): a fresh model trained this many epochs")
    parser.add_argument("--extra-batch", type=int, default=None, help="phase (b) batch size (default: as phase (a))")
    parser.add_argument("--time-limit", type=float, default=360.0,
                        help="seconds from the start after which training stops at the end of an epoch")
    parser.add_argument("--policy", default="mixed_float16", choices=("mixed_float16", "mixed_bfloat16", "float32"))
    parser.add_argument("--seed", type=int, default=None, help="default: the preset's train.seed (42)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = STARTED + args.time_limit

    keras.mixed_precision.set_global_policy(args.policy)
    cfg = unet_presets.apply_preset(unet_config.Config(), "Balanced")
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, num_classes=2),  # binary: one sigmoid output
                      data=dataclasses.replace(cfg.data, channels=1))  # grayscale EM
    check_augmentation(cfg.augment)
    seed = cfg.train.seed if args.seed is None else args.seed
    epochs = args.epochs or cfg.train.epochs
    batch = args.batch or cfg.train.batch_size

    pairs = load_dataset(args.data)
    train_stems, val_stems = split_stems(list(pairs), cfg.train.validation_split, cfg.train.seed)
    probe = build(cfg)
    facts = unet_model.model_facts(cfg)  # forward FLOPs of one 256x256 crop, params (no calibration needed)
    report = {
        "device": str(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "versions": {"keras": keras.__version__, "jax": jax.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "keras_backend": keras.backend.backend(),
        "project_import": IMPORT_MODE,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "policy": args.policy,
        "output_layer_dtype": probe.get_layer("output").dtype_policy.name,
        "params": probe.count_params(),
        "forward_gflops_per_256_crop": round(facts.gflops, 3),
        "config": cfg.to_dict(),
        "split": {"train": len(train_stems), "val": len(val_stems), "val_stems": val_stems},
        "time_limit_s": args.time_limit,
    }
    del probe
    print(f"device {report['device']}, keras {keras.__version__}, jax {jax.__version__}, policy {args.policy}, "
          f"{report['params']} params, train {len(train_stems)} / val {val_stems}", flush=True)

    def phase(name, n_epochs, n_batch):
        model, tfacts = train(cfg, pairs, train_stems, n_epochs, n_batch, deadline, name, seed)
        if tfacts["steady_train_images_per_s"]:
            gflops = tfacts["steady_train_images_per_s"] * 3 * facts.gflops  # unet.model.TRAIN_FLOPS_FACTOR = 3
            tfacts["approx_train_tflops_per_s"] = round(gflops / 1000, 3)
        val, infer, tv, ntv, images = evaluate(model, pairs, val_stems, train_stems)
        tfacts["validation_whole_images"] = val
        tfacts["inference_512"] = {f"batch_{b}": time_inference(infer, tv, ntv, images, b) for b in (1, 8)}
        print(f"[{name}] {tfacts['epochs_done']} epochs in {tfacts['train_wall_s']} s, "
              f"{tfacts['steady_train_images_per_s']} train images/s; validation Dice cell {val['dice_1_cell']}, "
              f"membrane {val['dice_0_membrane']}", flush=True)
        return tfacts

    def save():
        report["total_wall_s"] = round(time.monotonic() - STARTED, 1)
        (args.out / "gpu_balanced.json").write_text(json.dumps(report, indent=2))

    report["preset_run"] = phase("preset", epochs, batch)
    save()
    if args.extra_epochs:
        if time.monotonic() > deadline:
            report["long_run"] = {"skipped": "time limit reached before it could start"}
        else:
            report["long_run"] = phase("long", args.extra_epochs, args.extra_batch or batch)
    save()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
