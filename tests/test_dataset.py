"""Checking and storing a user's images and masks: pairing, every kind of mask, and every kind of bad input.

Each bad-input test puts the bad file beside good pairs and checks that the message names the file and the
problem, and that the good pairs are still stored.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.png_files import decompression_bomb_png, huge_png_header
from unet import dataset as ds
from unet import zipsafe
from unet.errors import UserError

SIZE = 32


def write(path: Path, array: np.ndarray) -> Path:
    """Write any array with OpenCV in the format the suffix names (RGB in, like unet.images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    path.write_bytes(cv2.imencode(path.suffix, pixels)[1].tobytes())
    return path


def square_mask(i: int, on: int = 255, off: int = 0, dtype=np.uint8) -> np.ndarray:
    mask = np.full((SIZE, SIZE), off, dtype)
    mask[4 + i : 16 + i, 6:20] = on
    return mask


def picture(i: int, channels: int = 1, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(i)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 255, shape, np.uint8)


def make_pairs(root: Path, count: int = 4, images: str = "images", masks: str = "masks", channels: int = 1) -> Path:
    for i in range(count):
        write(root / images / f"img{i}.png", picture(i, channels))
        write(root / masks / f"img{i}.png", square_mask(i))
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, prefix + file.relative_to(folder).as_posix())
    return archive


def problems(report) -> dict[str, str]:
    return {p["file"]: p["problem"] for p in report.to_dict()["problems"]}


def stored_masks(dataset) -> list[np.ndarray]:
    return [dataset.read_pair(stem)[1] for stem in dataset.stems]


# --- pairing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("masks", ["masks", "labels", "label", "annotations", "gt", "Masks", "GT"])
def test_every_mask_folder_alias_pairs_in_any_case(tmp_path, masks):
    report = ds.inspect_source(make_pairs(tmp_path / "data", images="Images", masks=masks))
    assert report.pairs == 4 and report.problems == []


def test_mask_suffixes_and_other_extensions_pair_by_stem(tmp_path):
    root = tmp_path / "data"
    for i, mask_name in enumerate(["a_mask.png", "b_label.tif", "c.bmp", "d_MASK.png"]):
        write(root / "images" / f"{mask_name[0]}.jpg", picture(i, 3))
        write(root / "masks" / mask_name, square_mask(i))
    report = ds.inspect_source(root)
    assert report.pairs == 4 and report.problems == []


def test_nested_folder_in_zip_pairs_and_system_junk_is_ignored(tmp_path):
    folder = make_pairs(tmp_path / "data")
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "images" / "Thumbs.db").write_bytes(b"junk")
    (folder / "images" / ".hidden.png").write_bytes(b"junk")
    archive = zip_folder(folder, tmp_path / "upload.zip", prefix="mydata/")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/mydata/images/._img0.png", b"resource fork")
    dataset, report = ds.ingest(archive, "My Data", tmp_path / "ws")
    assert report.pairs == 4 and report.problems == []
    assert dataset.name == "My_Data" and dataset.stems == ["img0", "img1", "img2", "img3"]


def test_unpaired_images_and_masks_are_reported_and_pairs_kept(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "lonely.png", picture(9))
    write(root / "masks" / "orphan.png", square_mask(1))
    found = problems(ds.inspect_source(root))
    assert "image 'lonely.png' has no mask" in found["images/lonely.png"]
    assert found["masks/orphan.png"] == "mask 'orphan.png' has no image named 'orphan'"


def test_two_images_with_the_same_stem_are_both_left_out(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "twin.png", picture(5))
    write(root / "images" / "twin.jpg", picture(5, 3))
    write(root / "masks" / "twin.png", square_mask(1))
    report = ds.inspect_source(root)
    found = problems(report)
    assert report.pairs == 4 and "2 images are named 'twin'" in found["images/twin.jpg"]
    assert "masks/twin.png" not in found


