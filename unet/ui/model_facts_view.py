"""The live panel beside the Model page's sliders: size, compute, memory, time per epoch, and the diagram.

`time_estimate` is the one estimate of a training's time: the Model page's figures, the Train page's line and the
suggestion (which computes the same `model_facts` with the same images and speed) all show it, in
`unet.units.estimate_text`'s words.
"""

from __future__ import annotations

import streamlit as st

from unet.config import Config
from unet.dataset import Dataset
from unet.diagram import architecture_svg
from unet.model import ModelFacts, model_facts
from unet.splits import training_count
from unet.units import about_text, bytes_text, count_text, estimate_text

DEMO_IMAGES = 48  # what the estimate assumes before a dataset is chosen
SLOW_EPOCH_SECONDS = 120


@st.cache_resource(show_spinner="Measuring this machine's speed (once, a few seconds)…")
def machine_gflops() -> float:
    """Training throughput of this machine; shared by every session because it is a fact about the machine."""
    from unet.calibration import achieved_gflops

    return achieved_gflops()


def time_estimate(config: Config, dataset: Dataset | None) -> tuple[ModelFacts, int]:
    """(the model's facts with its time per epoch on this machine, the training images that time assumes)."""
    images = len(dataset.training_stems) if dataset else DEMO_IMAGES
    train_images = training_count(images, config.train.validation_split)
    return model_facts(config, num_images=train_images, gflops_per_second=machine_gflops()), train_images


def estimate_line(facts: ModelFacts, epochs: int) -> str:
    """'about 2 s per epoch, about 1.5 min for 50 epochs' ('under a second per epoch, ...' for a fast one): the
    words of the Train page, in the Model page's figures."""
    per_epoch = facts.seconds_per_epoch or 0.0
    return f"{about_text(per_epoch)} per epoch, {about_text(per_epoch * epochs)} for {count_text(epochs, 'epoch')}"



def show_model_facts(config: Config, dataset: Dataset | None) -> None:
    facts, train_images = time_estimate(config, dataset)
    row = st.columns(3)
    row[0].metric("Parameters", f"{facts.params:,}", help="Numbers the network learns. More can fit subtler patterns.")
    row[1].metric(
        "GFLOP per image",
        f"{facts.gflops:.3g}",
        help="Billions of arithmetic operations for one forward pass of one input image; training costs about 3×.",
    )
    row[2].metric(
        "Receptive field",
        f"{facts.receptive_field} px",
        help="How far (in input pixels) a single output pixel can see: the largest structure the network can take "
        "into account at once.",
    )
    row = st.columns(3)
    row[0].metric(
        "Training memory",
        bytes_text(facts.memory_bytes),
        help=f"Estimate for a batch of {config.train.batch_size}: layer outputs kept for learning, weights, "
        "gradients and optimizer state.",
    )
    row[1].metric(
        "Time per epoch",
        estimate_text(facts.seconds_per_epoch or 0),
        help=f"One pass over {count_text(train_images, 'training image')} on this machine, estimated from a short "
        f"measurement ({facts.gflops_per_second:.0f} GFLOP/s achieved).",
    )
    epochs = config.train.epochs
    row[2].metric(
        count_text(epochs, "epoch"),
        estimate_text((facts.seconds_per_epoch or 0) * epochs),
        help="The whole training at the number of epochs set on the Train page (the preset's, until you change "
        "it); early stopping may end it sooner.",
    )
    if (facts.seconds_per_epoch or 0) > SLOW_EPOCH_SECONDS:
        st.warning(
            f"This model is slow on this machine ({estimate_text(facts.seconds_per_epoch or 0)} per epoch). "
            "Fewer filters, a smaller input or a shallower network train much faster.",
            icon=":material/hourglass_top:",
        )
    from unet.calibration import memory_warning

    warning = memory_warning(facts)
    if warning:
        st.error(warning, icon=":material/memory:")


def show_diagram(config: Config) -> None:
    """The network's U shape across the page's width, so its labels read at a normal text size."""
    st.image(
        architecture_svg(config), caption="The network: encoder (left), bottleneck, decoder (right).", width="stretch"
    )
