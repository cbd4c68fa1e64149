"""config.json is a contract: partial files take defaults, bad keys and values are refused by name."""

from __future__ import annotations

import json

import pytest

from unet.config import Config, ModelConfig
from unet.errors import UserError


def test_round_trip_through_json_keeps_every_value():
    config = Config().replace(model=ModelConfig(depth=4, base_filters=8, activation="leaky_relu", leaky_alpha=0.3))
    assert Config.from_json(config.to_json()) == config


def test_a_partial_file_takes_defaults_for_the_rest():
    config = Config.from_json('{"model": {"depth": 2}, "train": {"epochs": 3}}')
    assert config.model.depth == 2
    assert config.train.epochs == 3
    assert config.model.base_filters == Config().model.base_filters
    assert config.augment == Config().augment


def test_contract_keys_are_present():
    raw = Config().to_dict()
    assert set(raw) == {"data", "augment", "model", "train"}
    assert {"input_size", "channels", "normalisation"} <= set(raw["data"])
    assert {"depth", "base_filters", "kernel_size", "batch_norm", "activation", "leaky_alpha", "dropout",
            "pooling", "upsampling", "num_classes"} <= set(raw["model"])
    assert {"epochs", "batch_size", "learning_rate", "optimizer", "loss", "validation_split",
            "early_stopping_patience", "reduce_lr_patience", "seed", "max_minutes"} <= set(raw["train"])


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"model": {"depht": 3}}', "model.depht"),
        ('{"modle": {}}', "modle"),
        ('{"train": {"epochs": -1}}', "train.epochs"),
        ('{"train": {"epochs": "ten"}}', "train.epochs"),
        ('{"train": {"epochs": 2.5}}', "train.epochs"),
        ('{"model": {"batch_norm": "yes"}}', "model.batch_norm"),
        ('{"model": {"activation": "tanh"}}', "model.activation"),
        ('{"train": {"learning_rate": 0}}', "train.learning_rate"),
        ('{"data": {"channels": 17}}', "data.channels"),
        ('{"model": {"depth": 9}}', "model.depth"),
        ('{"augment": {"rotate": 400}}', "augment.rotate"),
        ('{"model": "deep"}', "model"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_the_key(text: str, named: str):
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        Config.from_json(text)


def test_input_size_not_a_multiple_of_two_to_the_depth_says_what_to_use():
    with pytest.raises(UserError) as info:
        Config.from_json('{"data": {"input_size": 250}, "model": {"depth": 4}}')
    message = str(info.value)
    assert "250 is not a multiple of 16" in message and "256" in message


def test_depth_too_deep_for_the_input_is_refused():
    with pytest.raises(UserError, match="too deep"):
        Config.from_json('{"data": {"input_size": 64}, "model": {"depth": 5}}')


def test_broken_json_is_a_user_error_not_a_crash():
    with pytest.raises(UserError, match="not valid JSON"):
        Config.from_json("{not json")
    with pytest.raises(UserError):
        Config.from_json(json.dumps([1, 2, 3]))