def test_unicode_and_space_file_names_are_stored_under_safe_unique_names(tmp_path):
    root = make_pairs(tmp_path / "data", count=2)
    for i, name in enumerate(["Zelle Ä 1", "細胞", "細胞 2"]):
        write(root / "images" / f"{name}.png", picture(i))
        write(root / "masks" / f"{name}_mask.png", square_mask(i))
    dataset, report = ds.ingest(root, "Zellkerne Ä", tmp_path / "ws")
    assert report.pairs == 5 and report.problems == []
    assert len(set(dataset.stems)) == 5 and all(stem.isascii() and " " not in stem for stem in dataset.stems)


def test_uploaded_file_groups_are_staged_and_pair(tmp_path):
    def upload(name: str, array: np.ndarray) -> tuple[str, io.BytesIO]:
        return name, io.BytesIO(cv2.imencode(Path(name).suffix, array)[1].tobytes())

    names = ["Zelle 1.PNG", "細胞.png", "../escape.png", "c.png", "d.png"]
    image_files = [upload(n, picture(i)) for i, n in enumerate(names)]
    mask_files = [upload(n.rsplit(".", 1)[0] + "_mask.png", square_mask(i)) for i, n in enumerate(names)]
    folder = ds.stage_uploads(image_files, mask_files, tmp_path / "staged")
    assert not (tmp_path / "escape.png").exists()
    dataset, report = ds.ingest(folder, "uploads", tmp_path / "ws")
    assert report.pairs == 5 and report.problems == []


# --- masks ----------------------------------------------------------------------------------------------------


def _mask_set(kind: str, i: int) -> tuple[str, np.ndarray | Image.Image, np.ndarray]:
    """(file name, mask as written, the class indices expected)."""
    expected = square_mask(i, on=1)
    if kind == "0/1":
        return "m.png", square_mask(i, on=1), expected
    if kind == "0/255":
        return "m.png", square_mask(i), expected
    if kind == "16-bit 0/1000":
        return "m.png", square_mask(i, on=1000, dtype=np.uint16), expected
    if kind == "index 0..3":
        index = expected.copy()
        index[20:26, 2:10], index[20:26, 20:30] = 2, 3
        return "m.png", index, index
    if kind == "colour":
        index = expected.copy()
        index[20:26, 2:10] = 2
        colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
        return "m.png", colours[index], index
    palette = Image.fromarray(expected, "P")
    palette.putpalette([0, 0, 0, 30, 144, 255])
    return "m.png", palette, expected


@pytest.mark.parametrize("kind", ["0/1", "0/255", "16-bit 0/1000", "index 0..3", "colour", "palette PNG"])
def test_every_mask_kind_decodes_to_class_indices(tmp_path, kind):
    root = tmp_path / "data"
    expected = []
    for i in range(4):
        name, mask, indices = _mask_set(kind, i)
        write(root / "images" / f"img{i}.png", picture(i))
        target = root / "masks" / f"img{i}.png"
        target.parent.mkdir(exist_ok=True)
        mask.save(target) if isinstance(mask, Image.Image) else write(target, mask)
        expected.append(indices)
    dataset, report = ds.ingest(root, "kinds", tmp_path / "ws")
    assert report.problems == []
    assert dataset.num_classes == int(max(m.max() for m in expected)) + 1
    if kind == "colour":  # colour classes come in the order of their colours; each keeps its own colour
        class_colours = np.array([c.color for c in dataset.classes])
        mask_colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]])
        expected = [mask_colours[index] for index in expected]
        got_masks = [class_colours[got] for got in stored_masks(dataset)]
    else:
        got_masks = stored_masks(dataset)
    assert all(np.array_equal(got, want) for got, want in zip(got_masks, expected, strict=True))
    if kind == "palette PNG":
        assert dataset.classes[1].color == (30, 144, 255)
    if kind == "0/255":
        assert [c.name for c in dataset.classes] == ["background", "foreground"]


