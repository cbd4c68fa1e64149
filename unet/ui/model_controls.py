"""The Model page's controls: every option of the U-Net, grouped, with help for someone new to U-Nets.

Widgets are keyed (`m_*`) and filled from the config on first use; a preset or an uploaded config writes its
values into those keys (`load_into_widgets`) before the widgets are drawn.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from unet.config import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    DROPOUT_PLACEMENT_NAMES,
    DROPOUT_PLACEMENTS,
    NORMALISATION_NAMES,
    NORMALISATIONS,
    POOLING_NAMES,
    POOLINGS,
    RESIZE_MODES,
    RESIZE_NAMES,
    UPSAMPLING_NAMES,
    UPSAMPLINGS,
    Activation,
    Config,
)

FILTER_CHOICES = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
SIZE_CHOICES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024)

# widget key -> (config section, field)
FIELDS = {
    "m_depth": ("model", "depth"),
    "m_base_filters": ("model", "base_filters"),
    "m_kernel_size": ("model", "kernel_size"),
    "m_pooling": ("model", "pooling"),
    "m_upsampling": ("model", "upsampling"),
    "m_batch_norm": ("model", "batch_norm"),
    "m_activation": ("model", "activation"),
    "m_leaky_alpha": ("model", "leaky_alpha"),
    "m_dropout": ("model", "dropout"),
    "m_dropout_placement": ("model", "dropout_placement"),
    "m_input_size": ("data", "input_size"),
    "m_normalisation": ("data", "normalisation"),
    "m_resize": ("data", "resize"),
    "m_batch_size": ("train", "batch_size"),
}


def load_into_widgets(config: Config, overwrite: bool = True) -> None:
    """Put `config`'s values into the widgets' state (all of them, or only the ones not drawn yet)."""
    for key, (section, field) in FIELDS.items():
        if overwrite or key not in st.session_state:
            st.session_state[key] = getattr(getattr(config, section), field)


_SHOWN = "m_shown_values"  # the config the controls were last drawn for


def _values(config: Config) -> dict:
    return {key: getattr(getattr(config, section), field) for key, (section, field) in FIELDS.items()}


def model_controls(config: Config) -> Config:
    """Draw the controls; return the config they describe (may raise UserError for impossible combinations).

    When the config changed elsewhere since the widgets last described it (another dataset chosen, a suggestion
    applied, the Train page), the widgets are filled from it again: a slider never shows a value the config has
    not.
    """
    load_into_widgets(config, overwrite=st.session_state.get(_SHOWN) not in (None, _values(config)))
    st.session_state[_SHOWN] = _values(config)
    model = {**_architecture_panel(), **_regularisation_panel()}
    data, batch_size = _input_panel(model["depth"], config.data.input_size)
    return Config(
        data=dataclasses.replace(config.data, **data),
        augment=config.augment,
        model=dataclasses.replace(config.model, **model),
        train=dataclasses.replace(config.train, batch_size=batch_size),
    )


def _architecture_panel() -> dict:
    """Depth, filters, kernel, down- and up-sampling: the `model` fields they set."""
    with st.container(border=True):
        st.markdown("**Architecture**")
        depth = st.slider(
            "Depth (levels)",
            2,
            6,
            key="m_depth",
            help="How many times the network halves the image to look at it from further away. Deeper sees more "
            "context (whole cells, big objects) but needs larger inputs and more time; shallower keeps to fine detail.",
        )
        base_filters = st.select_slider(
            "Filters at the first level",
            FILTER_CHOICES,
            key="m_base_filters",
            help="How many patterns each layer can learn; doubled at every level. More filters can learn subtler "
            "things but cost time and memory (doubling the filters roughly quadruples the cost).",
        )
        kernel_size = st.radio(
            "Kernel size",
            (3, 5),
            key="m_kernel_size",
            horizontal=True,
            format_func=lambda k: f"{k}×{k}",
            help="The size of the window each convolution looks through. 3×3 is the standard; 5×5 sees more per "
            "layer at about 2.8× the cost.",
        )
        pooling = st.radio(
            "Down-sampling",
            POOLINGS,
            key="m_pooling",
            horizontal=True,
            format_func=POOLING_NAMES.get,
            help="How the image is halved between levels: max keeps the strongest response (usual choice), "
            "average smooths.",
        )
        upsampling = st.radio(
            "Up-sampling",
            UPSAMPLINGS,
            key="m_upsampling",
            horizontal=True,
            format_func=UPSAMPLING_NAMES.get,
            help="How the decoder doubles the image back: bilinear resizing then a convolution (smooth, no "
            "checkerboard artefacts) or a learned transposed convolution (the 2015 paper's choice).",
        )
    return {"depth": depth, "base_filters": base_filters, "kernel_size": kernel_size, "pooling": pooling,
            "upsampling": upsampling}


def _regularisation_panel() -> dict:
    """Batch normalisation, activation and dropout: the `model` fields they set."""
    with st.container(border=True):
        st.markdown("**Regularisation**")
        batch_norm = st.toggle(
            "Batch normalisation",
            key="m_batch_norm",
            help="Rescales the signals inside the network at every layer. Training is faster and more stable, "
            "especially with higher learning rates. Leave it on unless batches are tiny (1-2 images).",
        )
        activation = st.selectbox(
            "Activation",
            ACTIVATIONS,
            key="m_activation",
            format_func=ACTIVATION_NAMES.get,
            help="The non-linearity after each convolution. ReLU is the default; LeakyReLU lets a little signal "
            "through for negative inputs so no unit goes silent; ELU is smoother.",
        )
        leaky_alpha = st.slider(
            "LeakyReLU alpha",
            0.0,
            0.5,
            step=0.01,
            key="m_leaky_alpha",
            disabled=activation != Activation.LEAKY_RELU,
            help="How much of a negative signal LeakyReLU lets through (0.1 = 10%). 0 is plain ReLU.",
        )
        dropout = st.slider(
            "Dropout",
            0.0,
            0.7,
            step=0.05,
            key="m_dropout",
            help="Randomly switches off this fraction of units while training so the network cannot rely on any "
            "single one. Helps against memorising small datasets; 0 turns it off.",
        )
        dropout_placement = st.radio(
            "Dropout where",
            DROPOUT_PLACEMENTS,
            key="m_dropout_placement",
            horizontal=True,
            disabled=dropout == 0,
            format_func=DROPOUT_PLACEMENT_NAMES.get,
            help="Only at the deepest level (the 2015 paper's choice) or after every block (stronger).",
        )
    return {"batch_norm": batch_norm, "activation": activation, "leaky_alpha": float(leaky_alpha),
            "dropout": float(dropout), "dropout_placement": dropout_placement}


def size_choices(current: int) -> tuple[int, ...]:
    """The input sizes offered: the usual ones and the config's own (a suggestion's 144 or a loaded config's 208).

    A select slider whose value is not among its options falls back to the first one (32), which a deep network
    refuses: the slider would show 32 and an error while the config, and the sidebar, say 144.
    """
    return tuple(sorted({*SIZE_CHOICES, int(current)}))


def _input_panel(depth: int, current_size: int) -> tuple[dict, int]:
    """Input size, resize or crop, brightness scaling and batch size: the `data` fields they set, and the batch."""
    with st.container(border=True):
        st.markdown("**Input**")
        input_size = st.select_slider(
            "Input size (pixels)",
            size_choices(current_size),
            key="m_input_size",
            help=f"Images are brought to this size for training. Larger keeps more detail but costs time "
            f"(doubling the size quadruples it). Must be a multiple of 2^depth = {2**depth}.",
        )
        resize = st.radio(
            "Bring images to that size by",
            RESIZE_MODES,
            key="m_resize",
            horizontal=True,
            format_func=RESIZE_NAMES.get,
            help="Resizing shows whole images (fine detail shrinks); random crops keep full detail of large "
            "images and show a different part each time.",
        )
        normalisation = st.radio(
            "Brightness scaling",
            NORMALISATIONS,
            key="m_normalisation",
            horizontal=True,
            format_func=NORMALISATION_NAMES.get,
            help="How pixel values are scaled before the network sees them.",
        )
        batch_size = st.select_slider(
            "Batch size",
            (1, 2, 4, 8, 12, 16, 24, 32),
            key="m_batch_size",
            help="Images per training step. Larger batches use more memory; 4-16 suits most CPUs.",
        )
    return {"input_size": input_size, "resize": resize, "normalisation": normalisation}, batch_size
