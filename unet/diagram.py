"""A picture of the U-Net drawn from the config alone (no model build), for the Model page.

Encoder blocks go down the left, the bottleneck sits at the bottom, decoder blocks come up the right; each
block says its filters and image size, skip connections are arrows across the U. The SVG is self-contained
(inline styles, no fonts to fetch) and scales to its container through its viewBox.
"""

from __future__ import annotations

from html import escape

from unet.config import ACTIVATION_NAMES, Activation, Config, DropoutPlacement, Pooling, Upsampling

WIDTH = 720
MARGIN = 16
BLOCK_W = 150
BLOCK_H = 38
ROW_GAP = 26  # vertical space between levels
TOP = 46  # room for the input and output labels
CAPTION_H = 44
ENCODER_COLOUR = "#4c78a8"
DECODER_COLOUR = "#59a14f"
BOTTLENECK_COLOUR = "#e15759"
ARROW_COLOUR = "#555555"
SKIP_COLOUR = "#9c755f"

_STYLE = (
    "text{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;fill:#222}"
    ".label{font-size:13px;fill:#fff;font-weight:600}.small{font-size:11px;fill:#fff}"
    ".note{font-size:12px;fill:#444}.io{font-size:13px;font-weight:600}"
)


def architecture_svg(cfg: Config) -> str:
    """The U shape of `cfg.model` at `cfg.data.input_size` as an SVG document (a string), ~720 px wide."""
    m, size = cfg.model, cfg.data.input_size
    depth = m.depth
    row_step = BLOCK_H + ROW_GAP
    height = TOP + (depth + 1) * row_step + CAPTION_H
    # Each level steps in towards the centre, so the picture reads as a U.
    indent = (WIDTH / 2 - MARGIN - BLOCK_W - BLOCK_W / 2) / depth

    def row_y(level: int) -> float:  # level 1 is the top row; depth + 1 is the bottleneck
        return TOP + (level - 1) * row_step

    def enc_x(level: int) -> float:
        return MARGIN + (level - 1) * indent

    def dec_x(level: int) -> float:
        return WIDTH - MARGIN - BLOCK_W - (level - 1) * indent

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
        f'role="img" aria-label="U-Net architecture">',
        f"<title>U-Net: depth {depth}, {m.base_filters} base filters, {size}x{size} input</title>",
        f"<style>{_STYLE}</style>",
        _arrow_marker("arrow", ARROW_COLOUR),
        _arrow_marker("skip", SKIP_COLOUR),
    ]
    classes = 1 if m.num_classes == 2 else m.num_classes
    out_kind = "sigmoid" if m.num_classes == 2 else "softmax"
    parts.append(_text(MARGIN, TOP - 24, f"input {size}x{size}x{cfg.data.channels}", "io", anchor="start"))
    parts.append(_arrow(enc_x(1) + BLOCK_W / 2, TOP - 18, enc_x(1) + BLOCK_W / 2, TOP, "arrow"))
    output = f"output {size}x{size}x{classes} ({out_kind})"
    parts.append(_text(WIDTH - MARGIN, TOP - 24, output, "io", anchor="end"))
    parts.append(_arrow(dec_x(1) + BLOCK_W / 2, TOP, dec_x(1) + BLOCK_W / 2, TOP - 18, "arrow"))

    for level in range(1, depth + 1):
        filters, side, y = m.base_filters * 2 ** (level - 1), size // 2 ** (level - 1), row_y(level)
        parts.append(_block("enc", level, enc_x(level), y, ENCODER_COLOUR, f"encoder {level}", filters, side))
        parts.append(_block("dec", level, dec_x(level), y, DECODER_COLOUR, f"decoder {level}", filters, side))
        mid = y + BLOCK_H / 2
        parts.append(_arrow(enc_x(level) + BLOCK_W, mid, dec_x(level), mid, "skip", dashed=True))
        next_y = row_y(level + 1)
        down_from = enc_x(level) + BLOCK_W / 2
        down_to = enc_x(level + 1) + BLOCK_W / 2 if level < depth else WIDTH / 2 - BLOCK_W / 4
        parts.append(_arrow(down_from, y + BLOCK_H, down_to, next_y, "arrow"))
        up_to = dec_x(level) + BLOCK_W / 2
        up_from = dec_x(level + 1) + BLOCK_W / 2 if level < depth else WIDTH / 2 + BLOCK_W / 4
        parts.append(_arrow(up_from, next_y, up_to, y + BLOCK_H, "arrow"))

    bottom_filters, bottom_side = m.base_filters * 2**depth, size // 2**depth
    parts.append(_block("bottleneck", depth + 1, WIDTH / 2 - BLOCK_W / 2, row_y(depth + 1), BOTTLENECK_COLOUR,
                        "bottleneck", bottom_filters, bottom_side))
    parts.append(_caption(cfg, row_y(depth + 1) + BLOCK_H + 22))
    parts.append("</svg>")
    return "\n".join(parts)


def _block(kind: str, level: int, x: float, y: float, colour: str, title: str, filters: int, side: int) -> str:
    return (
        f'<g class="block {kind}" data-level="{level}">'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{BLOCK_W}" height="{BLOCK_H}" rx="6" fill="{colour}"/>'
        f"{_text(x + BLOCK_W / 2, y + 16, title, 'label')}"
        f"{_text(x + BLOCK_W / 2, y + 31, f'{filters} filters, {side}x{side}', 'small')}"
        "</g>"
    )


def _caption(cfg: Config, y: float) -> str:
    m = cfg.model
    norm = " + batch norm" if m.batch_norm else ""
    activation = ACTIVATION_NAMES[m.activation] + (f"({m.leaky_alpha:g})" if m.activation == Activation.LEAKY_RELU
                                                   else "")
    down = "max-pool" if m.pooling == Pooling.MAX else "average-pool"
    up = "transposed conv" if m.upsampling == Upsampling.TRANSPOSE else "bilinear resize + conv"
    dropout = ""
    if m.dropout > 0:
        where = "bottleneck" if m.dropout_placement == DropoutPlacement.BOTTLENECK else "every block"
        dropout = f"; dropout {m.dropout:g} in {where}"
    line1 = f"each block: 2 x ({m.kernel_size}x{m.kernel_size} conv{norm} + {activation}){dropout}"
    line2 = f"down: {down} 2x2; up: {up}; dashed arrows: skip connections (concatenated)"
    return _text(WIDTH / 2, y, line1, "note") + _text(WIDTH / 2, y + 17, line2, "note")


def _text(x: float, y: float, content: str, css: str, anchor: str = "middle") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}">{escape(content)}</text>'


def _arrow(x1: float, y1: float, x2: float, y2: float, marker: str, dashed: bool = False) -> str:
    colour = SKIP_COLOUR if marker == "skip" else ARROW_COLOUR
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" stroke-width="1.6"'
        f'{dash} marker-end="url(#{marker})"/>'
    )


def _arrow_marker(marker_id: str, colour: str) -> str:
    return (
        f'<defs><marker id="{marker_id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker></defs>'
    )