def test_background_is_the_most_common_value_when_there_is_no_zero(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        write(root / "images" / f"img{i}.png", picture(i))
        write(root / "masks" / f"img{i}.png", square_mask(i, on=7, off=200))
    dataset, _ = ds.ingest(root, "no-zero", tmp_path / "ws")
    assert [np.array_equal(m, square_mask(i, on=1)) for i, m in enumerate(stored_masks(dataset))] == [True] * 4


@pytest.mark.parametrize("colour", [False, True])
def test_jpeg_noise_does_not_invent_classes(tmp_path, colour):
    root = tmp_path / "data"
    expected = []
    palette = np.array([[0, 0, 0], [255, 40, 40], [40, 200, 255]], np.uint8)
    for i in range(6):
        index = np.zeros((64, 64), np.uint8)
        cv2.circle(index, (20 + i, 22), 12, 1, -1)
        if colour:
            cv2.rectangle(index, (36, 36), (58, 58 - i), 2, -1)
            mask = palette[index]
        else:
            mask = index * 255
        write(root / "images" / f"img{i}.png", picture(i, size=64))
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"img{i}.jpg", quality=75)
        expected.append(index)
    raw = np.array(Image.open(root / "masks" / "img0.jpg"))
    assert len(np.unique(raw.reshape(-1, raw.shape[-1]) if colour else raw, axis=0)) > 10  # really noisy
    dataset, _ = ds.ingest(root, "jpeg", tmp_path / "ws")
    assert dataset.num_classes == (3 if colour else 2)
    class_colours = np.array([c.color for c in dataset.classes])
    for got, want in zip(stored_masks(dataset), expected, strict=True):
        if colour:  # classes are ordered by colour; compare the colour each pixel's class stands for
            near = np.abs(class_colours[got] - palette[want].astype(int)).max(axis=2) < 16
            assert near.mean() > 0.98
        else:
            assert (got != want).mean() < 0.02


def test_mask_with_300_values_is_refused_and_the_rest_ingest(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "labels.png", picture(7))
    write(root / "masks" / "labels.png", (np.arange(SIZE * SIZE) % 300).astype(np.uint16).reshape(SIZE, SIZE))
    dataset, report = ds.ingest(root, "many", tmp_path / "ws")
    assert "mask 'labels.png' has 300 different values" in problems(report)["masks/labels.png"]
    assert len(dataset.stems) == 4 and dataset.num_classes == 2


def test_all_background_masks_are_kept_with_a_warning(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        write(root / "images" / f"img{i}.png", picture(i))
        write(root / "masks" / f"img{i}.png", np.zeros((SIZE, SIZE), np.uint8))
    dataset, report = ds.ingest(root, "empty-masks", tmp_path / "ws")
    assert "every mask is all background" in problems(report)[ds.WHOLE_DATASET]
    assert dataset.num_classes == 2 and len(dataset.stems) == 4


def test_one_mask_without_foreground_is_a_warning_and_the_pair_kept(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "masks" / "img0.png", np.zeros((SIZE, SIZE), np.uint8))
    dataset, report = ds.ingest(root, "warn", tmp_path / "ws")
    assert problems(report)["masks/img0.png"] == "mask 'img0.png' has no foreground (all background); kept"
    assert len(dataset.stems) == 4
    assert report.summary() == "4 pairs ready, 1 warning, 2 classes (background, foreground)"


# --- bad files beside good ones -------------------------------------------------------------------------------


def _cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture(3, 3)).convert("CMYK").save(buffer, "JPEG")
    return buffer.getvalue()


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture(3, 3)).convert("P").save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("images/empty.png", b"", "'empty.png' is an empty file (0 bytes)"),
        ("images/notes.png", b"this is not a picture", "'notes.png' is not an image"),
        ("images/cut.png", "truncated", "'cut.png' is damaged"),
        ("images/huge.png", huge_png_header(30000, 30000), "'huge.png' is too large"),
        ("images/readme.txt", b"hello", "'readme.txt' is not an image file"),
    ],
)
def test_bad_image_is_reported_by_name_and_good_pairs_still_ingest(tmp_path, file, content, message):
    root = make_pairs(tmp_path / "data")
    if content == "truncated":
        content = write(tmp_path / "whole.png", picture(1)).read_bytes()[:-300]
    (root / file).write_bytes(content)
    stem = Path(file).stem
    if file.endswith(".png"):
        write(root / "masks" / f"{stem}.png", square_mask(1))
    dataset, report = ds.ingest(root, "bad", tmp_path / "ws")
    assert message in problems(report)[file]
    assert len(dataset.stems) == 4
    assert str(tmp_path) not in json.dumps(report.to_dict())


