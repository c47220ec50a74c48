"""Image reading: 16-bit PNGs reduced to 8 bits by their own depth (real pictures from
scikit-image written as 16-bit PNGs: 8-bit values kept, full range scaled, ambiguous refused),
EXIF orientation honoured, unreadable files named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from occam_l2r.data.image_checks import check_images
from occam_l2r.data.records import (
    ImageReadError,
    read_image,
    to_uint8_rgb,
    turned,
    unreadable_reason,
)


def _two_colour(height: int = 48, width: int = 80) -> np.ndarray:
    """Left half red, right half blue, top rows green: every rotation and flip is distinct."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (255, 0, 0)
    img[:, width // 2 :] = (0, 0, 255)
    img[:8] = (0, 255, 0)
    return img


def _save_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, "JPEG", quality=95, subsampling=0, exif=exif)


def test_16bit_png_full_range_scaled_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 257, 257 * 100, 32768], [65535, 65000, 128, 129]], np.uint16)
    path = tmp_path / "wide.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # PIL's 16-bit modes: "I;16" (or "I")
    image = read_image(path)
    assert image.shape == (2, 4, 3) and image.dtype == np.uint8
    expected = np.array([[0, 1, 100, 128], [255, 253, 0, 1]], np.uint8)
    assert np.array_equal(image[..., 0], expected)
    assert np.array_equal(image[..., 0], image[..., 2])
    # not ~all white, as the plain PIL conversion gives
    mid = np.full((8, 8), 30000, np.uint16)
    Image.fromarray(mid).save(path)
    assert read_image(path).max() == 117  # round(30000 / 257)


def _save_16bit(path: Path, values: np.ndarray) -> None:
    """A 16-bit PNG of ``values``: grayscale through PIL (mode ``I;16``), colour through OpenCV
    (PIL writes no 16-bit colour PNG)."""
    values = values.astype(np.uint16)
    if values.ndim == 2:
        Image.fromarray(values).save(path)
    else:
        assert cv2.imwrite(str(path), values[..., ::-1])  # RGB -> OpenCV's BGR


@pytest.mark.parametrize("picture", ["camera", "astronaut"])
def test_16bit_png_reads_as_its_8bit_original(tmp_path: Path, picture: str) -> None:
    """A real picture (gray camera, RGB astronaut) written as a 16-bit PNG holding its 8-bit
    values, and as a true 16-bit PNG (``v * 257``), reads exactly as the 8-bit original."""
    pixels = getattr(skimage.data, picture)()
    original = tmp_path / "original.png"
    Image.fromarray(pixels).save(original)
    want = read_image(original)
    eight = tmp_path / "eight_bit_values.png"
    _save_16bit(eight, pixels)
    full = tmp_path / "full_range.png"
    _save_16bit(full, pixels.astype(np.uint16) * 257)
    with Image.open(eight) as im:  # PIL alone reads the colour one black (it keeps the high byte)
        assert im.mode == ("I;16" if pixels.ndim == 2 else "RGB")
    for path in (eight, full):
        image = read_image(path)
        assert image.dtype == np.uint8 and np.array_equal(image, want), path.name
        assert unreadable_reason(path) is None


@pytest.mark.parametrize("picture", ["camera", "astronaut"])
def test_16bit_png_of_ambiguous_depth_is_refused(tmp_path: Path, picture: str) -> None:
    """12-bit data stored unscaled in 16 bits (values up to 4095) would read black: refused with
    a message naming the file, and listed as unusable by the checks."""
    path = tmp_path / "twelve_bit.png"
    _save_16bit(path, getattr(skimage.data, picture)().astype(np.uint16) * 16)
    with pytest.raises(ImageReadError, match="Rescale") as exc:
        read_image(path)
    assert str(path) in str(exc.value) and "4080 of 65535" in str(exc.value)
    assert "16-bit image" in unreadable_reason(path)
    assert list(check_images({"a": path})) == ["a"]


def test_16bit_colour_png_is_turned_like_any_image() -> None:
    """The 16-bit colour path turns its pixels as PIL's ``exif_transpose`` does, per tag."""
    pixels = _two_colour()
    for orientation in range(1, 9):
        im = Image.fromarray(pixels)
        im.getexif()[0x0112] = orientation
        want = np.asarray(ImageOps.exif_transpose(im))
        assert np.array_equal(turned(pixels, orientation), want), orientation


def test_32bit_integer_mode_is_treated_as_16_bit() -> None:
    im = Image.fromarray(np.array([[-5, 0, 65535, 70000]], np.int32), mode="I")
    assert to_uint8_rgb(im)[0, :, 0].tolist() == [0, 0, 255, 255]


def test_8bit_images_unchanged(tmp_path: Path) -> None:
    pixels = _two_colour()
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png"), pixels)
    gray = read_image(tmp_path / "gray.png")
    assert np.array_equal(gray[..., 1], pixels[..., 0])


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),  # stored upside down
        (6, lambda a: np.rot90(a, -1)),  # shown turned 90 degrees clockwise
        (8, lambda a: np.rot90(a, 1)),  # shown turned 90 degrees counter-clockwise
        (2, lambda a: a[:, ::-1]),  # mirrored
    ],
)
def test_exif_orientation_is_honoured(tmp_path: Path, orientation: int, upright) -> None:
    stored = _two_colour()
    path = tmp_path / f"o{orientation}.jpg"
    _save_jpeg(path, stored, orientation)
    image = read_image(path)
    want = upright(stored)
    assert image.shape == want.shape
    # JPEG is lossy: compare away from the colour edges
    diff = np.abs(image.astype(int) - want.astype(int))
    assert np.median(diff) <= 3 and (diff > 60).mean() < 0.05


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_two_colour()).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    for path in (truncated, empty, text):
        with pytest.raises(ImageReadError, match=str(path)):
            read_image(path)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_image(missing)
    assert unreadable_reason(good) is None
    assert unreadable_reason(empty) == "empty file (0 bytes)"
    assert unreadable_reason(missing) == "file not found"
    assert "Error" in unreadable_reason(text)

    paths = {p.name: p for p in (good, truncated, empty, text, missing)}
    cache = tmp_path / "cache.json"
    bad = check_images(paths, workers=2, cache=cache)
    assert list(bad) == ["truncated.png", "empty.png", "text.png", "missing.png"]
    # cached: without decoding, the known-bad file is still reported; a changed file is re-decoded
    assert check_images(paths, cache=cache, decode=False) == bad
    Image.fromarray(_two_colour()).save(truncated)
    assert "truncated.png" not in check_images(paths, cache=cache)
