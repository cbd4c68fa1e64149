"""The live panel beside the Model page's sliders: size, compute, memory, time per epoch, and the diagram."""

from __future__ import annotations

import streamlit as st

from unet.config import Config
from unet.dataset import Dataset
from unet.diagram import architecture_svg
from unet.model import model_facts
from unet.splits import training_count
from unet.units import bytes_text, estimate_text

DEMO_IMAGES = 48  # what the estimate assumes before a dataset is chosen
SLOW_EPOCH_SECONDS = 120


@st.cache_resource(show_spinner="Measuring this machine's speed (once, a few seconds)…")
def machine_gflops() -> float:
    """Training throughput of this machine; shared by every session because it is a fact about the machine."""
    from unet.calibration import achieved_gflops

    return achieved_gflops()


def show_model_facts(config: Config, dataset: Dataset | None) -> None:
    images = len(dataset.training_stems) if dataset else DEMO_IMAGES
    train_images = training_count(images, config.train.validation_split)
    facts = model_facts(config, num_images=train_images, gflops_per_second=machine_gflops())
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
        help=f"One pass over {train_images} training images on this machine, estimated from a short measurement "
        f"({facts.gflops_per_second:.0f} GFLOP/s achieved).",
    )
    epochs = config.train.epochs
    row[2].metric(
        f"{epochs} epochs",
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