def test_mask_of_another_size_is_reported_in_plain_words(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "a.png", np.zeros((128, 128), np.uint8))
    write(root / "masks" / "a.png", np.zeros((90, 100), np.uint8))
    dataset, report = ds.ingest(root, "sizes", tmp_path / "ws")
    assert problems(report)["masks/a.png"] == "mask 'a.png' is 100x90 but its image is 128x128"
    assert len(dataset.stems) == 4


def test_decompression_bomb_mask_is_refused_without_decoding(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "bomb.png", picture(1))
    (root / "masks" / "bomb.png").write_bytes(decompression_bomb_png(10_100))
    dataset, report = ds.ingest(root, "bomb", tmp_path / "ws")
    assert "'bomb.png' is 10100x10100 pixels" in problems(report)["masks/bomb.png"]
    assert len(dataset.stems) == 4


@pytest.mark.parametrize(("name", "content"), [("cmyk.jpg", _cmyk_jpeg()), ("anim.gif", _gif())])
def test_cmyk_jpeg_and_gif_load_as_rgb(tmp_path, name, content):
    root = tmp_path / "data"
    make_pairs(root, count=3, channels=3)
    (root / "images" / name).write_bytes(content)
    write(root / "masks" / f"{Path(name).stem}.png", square_mask(1))
    dataset, report = ds.ingest(root, "odd", tmp_path / "ws")
    assert len(dataset.stems) == 4
    image = dataset.read_pair(Path(name).stem)[0]
    original = picture(3, 3).astype(int)
    if name.endswith(".jpg"):
        assert np.abs(image.astype(int) - original).mean() < 20  # colours right, not inverted
    assert report.problems == [] and image.shape == (SIZE, SIZE, 3)


def test_a_16_bit_tiff_keeps_its_values_and_8_bit_images_join_it_on_one_scale(tmp_path):
    """Issue #14: nothing is squeezed to 8 bits; the 8-bit images of a 12-bit dataset are brought to 12 bits."""
    root = tmp_path / "data"
    for i in range(4):
        rgba = np.dstack([picture(i, 3), np.full((SIZE, SIZE), 128, np.uint8)])
        write(root / "images" / f"rgba{i}.png", rgba[..., [0, 1, 2, 3]])
        write(root / "masks" / f"rgba{i}.png", square_mask(i))
    write(root / "images" / "deep.tif", (picture(9, 3).astype(np.uint16) * 16))
    write(root / "masks" / "deep.png", square_mask(1))
    dataset, report = ds.ingest(root, "deep", tmp_path / "ws")
    assert [p.problem[:31] for p in report.problems] == ["the images hold up to 12-bit va"] and dataset.channels == 3
    assert dataset.image_dtype == "uint16" and dataset.image_format == "tif"
    deep = dataset.read_pair("deep")[0]
    assert deep.dtype == np.uint16 and deep.shape == (SIZE, SIZE, 3)
    assert np.array_equal(deep, picture(9, 3).astype(np.uint16) * 16)  # exactly as written
    eight = dataset.read_pair("rgba1")[0].astype(np.float64)
    assert np.abs(eight - picture(1, 3).astype(np.float64) * 4095 / 255).max() <= 0.5  # alpha dropped, to 0..4095
    unit = dataset.rule.to_unit(dataset.read_pair("rgba1")[0])
    same = dataset.rule.to_unit(np.rint(picture(1, 3).astype(np.float64) * 4095 / 255).astype(np.uint16))
    np.testing.assert_array_equal(unit, same)  # one rule for the 8-bit and the 12-bit files


