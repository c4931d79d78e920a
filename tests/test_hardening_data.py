"""Damaged or unusual data files as users bring them: each bad file is one `error:` line naming it and
saying why, with nothing else on the real stderr (OpenCV's libpng prints its own lines), and the
store as it was; unusual but valid files read as before."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from _layout import make_layout
from xaug.errors import BadInput
from xaug.layout import decode_image, encode_png, png_damage
from xaug.store import Store


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _flip(data: bytes, at: float) -> bytes:
    out = bytearray(data)
    out[int(len(out) * at)] ^= 0x55
    return bytes(out)


GOOD = encode_png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _pil_pngs() -> dict[str, bytes]:
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    out = {}
    for mode in ("L", "LA", "RGBA", "P", "1", "I;16"):
        buf = io.BytesIO()
        rgb.convert(mode).save(buf, format="PNG", optimize=mode == "P")
        out[mode] = buf.getvalue()
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", interlace=1, pnginfo=None)
    out["interlaced"] = buf.getvalue()
    return out


VALID = {"opencv": GOOD, "bytes after IEND": GOOD + b"bytes after IEND", **_pil_pngs(),
         "ancillary chunk": GOOD[:33] + _chunk(b"tEXt", b"Comment\0hi") + GOOD[33:]}


@pytest.mark.parametrize("name", VALID)
def test_valid_pngs_have_no_damage(name):
    assert png_damage(VALID[name]) is None
    assert png_damage(np.frombuffer(VALID[name], np.uint8)) is None


CUT = "the file is cut short: an interrupted copy or download?"
DAMAGED = {
    "last byte missing": (GOOD[:-1], CUT),
    "IEND missing": (GOOD[:-12], CUT),
    "half the file": (GOOD[: len(GOOD) // 2], CUT),
    "signature only": (GOOD[:8], CUT),
    "a flipped bit in the pixels": (_flip(GOOD, 0.6), "its IDAT chunk is damaged: checksum mismatch"),
    "a flipped bit in the header": (GOOD[:20] + bytes([GOOD[20] ^ 1]) + GOOD[21:],
                                    "its IHDR chunk is damaged: checksum mismatch"),
    "width and height 0": (GOOD[:8] + _chunk(b"IHDR", bytes(8) + bytes([8, 0, 0, 0, 0])) + _chunk(b"IEND", b""),
                           "its header is damaged or gives a width or height of 0"),
    "chunk name not letters": (GOOD[:12] + b"I\0DR" + GOOD[16:], "damaged chunk at byte 8"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_pngs_are_named_with_the_reason(name):
    data, reason = DAMAGED[name]
    assert png_damage(data) == reason
    with pytest.raises(BadInput, match=r"^x\.png: not a readable PNG image \(" + reason.replace("?", r"\?")
                       + r"\); replace or remove the file$"):
        decode_image(data, "x.png")


def test_a_first_chunk_that_is_not_the_header_is_damage():
    assert png_damage(GOOD[:8] + _chunk(b"IDAT", b"x") + GOOD[8:]) == "damaged chunk at byte 8"


def test_decoded_pixels_of_valid_pngs_are_unchanged():
    img = decode_image(GOOD + b"trailing", "x.png")
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(GOOD, np.uint8), cv2.IMREAD_UNCHANGED))


def test_import_of_damaged_images_is_one_error_line_each_and_nothing_else_on_stderr(tmp_path):
    """Through a real process: OpenCV's libpng writes to file descriptor 2, which CliRunner does not see."""
    root = make_layout(tmp_path / "src", persons=3, size=32)
    images = sorted((root / "train" / "DCM").glob("*/*.png"))
    damaged = {images[0]: GOOD[: len(GOOD) // 2], images[1]: _flip(images[1].read_bytes(), 0.7),
               images[2]: images[2].read_bytes()[:-12]}
    for path, data in damaged.items():
        path.write_bytes(data)
    home = tmp_path / "home"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "xaug", "import", str(root), "--home", str(home), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    for path in damaged:
        rel = path.relative_to(root).as_posix()
        assert any(line.startswith(f"error: {rel}: not a readable PNG image (") for line in lines), (rel, lines)
    assert not home.exists() or Store(home).refs() == {}

