"""Presets and the architecture picture: the two things the Model page shows before anything is trained."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from unet.config import Config, DataConfig, ModelConfig
from unet.diagram import architecture_svg
from unet.errors import UserError
from unet.model import model_facts
from unet.presets import PRESETS, apply_preset

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_gives_a_valid_config_that_survives_json(name: str) -> None:
    cfg = apply_preset(Config(), name)
    assert Config.from_json(cfg.to_json()) == cfg
    assert PRESETS[name].description and "\n" not in PRESETS[name].description


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_and_fits_in_memory_here(name: str) -> None:
    facts = model_facts(apply_preset(Config(), name))
    assert facts.params > 0 and facts.flops > 0
    assert facts.memory_bytes < 8e9  # trains on an ordinary 8 GB machine at the preset's batch size


def test_preset_keeps_what_comes_from_the_dataset() -> None:
    dataset_cfg = Config(data=DataConfig(channels=3, normalisation="standard"), model=ModelConfig(num_classes=4))
    cfg = apply_preset(dataset_cfg, "Balanced")
    assert (cfg.data.channels, cfg.data.normalisation, cfg.model.num_classes) == (3, "standard", 4)
    assert cfg.augment == dataset_cfg.augment


def test_presets_grow_from_quick_to_classic() -> None:
    facts = [model_facts(apply_preset(Config(), name)) for name in ("Quick demo", "Balanced", "Classic U-Net (2015)")]
    assert facts[0].flops < facts[1].flops < facts[2].flops
    assert 30e6 < facts[2].params < 32e6  # the paper's 31 million
    assert PRESETS["Classic U-Net (2015)"].slow_on_cpu and not PRESETS["Quick demo"].slow_on_cpu


def test_unknown_preset_is_refused_with_the_known_names() -> None:
    with pytest.raises(UserError, match="no preset called 'Huge'.*Quick demo"):
        apply_preset(Config(), "Huge")


def blocks(svg: str, kind: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == f"block {kind}"]


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
def test_diagram_draws_one_block_per_level(depth: int) -> None:
    svg = architecture_svg(Config(model=ModelConfig(depth=depth), data=DataConfig(input_size=512)))
    assert len(blocks(svg, "enc")) == len(blocks(svg, "dec")) == depth
    assert len(blocks(svg, "bottleneck")) == 1
    assert svg.count('stroke-dasharray="6 4"') == depth  # one skip connection per level


def test_diagram_writes_filters_sizes_and_options_on_the_picture() -> None:
    cfg = Config(
        model=ModelConfig(depth=3, base_filters=8, activation="leaky_relu", leaky_alpha=0.2, num_classes=3,
                          dropout=0.5, upsampling="transpose"),
        data=DataConfig(input_size=128, channels=3),
    )
    svg = architecture_svg(cfg)
    bottom = "".join(blocks(svg, "bottleneck")[0].itertext())
    assert "64 filters, 16x16" in bottom
    for text in ("8 filters, 128x128", "input 128x128x3", "output 128x128x3 (softmax)", "LeakyReLU(0.2)",
                 "dropout 0.5", "transposed conv"):
        assert text in svg
    assert 'viewBox="0 0 720' in svg