def test_mixed_grayscale_and_rgb_images_are_converted_to_the_majority(tmp_path):
    root = make_pairs(tmp_path / "data")
    write(root / "images" / "colour.png", picture(5, 3))
    write(root / "masks" / "colour.png", square_mask(1))
    dataset, report = ds.ingest(root, "mixed", tmp_path / "ws")
    message = problems(report)[ds.WHOLE_DATASET]
    assert "1 of 5 images are colour and were converted to grayscale" in message and "'colour.png'" in message
    assert dataset.channels == 1 and dataset.read_pair("colour")[0].shape == (SIZE, SIZE)


def test_tiny_dataset_is_stored_with_a_warning(tmp_path):
    dataset, report = ds.ingest(make_pairs(tmp_path / "data", count=2), "tiny", tmp_path / "ws")
    assert "only 2 usable pairs" in problems(report)[ds.WHOLE_DATASET]
    assert len(dataset.stems) == 2


# --- zips -----------------------------------------------------------------------------------------------------


def test_empty_zip_has_no_usable_pairs(tmp_path):
    archive = tmp_path / "empty.zip"
    zipfile.ZipFile(archive, "w").close()
    with pytest.raises(UserError, match=r"no usable image/mask pairs: 'empty.zip': it is empty"):
        ds.ingest(archive, "empty", tmp_path / "ws")
    assert list((tmp_path / "ws").iterdir()) == []


def test_zip_of_only_masks_says_the_images_folder_is_missing(tmp_path):
    folder = make_pairs(tmp_path / "data")
    archive = tmp_path / "masks.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (folder / "masks").iterdir():
            zf.write(file, f"masks/{file.name}")
    with pytest.raises(UserError, match=r"found a 'masks' folder but no 'images' folder"):
        ds.ingest(archive, "masks", tmp_path / "ws")


def test_zip_entries_escaping_the_folder_are_skipped_and_nothing_is_written_outside(tmp_path):
    archive = zip_folder(make_pairs(tmp_path / "data"), tmp_path / "evil.zip")
    png = write(tmp_path / "x.png", picture(1)).read_bytes()
    (tmp_path / "x.png").unlink()
    link = zipfile.ZipInfo("images/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../x.png", png)
        zf.writestr("/tmp/abs_unet_test_x.png", png)
        zf.writestr(link, "/etc/passwd")
    workspace = tmp_path / "deep" / "er" / "ws"
    dataset, report = ds.ingest(archive, "evil", workspace)
    found = problems(report)
    assert "points outside the zip's folder" in found["../../x.png"]
    assert "has an absolute path" in found["/tmp/abs_unet_test_x.png"]
    assert "is a symbolic link" in found["images/link.png"]
    assert len(dataset.stems) == 4
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "deep" / "x.png").exists()
    assert not Path("/tmp/abs_unet_test_x.png").exists()


def test_zip_bomb_is_refused_before_extraction(tmp_path, monkeypatch):
    monkeypatch.setattr(zipsafe, "MAX_TOTAL_BYTES", 10 * 1024**2)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/a.png", b"\0" * (20 * 1024**2))
    assert archive.stat().st_size < 100_000
    with pytest.raises(UserError, match=r"'bomb.zip' would unpack to 0.0 GB; at most 0.0 GB.*zip bomb"):
        ds.ingest(archive, "bomb", tmp_path / "ws")
    assert list((tmp_path / "ws").iterdir()) == []


def test_zip_with_too_many_members_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(zipsafe, "MAX_MEMBERS", 5)
    archive = zip_folder(make_pairs(tmp_path / "data"), tmp_path / "many.zip")
    with pytest.raises(UserError, match="'many.zip' holds 8 files; at most 5"):
        ds.inspect_source(archive)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("no zip here")
    with pytest.raises(UserError, match="'fake.zip' is not a zip file"):
        ds.ingest(fake, "fake", tmp_path / "ws")


