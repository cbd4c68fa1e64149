"""The bad-input corpus: every file a user could wrongly hand the app, through the real pages (Streamlit AppTest).

Each case is made here, uploaded through the page a user would use, and checked for what a user must get: the app
keeps running (no exception), the message names the file and the problem in plain words (no traceback, no server
path), and the good files of the same upload are still stored. `CORPUS` counts the cases for the README.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.png_files import decompression_bomb_png, huge_png_header
from tests.upload_helpers import (  # noqa: F401  (workspace is a fixture)
    APP,
    CORPUS,
    GOOD,
    PAGE_LABELS_ZIPS,
    SIZE,
    assert_plain,
    case,
    cmyk_jpeg,
    dataset_zip,
    encode,
    files_outside,
    gif,
    good_files,
    lying_zip,
    make_zip,
    names_the_upload,
    page,
    picture,
    problems,
    shown,
    square_mask,
    stored,
    stored_names,
    truncated_png,
    upload_files,
    upload_zip,
)
from tests.upload_helpers import workspace as workspace  # noqa: F401, PLC0414  (the fixture)
from unet import zipsafe
from unet.dataset import Dataset


def test_an_empty_zip_is_refused_by_name_and_nothing_is_stored(workspace):
    at = upload_zip(make_zip([]), "empty.zip")
    case("empty zip")
    assert_plain(at, "it is empty")
    assert at.error and stored_names(workspace) == []
    names_the_upload(at, "'empty.zip'")


def test_a_zip_of_only_masks_says_the_images_folder_is_missing(workspace):
    _, masks = good_files()
    at = upload_zip(make_zip((f"masks/{n}", d) for n, d in masks), "onlymasks.zip")
    case("zip of only masks")
    assert_plain(at, "found a 'masks' folder but no 'images' folder")
    assert stored_names(workspace) == []
    names_the_upload(at, "onlymasks.zip")


def test_a_file_that_is_not_a_zip_is_refused_by_name(workspace):
    at = upload_zip(b"this is a text file", "notazip.zip")
    case("text file named .zip")
    assert_plain(at, "is not a zip file")
    assert stored_names(workspace) == []
    names_the_upload(at, "'notazip.zip' is not a zip file")


def test_zip_entries_that_climb_out_or_are_absolute_are_skipped_and_nothing_is_written_outside(workspace, tmp_path):
    images, masks = good_files()
    evil = [("../../x.png", encode(picture(9))), ("../../../../../../tmp/unet_evil.png", encode(picture(9))),
            ("/tmp/unet_abs_evil.png", encode(picture(9))), ("images/../../../y.png", encode(picture(9)))]
    outside_before = files_outside(tmp_path, workspace)
    at = upload_zip(dataset_zip(images, masks, evil), "evil.zip", "evil")
    case("zip entry ../../x.png")
    case("zip entry with an absolute path")
    table = problems(at)
    assert "points outside the zip's folder" in table["../../x.png"]
    assert "has an absolute path" in table["/tmp/unet_abs_evil.png"]
    assert "points outside" in table["images/../../../y.png"]
    assert_plain(at, "4 pairs ready")
    assert stored(workspace, "evil") == [f"good{i}" for i in range(GOOD)]
    assert files_outside(tmp_path, workspace) == outside_before, "written outside the workspace"
    assert not Path("/tmp/unet_abs_evil.png").exists() and not Path("/tmp/unet_evil.png").exists()


def test_a_zip_bomb_is_stopped_by_the_size_limit_before_unpacking(workspace, monkeypatch):
    monkeypatch.setattr(zipsafe, "MAX_TOTAL_BYTES", 10 * 1024**2)
    images, masks = good_files()
    bomb = dataset_zip(images, masks, [("images/bomb.png", b"\0" * (40 * 1024**2))])
    assert len(bomb) < 200_000
    at = upload_zip(bomb, "bomb.zip")
    case("zip bomb")
    assert_plain(at, "would unpack to", "zip bomb")
    assert stored_names(workspace) == []
    assert not list((workspace / "uploads").rglob("*.png")), "nothing of the bomb may stay on disk"
    names_the_upload(at, "'bomb.zip' would unpack to")


def test_a_zip_member_whose_declared_size_lies_is_cut_off_and_the_good_pairs_stored(workspace):
    images, masks = good_files()
    at = upload_zip(lying_zip(images, masks), "liar.zip", "liar")
    case("zip member whose declared size lies")
    text = assert_plain(at, "images/liar.png")
    assert "damaged inside the zip" in problems(at)["images/liar.png"] or "sizes lie" in text
    assert stored(workspace, "liar") == [f"good{i}" for i in range(GOOD)]


# --- single bad files beside good pairs, through the zip and through the two file uploaders -------------------------

BAD_FILES = {
    # case: (image file name, image bytes, mask bytes or None for a good mask, expected words)
    "30000 x 30000 PNG": ("huge.png", huge_png_header(30000, 30000), None, "'huge.png' is too large"),
    "decompression bomb": ("bomb.png", decompression_bomb_png(10_100), None, "'bomb.png' is 10100x10100 pixels"),
    "truncated PNG": ("cut.png", truncated_png(), None, "'cut.png' is damaged"),
    "text file named .png": ("notes.png", b"Dear diary, this is not a picture.\n", None, "'notes.png' is not an image"),
    "0-byte file": ("empty.png", b"", None, "'empty.png' is an empty file (0 bytes)"),
    "mask of another size": ("wide.png", encode(picture(1, size=48)), encode(square_mask(1)),
                             "mask 'wide.png' is 32x32 but its image is 48x48"),
    "mask with 300 distinct values": (
        "noisy.png", encode(picture(2)),
        encode(np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) % 300),
        "mask 'noisy.png' has 300 different values",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_in_a_zip_is_named_and_the_good_pairs_are_stored(workspace, name):
    file, image, mask, words = BAD_FILES[name]
    case(f"{name} (zip)")
    images, masks = good_files()
    at = upload_zip(dataset_zip([*images, (file, image)], [*masks, (file, mask or encode(square_mask(3)))]),
                    "mixed.zip", "mixed")
    text = assert_plain(at, words, f"{GOOD} pairs ready")
    assert file in " ".join(problems(at)), text
    assert stored(workspace, "mixed") == [f"good{i}" for i in range(GOOD)]


@pytest.mark.parametrize("name", ["truncated PNG", "text file named .png", "0-byte file", "30000 x 30000 PNG",
                                  "mask of another size"])
def test_a_bad_file_among_uploaded_files_is_named_and_the_good_pairs_are_stored(workspace, name):
    file, image, mask, words = BAD_FILES[name]
    case(f"{name} (files)")
    images, masks = good_files()
    at = upload_files([*images, (file, image)], [*masks, (file, mask or encode(square_mask(3)))], "files")
    assert_plain(at, words, f"{GOOD} pairs ready")
    assert stored(workspace, "files") == [f"good{i}" for i in range(GOOD)]


def test_only_bad_files_give_one_error_that_names_them(workspace):
    at = upload_files([("cut.png", truncated_png()), ("empty.png", b"")],
                      [("cut.png", encode(square_mask(1))), ("empty.png", encode(square_mask(2)))], "allbad")
    case("only bad files")
    assert_plain(at, "no usable image/mask pairs", "'cut.png' is damaged", "'empty.png' is an empty file")
    assert at.error and stored_names(workspace) == []


def test_unicode_and_space_filled_names_pair_and_are_stored_under_safe_names(workspace):
    names = ["Zellkern Ä 01.png", "細胞 02.png", "   spaces   .png", "noël été.png"]
    images = [(n, encode(picture(i))) for i, n in enumerate(names)]
    masks = [(n.replace(".png", "_mask.png"), encode(square_mask(i))) for i, n in enumerate(names)]
    at = upload_files(images, masks, "Zellkerne Ä")
    case("unicode file names")
    case("space-filled file names")
    assert_plain(at, "4 pairs ready")
    assert not problems(at)
    folder = workspace / "datasets" / "Zellkerne_A"
    stems = stored(workspace, "Zellkerne_A")
    assert len(stems) == 4 and all(s.isascii() and " " not in s for s in stems)
    assert all((folder / "masks" / f"{s}.png").exists() for s in stems)


def test_unicode_names_inside_a_zip_pair_too(workspace):
    names = ["Zellkern Ä 01", "細胞 02", "a b c", "d"]
    images = [(f"{n}.png", encode(picture(i))) for i, n in enumerate(names)]
    masks = [(f"{n}.png", encode(square_mask(i))) for i, n in enumerate(names)]
    at = upload_zip(dataset_zip(images, masks), "名前 mit Ä.zip", "unicode")
    case("unicode names in a zip")
    assert_plain(at, "4 pairs ready")
    assert len(stored(workspace, "unicode")) == 4


def test_two_images_with_the_same_stem_are_both_named_and_left_out(workspace):
    images, masks = good_files()
    twins = [("twin.png", encode(picture(8))), ("twin.tif", encode(picture(9), ".tif"))]
    at = upload_zip(dataset_zip([*images, *twins], [*masks, ("twin.png", encode(square_mask(1)))]), "twins.zip", "t")
    case("two images with the same stem")
    table = problems(at)
    assert_plain(at, "2 images are named 'twin'", f"{GOOD} pairs ready")
    assert {"images/twin.png", "images/twin.tif"} <= set(table)
    assert stored(workspace, "t") == [f"good{i}" for i in range(GOOD)]


def test_an_all_background_mask_set_is_stored_with_a_plain_warning(workspace):
    images = [(f"bg{i}.png", encode(picture(i))) for i in range(GOOD)]
    masks = [(f"bg{i}.png", encode(np.zeros((SIZE, SIZE), np.uint8))) for i in range(GOOD)]
    at = upload_zip(dataset_zip(images, masks), "background.zip", "bg")
    case("all-background mask set")
    assert_plain(at, "every mask is all background, so there is nothing to learn")
    assert len(stored(workspace, "bg")) == GOOD


@pytest.mark.parametrize("kind", ["16-bit TIFF", "RGBA PNG", "CMYK JPEG", "GIF"])
def test_unusual_but_valid_image_formats_are_stored_without_loss(workspace, kind):
    case(kind)
    rgb = picture(11, 3)
    file, data = {
        "16-bit TIFF": ("deep.tif", encode(rgb.astype(np.uint16) * 257, ".tif")),
        "RGBA PNG": ("alpha.png", encode(np.dstack([rgb, np.full((SIZE, SIZE), 100, np.uint8)]))),
        "CMYK JPEG": ("cmyk.jpg", cmyk_jpeg()),
        "GIF": ("anim.gif", gif()),
    }[kind]
    images, masks = good_files(channels=3)
    at = upload_zip(dataset_zip([*images, (file, data)], [*masks, (f"{Path(file).stem}.png", encode(square_mask(2)))]),
                    "formats.zip", "formats")
    assert_plain(at, f"{GOOD + 1} pairs ready")
    noted = problems(at)
    if kind == "16-bit TIFF":  # said in plain words: one scaling rule for the dataset (issue #12)
        assert list(noted) == ["(whole dataset)"] and "16-bit values" in noted["(whole dataset)"]
    else:
        assert not noted
    stem = Path(file).stem
    dataset = Dataset.load(workspace / "datasets" / "formats")
    stored_image = dataset.read_pair(stem)[0]
    assert stored_image.shape == (SIZE, SIZE, 3)
    if kind == "16-bit TIFF":  # kept at 16 bits, exactly (issue #14)
        assert dataset.image_dtype == "uint16" and np.array_equal(stored_image, rgb.astype(np.uint16) * 257)
    else:
        assert stored_image.dtype == np.uint8
    if kind == "RGBA PNG":
        assert np.array_equal(stored_image, rgb)


def test_sixteen_bit_tiff_and_rgba_through_the_file_uploaders(workspace):
    rgb = [picture(i, 3) for i in range(GOOD)]
    images = [(f"deep{i}.tif", encode(rgb[i].astype(np.uint16) * 257, ".tif")) for i in range(2)]
    images += [(f"alpha{i}.png", encode(np.dstack([rgb[i], np.full((SIZE, SIZE), 9, np.uint8)]))) for i in (2, 3)]
    masks = [(f"{Path(n).stem}.png", encode(square_mask(i))) for i, (n, _) in enumerate(images)]
    at = upload_files(images, masks, "deep")
    case("16-bit TIFF and RGBA (files)")
    assert_plain(at, "4 pairs ready")
    assert len(stored(workspace, "deep")) == 4


# --- a config file on the Model page --------------------------------------------------------------------------------

BAD_CONFIGS = {
    "wrong types": ({"model": {"depth": "three"}}, "'model.depth' must be a whole number, not \"three\""),
    "unknown key": ({"model": {"depht": 3}}, "unknown key 'model.depht'"),
    "unknown section": ({"modle": {"depth": 3}}, "unknown section 'modle'"),
    "negative epochs": ({"train": {"epochs": -5}}, "'train.epochs' must be between 1 and 10000, not -5"),
    "depth too large for the input": ({"data": {"input_size": 32}, "model": {"depth": 5}},
                                      "'model.depth' 5 is too deep for 'data.input_size' 32"),
    "not JSON": (b"{model: depth=3", "not valid JSON"),
    "JSON that is not an object": ([1, 2, 3], "must hold a JSON object"),
    "binary junk": (bytes(range(256)) * 4, "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_bad_config_file_is_refused_naming_the_key_and_the_controls_keep_working(workspace, name):
    content, words = BAD_CONFIGS[name]
    case(f"config: {name}")
    at = page("pages/model.py")
    before = at.session_state["config"]
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    at.file_uploader[0].upload("mine.json", data, "application/json").run()
    assert_plain(at, words)
    assert at.error
    assert at.session_state["config"] == before, "a refused file must not change the config"
    at.slider(key="m_depth").set_value(2).run()  # the page still works after the refusal
    assert not at.exception and at.session_state["config"].model.depth == 2


# --- a model file on the Inference page -----------------------------------------------------------------------------


def _tiny_model(lambda_layer: bool = False):
    import keras

    inputs = keras.Input((None, None, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs) if lambda_layer else inputs
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(keras.layers.MaxPooling2D()(x))
    outputs = keras.layers.UpSampling2D()(outputs)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("models")
    good = folder / "good.keras"
    _tiny_model().save(good)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _tiny_model(lambda_layer=True).save(folder / "lambda.keras")
    files = {"good": good.read_bytes(), "lambda": (folder / "lambda.keras").read_bytes()}
    files["text"] = b"I am a shopping list, not a model.\n"
    files["random zip"] = make_zip([("readme.txt", b"hello")])

    def edited(metadata: dict | None = None, config_edit=None) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(files["good"])) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "metadata.json" and metadata:
                    data = json.dumps({**json.loads(data), **metadata}).encode()
                if info.filename == "config.json" and config_edit:
                    data = config_edit(data.decode()).encode()
                dst.writestr(info, data)
        return out.getvalue()

    files["keras 2.4 metadata"] = edited({"keras_version": "2.4.0"})
    files["legacy class path"] = edited(
        {"keras_version": "2.4.0"},
        lambda text: text.replace('"module": "keras.layers"', '"module": "keras.layers.convolutional"'),
    )
    files["unknown layer"] = edited(config_edit=lambda text: text.replace('"Conv2D"', '"Conv9D"'))
    files["truncated"] = files["good"][: len(files["good"]) // 2]
    return files


BAD_MODELS = {
    "text file named .keras": ("text", "'shopping.keras' is not a Keras model file"),
    "zip without a model named .keras": ("random zip", "'archive.keras' is not a Keras model file"),
    "truncated .keras": ("truncated", "'half.keras'"),
    "Lambda-layer model": ("lambda", "'lambda.keras' contains custom code (a Lambda layer) and was not loaded"),
    ".keras from Keras 2 (legacy class path)": ("legacy class path", "'old.keras' was saved by Keras 2.4.0"),
    ".keras with a layer this Keras does not know": ("unknown layer", "'odd.keras' could not be loaded as a"),
}
MODEL_NAMES = {"text": "shopping.keras", "random zip": "archive.keras", "truncated": "half.keras",
               "lambda": "lambda.keras", "legacy class path": "old.keras", "keras 2.4 metadata": "v2.keras",
               "unknown layer": "odd.keras",
               "good": "good.keras"}


def upload_model(files: dict[str, bytes], key: str) -> AppTest:
    at = page("pages/inference.py")
    at.radio[0].set_value("file").run()
    at.file_uploader[0].upload(MODEL_NAMES[key], files[key], "application/octet-stream").run()
    return at


@pytest.mark.parametrize("name", list(BAD_MODELS))
def test_a_bad_model_file_is_refused_plainly_and_the_page_keeps_working(workspace, model_files, name):
    key, words = BAD_MODELS[name]
    case(f"model: {name}")
    at = upload_model(model_files, key)
    text = assert_plain(at, words)
    assert at.error, text
    assert not at.get("download_button")
    at.radio[0].set_value("run").run()
    assert not at.exception


def test_a_model_from_another_keras_version_that_loads_is_used_or_refused_plainly(workspace, model_files):
    at = upload_model(model_files, "keras 2.4 metadata")
    case("model: .keras with keras_version 2.4.0")
    assert_plain(at)
    if at.error:  # refusing is fine, but only in plain words naming the file
        assert "'v2.keras'" in at.error[0].value
    else:
        assert any("v2.keras" in c.value for c in at.caption)


def test_a_lambda_models_code_never_runs_when_uploaded(workspace, tmp_path):
    import keras

    marker = tmp_path / "ran.txt"
    where = str(marker)
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Lambda(lambda t: (open(where, "w").write("ran"), t)[1])(inputs)  # noqa: SIM115
    path = tmp_path / "evil.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Model(inputs, keras.layers.Conv2D(1, 1)(outputs)).save(path)
    marker.unlink()
    at = upload_model({"lambda": path.read_bytes()}, "lambda")
    case("model: Lambda layer that writes a file")
    assert_plain(at, "contains custom code")
    assert not marker.exists()


def test_the_corpus_is_as_big_as_the_readme_says():
    """Keeps the README's count honest: run with the whole file (-k would make the count smaller)."""
    if len(CORPUS) < 10:
        pytest.skip("only part of the corpus ran")
    assert len(CORPUS) >= 40, CORPUS
