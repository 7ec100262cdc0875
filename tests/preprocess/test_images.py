"""Photos from disk: orientation, odd modes, bad files (each an error naming the file), input lists."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nphmkit.preprocess.images import ImageReadError, collect_inputs, item_names, load_photo


def _rgb(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(48, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to view
    img.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    photo = load_photo(tmp_path / "turned.jpg")
    assert photo.image.shape == (64, 48, 3) and photo.original_size == (64, 48)
    assert "EXIF orientation applied" in photo.notes
    plain = load_photo(_save(tmp_path / "plain.jpg", _rgb(48, 64)))
    assert plain.image.shape == (48, 64, 3) and plain.notes == ()


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize("mode,note", [("L", "grey converted"), ("CMYK", "CMYK converted"), ("RGBA", "alpha composited"),
                                       ("P", None)])
def test_odd_modes_become_rgb(tmp_path, mode, note):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    arr = _rgb()
    im = Image.fromarray(arr).convert(mode)
    if mode == "RGBA":
        a = np.asarray(im).copy()
        a[..., 3] = 0  # fully transparent: white after compositing
        im = Image.fromarray(a, "RGBA")
    im.save(tmp_path / f"x{suffix}")
    photo = load_photo(tmp_path / f"x{suffix}")
    assert photo.image.dtype == np.uint8 and photo.image.shape == (48, 64, 3)
    if note:
        assert any(note in n for n in photo.notes), photo.notes
    if mode == "RGBA":
        assert photo.image.min() == 255


def test_16_bit_grey_is_scaled_to_8_bit(tmp_path):
    arr = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    photo = load_photo(tmp_path / "deep.png")
    assert photo.image[0, 0, 0] == 0 and photo.image[-1, -1, 0] == 255
    assert "16-bit grey converted to 8-bit" in photo.notes


def test_huge_photos_are_downscaled_with_a_note(tmp_path):
    photo = load_photo(_save(tmp_path / "big.png", _rgb(120, 200)), max_side=100)
    assert photo.image.shape == (60, 100, 3) and photo.factor == 0.5 and photo.original_size == (120, 200)
    assert "downscaled from 200x120 to 100x60 pixels" in photo.notes


def test_bad_files_are_errors_naming_them(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    good = _save(tmp_path / "good.png", _rgb()).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    _save(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    for name, message in [("empty.png", "empty file"), ("text.jpg", "not an image file"), ("cut.png", "truncated"),
                          ("dot.png", r"too small \(1x1 pixels\)"), ("missing.png", "no such image file")]:
        with pytest.raises(ImageReadError, match=f"{name}: .*{message}|{name}: {message}"):
            load_photo(tmp_path / name)


def test_inputs_from_files_folders_and_patterns(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "a" / name).write_bytes(b"x")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "b.png").write_bytes(b"x")
    found = collect_inputs([tmp_path / "a", str(tmp_path / "c" / "*.png"), tmp_path / "a" / "a.jpg"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/a.jpg", "a/b.png", "c/b.png"]
    assert item_names(found) == ["a", "b", "b-2"]
    (tmp_path / "none").mkdir()
    with pytest.raises(ImageReadError, match="a folder with no images"):
        collect_inputs([tmp_path / "none"])
    with pytest.raises(ImageReadError, match="matches no images"):
        collect_inputs([str(tmp_path / "*.webp")])
    with pytest.raises(ImageReadError, match="no such file or folder"):
        collect_inputs([tmp_path / "nope.png"])