# --- the stored dataset ---------------------------------------------------------------------------------------


def test_stored_dataset_follows_the_contract(tmp_path):
    dataset, report = ds.ingest(make_pairs(tmp_path / "data"), "stored", tmp_path / "ws")
    info = json.loads((dataset.root / "dataset.json").read_text())
    keys = {"name", "pairs", "channels", "mask_kind", "classes", "image_sizes", "mean", "std", "problems", "hash"}
    assert keys <= set(info)
    assert info["image_sizes"] == {"min": [SIZE, SIZE], "max": [SIZE, SIZE], "distinct": 1}
    assert set(info["classes"][0]) >= {"index", "name", "color", "pixels"}
    assert set(report.to_dict()) >= {"pairs", "classes", "problems", "image_sizes"}
    assert set(report.to_dict()["classes"][0]) >= {"index", "name", "pixels"}
    image, mask = dataset.read_pair(dataset.stems[0])
    assert image.dtype == mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert 0.4 < dataset.mean < 0.6 and dataset.std > 0.2
    assert [d.name for d in ds.list_datasets(tmp_path / "ws")] == ["stored"]


def test_ingest_reports_progress_and_never_replaces_a_dataset_of_the_same_name(tmp_path):
    calls = []
    ds.ingest(make_pairs(tmp_path / "one"), "same", tmp_path / "ws")
    two = make_pairs(tmp_path / "two", count=5)
    with pytest.raises(ds.NameTaken):
        ds.ingest(two, "same", tmp_path / "ws")
    assert len(ds.Dataset.load(tmp_path / "ws" / "same").stems) == 4
    dataset, _ = ds.ingest(two, "same-2", tmp_path / "ws", progress=lambda fraction, _: calls.append(fraction))
    assert len(dataset.stems) == 5 and sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["same", "same-2"]
    assert calls == sorted(calls) and calls[-1] == 1.0 and len(calls) > 5


def test_failed_ingest_leaves_nothing_and_keeps_the_old_dataset(tmp_path):
    ds.ingest(make_pairs(tmp_path / "one"), "keep", tmp_path / "ws")
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "masks").mkdir()
    (broken / "images" / "a.png").write_text("not a picture")
    (broken / "masks" / "a.png").write_text("not a picture")
    with pytest.raises(UserError, match=r"no usable image/mask pairs: 'images/a.png': 'a.png' is not an image"):
        ds.ingest(broken, "keep", tmp_path / "ws")
    assert [p.name for p in (tmp_path / "ws").iterdir()] == ["keep"]
    assert len(ds.Dataset.load(tmp_path / "ws" / "keep").stems) == 4


def test_classes_can_be_renamed_and_recoloured(tmp_path):
    dataset, _ = ds.ingest(make_pairs(tmp_path / "data"), "named", tmp_path / "ws")
    dataset.save_classes(["sky", "cell"], [[1, 2, 3], [250, 0, 0]])
    again = ds.Dataset.load(dataset.root)
    assert [(c.name, c.color) for c in again.classes] == [("sky", (1, 2, 3)), ("cell", (250, 0, 0))]
    with pytest.raises(UserError, match="give 2 names"):
        dataset.save_classes(["only one"], [[0, 0, 0]])
    with pytest.raises(UserError, match="from 0 to 255"):
        dataset.save_classes(["a", "b"], [[0, 0, 0], [0, 0, 300]])


def test_loading_a_folder_that_is_not_a_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="'nothing' is not a stored dataset"):
        ds.Dataset.load(tmp_path / "nothing")


def test_report_summary_counts_skipped_files(tmp_path):
    root = make_pairs(tmp_path / "data")
    (root / "images" / "notes.png").write_text("text")
    write(root / "masks" / "notes.png", square_mask(1))
    write(root / "masks" / "orphan.png", square_mask(1))
    assert ds.inspect_source(root).summary().startswith("4 pairs ready, 2 files skipped")
