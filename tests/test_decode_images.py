"""Decode rule ``featlt-decode-2`` (featlt.data.decode) against expected pixel values.

16-bit grey and colour, 32-bit integer and float TIFFs, CMYK, palettes with and without
transparency, alpha, EXIF orientation; uint16 arrays; one decode for every path; the rule in
the store's provenance and the refusal to resume an output decoded under another rule.
"""

from __future__ import annotations

import ast
import io
import json
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from featlt.cli import main
from featlt.data.decode import DECODE_RULE, array_to_rgb, decode_image
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG file written by hand (no encoder in between): (H, W) or (H, W, 3) uint8/uint16.

    Pillow cannot write 48-bit RGB, so the 16-bit files are made byte by byte here.
    """
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    data = pixels.astype(">u2" if bit_depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def decoded(data: bytes | Path) -> np.ndarray:
    """(H, W, 3) uint8 of featlt's decode of a file or its bytes."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    image = decode_image(source, "test image")
    assert image.mode == "RGB"
    return np.asarray(image)


def tiff_bytes(pixels: np.ndarray, **options: object) -> bytes:
    """A TIFF of ``pixels`` written by tifffile (Pillow writes mode I as signed only)."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **options)
    return buffer.getvalue()


SIXTEEN_BIT = np.array([[0, 255, 256, 32767, 32768, 65280, 65534, 65535]], np.uint16)
HIGH_BYTES = np.array([[0, 0, 1, 127, 128, 255, 255, 255]], np.uint8)


def test_16bit_grey_png_keeps_the_high_byte(tmp_path: Path) -> None:
    file = tmp_path / "grey16.png"
    file.write_bytes(png_bytes(SIXTEEN_BIT))
    with Image.open(file) as image:
        assert image.mode == "I;16"  # what Pillow opens it as
    pixels = decoded(file)
    np.testing.assert_array_equal(pixels, np.repeat(HIGH_BYTES[:, :, None], 3, axis=2))
    # a mid-grey 16-bit image is mid-grey, not white (8-bit conversion clipped it to 255)
    flat = tmp_path / "mid.png"
    flat.write_bytes(png_bytes(np.full((16, 16), 32768, np.uint16)))
    assert decoded(flat).mean() / 255 == pytest.approx(0.50, abs=0.005)


def test_16bit_big_endian_tiff_keeps_the_high_byte() -> None:
    data = tiff_bytes(SIXTEEN_BIT, byteorder=">")
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "I;16B"
    np.testing.assert_array_equal(decoded(data)[:, :, 1], HIGH_BYTES)


def test_48bit_rgb_png_reads_as_the_high_bytes_of_each_channel() -> None:
    """Pillow has no 16-bit RGB mode: it unpacks a 48-bit PNG to 8-bit RGB by keeping the high
    byte (measured: 0x1234 -> 0x12, not round(0x1234 / 257) = 0x12 by chance; 0xFF80 -> 0xFF,
    0x80FF -> 0x80). featlt's 16-bit grey rule is the same, so both agree."""
    rgb = np.array([[[0x1234, 0xABCD, 0xFF80], [0x80FF, 0x00FF, 0x0100]]], np.uint16)
    data = png_bytes(rgb)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB"
    np.testing.assert_array_equal(decoded(data), (rgb >> 8).astype(np.uint8))
    grey = np.repeat(SIXTEEN_BIT[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(decoded(png_bytes(grey)), decoded(png_bytes(SIXTEEN_BIT)))


def test_unsigned_32bit_tiff_is_scaled_by_its_full_range() -> None:
    values = np.array([[0, 2**24 - 1, 2**24, 2**31, 2**32 - 1]], np.uint32)
    data = tiff_bytes(values)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "I"
    np.testing.assert_array_equal(decoded(data)[:, :, 0], [[0, 0, 1, 128, 255]])


def test_signed_integer_tiff_is_refused_with_the_fix(tmp_path: Path) -> None:
    file = tmp_path / "counts.tif"
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(file)  # Pillow: SampleFormat 2
    with pytest.raises(FeatltError, match=r"image counts.tif: signed 32-bit integer pixels "
                                          r"have no black or white level; save the image as"):
        decode_image(file, f"image {file.name}")


def test_float_tiff_in_unit_range_is_scaled_by_255(tmp_path: Path) -> None:
    file = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)).save(file)
    with Image.open(file) as image:
        assert image.mode == "F"
    np.testing.assert_array_equal(decoded(file)[:, :, 2], [[0, 64, 128, 255]])
    hdr = tmp_path / "hdr.tif"
    Image.fromarray(np.array([[0.0, 1.5]], np.float32)).save(hdr)
    with pytest.raises(FeatltError, match=r"hdr.tif: float pixels span \[0, 1.5\] but must lie "
                                          r"in \[0, 1\]; divide"):
        decode_image(hdr, f"image {hdr}")


CMYK = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (100, 50, 0, 60), (30, 200, 90, 10)]


def _cmyk_expected() -> np.ndarray:
    values = np.asarray(CMYK, np.float64)
    return np.round((255 - values[:, :3]) * (255 - values[:, 3:]) / 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_converts_by_the_multiplicative_formula(fmt: str) -> None:
    # 8x8 blocks of one colour each, so a quality-100 JPEG keeps them (Adobe-inverted storage)
    image = Image.new("CMYK", (8 * len(CMYK), 8))
    for k, colour in enumerate(CMYK):
        image.paste(colour, (8 * k, 0, 8 * k + 8, 8))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    pixels = decoded(buffer.getvalue())[4, 4::8]
    tolerance = 2 if fmt == "JPEG" else 0
    np.testing.assert_allclose(pixels.astype(int), _cmyk_expected().astype(int), atol=tolerance)


def _palette_image() -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 20, 40, 200])
    image.putdata([0, 1, 2])
    return image


def test_palette_without_transparency_looks_up_its_colours() -> None:
    buffer = io.BytesIO()
    _palette_image().save(buffer, "PNG")
    np.testing.assert_array_equal(decoded(buffer.getvalue()),
                                  [[[255, 0, 0], [0, 255, 0], [20, 40, 200]]])


def test_palette_with_a_transparent_index_is_white_there() -> None:
    buffer = io.BytesIO()
    _palette_image().save(buffer, "PNG", transparency=1)
    np.testing.assert_array_equal(decoded(buffer.getvalue()),
                                  [[[255, 0, 0], [255, 255, 255], [20, 40, 200]]])


ALPHAS = np.array([0, 1, 64, 128, 254, 255], np.uint8)


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    c, a = colour.astype(np.float64), alpha.astype(np.float64)
    return np.round((c * a + 255 * (255 - a)) / 255).astype(np.uint8)


def test_rgba_is_composited_on_white() -> None:
    colour = np.array([[10, 100, 200]] * ALPHAS.size, np.uint8)
    rgba = np.concatenate([colour, ALPHAS[:, None]], axis=1)[None]
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    expected = _on_white(colour, ALPHAS[:, None])[None]
    np.testing.assert_array_equal(decoded(buffer.getvalue()), expected)
    assert (expected[0, 0] == 255).all() and (expected[0, -1] == colour[0]).all()


def test_la_is_composited_on_white() -> None:
    grey = np.full(ALPHAS.size, 30, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, ALPHAS], axis=1)[None], "LA").save(buffer, "PNG")
    expected = np.repeat(_on_white(grey, ALPHAS)[None, :, None], 3, axis=2)
    np.testing.assert_array_equal(decoded(buffer.getvalue()), expected)


ASYMMETRIC = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)  # (H=3, W=4), no symmetry


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(ASYMMETRIC, "L").convert("RGB").save(buffer, "PNG", exif=exif)
    pixels = decoded(buffer.getvalue())[:, :, 0]
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        upright = np.asarray(ImageOps.exif_transpose(image))[:, :, 0]
    np.testing.assert_array_equal(pixels, upright)
    by_hand = {1: ASYMMETRIC, 3: np.rot90(ASYMMETRIC, 2), 6: np.rot90(ASYMMETRIC, -1),
               8: np.rot90(ASYMMETRIC, 1), 2: ASYMMETRIC[:, ::-1]}
    if orientation in by_hand:
        np.testing.assert_array_equal(pixels, by_hand[orientation])


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide, 24 high; shown rotated 90 degrees clockwise
    file = tmp_path / "phone.jpg"
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :8] = 255  # a white corner at the stored top left
    Image.fromarray(stored).save(file, quality=100, exif=exif)
    pixels = decoded(file)
    assert pixels.shape == (40, 24, 3)
    assert pixels[:8, -8:].min() > 240 and pixels[-8:, :8].max() < 15  # now the top right


def test_uint16_and_float_arrays_follow_the_same_rule(tmp_path: Path) -> None:
    from featlt.data.sources import open_source

    x = np.repeat(SIXTEEN_BIT[None], 4, axis=0)  # (4, 1, 8) uint16
    file = tmp_path / "arrays.npz"
    np.savez(file, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x[:2],
             y_test=np.array([0, 1]))
    image = open_source(f"npz:{file}").load_image("train", 3)
    np.testing.assert_array_equal(np.asarray(image)[:, :, 0], HIGH_BYTES)
    np.testing.assert_array_equal(np.asarray(array_to_rgb(SIXTEEN_BIT, "x")),
                                  decoded(png_bytes(SIXTEEN_BIT)))
    floats = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_array_equal(np.asarray(array_to_rgb(floats, "x"))[:, :, 0], [[0, 64, 255]])
    with pytest.raises(FeatltError, match=r"x_train\[0\]: image dtype int32 is neither uint8"):
        array_to_rgb(x[0].astype(np.int32), "dataset npz: x_train[0]")


def test_every_image_decode_goes_through_featlt_data_decode() -> None:
    """No module but featlt/data/decode.py opens an image with PIL; the sources and predict use
    its functions."""
    import featlt.data.decode as decode
    from featlt.data.sources import folder, jpeg_npz, split_list

    openers = []
    for path in [*(ROOT / "featlt").rglob("*.py"), *(ROOT / "extractors").rglob("*.py")]:
        if path == ROOT / "featlt" / "data" / "decode.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("open", "frombytes")
                    and isinstance(node.value, ast.Name) and node.value.id == "Image"):
                openers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert openers == []
    for module in (folder, jpeg_npz, split_list):
        assert module.decode_image is decode.decode_image
    predict = (ROOT / "featlt" / "predict" / "images.py").read_text()
    assert "from featlt.data.decode import decode_image" in predict


def _extract(folder: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(main, [
        "extract", "--model", "pixels_8", "--data", f"folder:{folder}", "--dtype", "float32",
        "--batch-size", "2", "--threads", "1", "--workers", "0", "--splits", "train",
        "-o", str(out), *extra])


@pytest.fixture
def sixteen_bit_folder(tmp_path: Path) -> Path:
    """Two classes of 16-bit grey PNGs, one of them uniform mid-grey (32768)."""
    for name, value in (("a", 32768), ("b", 8192)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "imgs" / name / f"{i}.png").write_bytes(
                png_bytes(np.full((12, 12), value + i, np.uint16)))
    return tmp_path / "imgs"


def test_extraction_decodes_16bit_images_and_records_the_rule(
    sixteen_bit_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.h5"
    result = _extract(sixteen_bit_folder, out)
    assert result.exit_code == 0, result.output
    with FeatureStore(out) as store:
        decode = store.provenance["data"]["decode"]
        feats, labels = store.read("train"), store.labels("train")
    assert decode["rule"] == DECODE_RULE == "featlt-decode-2"
    assert "16-bit: v >> 8" in decode["summary"]
    # pixels_8 stores the resized pixels / 255: 32768 -> 128, 8192 -> 32
    np.testing.assert_allclose(feats[labels == 0], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(feats[labels == 1], 32 / 255, atol=1e-6)


@pytest.mark.parametrize(("old_rule", "named"), [
    (None, "featlt-decode-1 (no 'data.decode' recorded"),
    ({"rule": "featlt-decode-3", "summary": "a later rule"}, "rule 'featlt-decode-3'"),
])
@pytest.mark.parametrize("how", ["--resume", "--skip-existing"])
def test_an_output_decoded_under_another_rule_is_not_resumed_or_kept(
    sixteen_bit_folder: Path, tmp_path: Path, old_rule: dict | None, named: str, how: str
) -> None:
    out = tmp_path / "f.h5"
    assert _extract(sixteen_bit_folder, out).exit_code == 0
    with h5py.File(out, "r+") as file:  # what an older featlt (or another rule) wrote
        provenance = json.loads(file.attrs["provenance"])
        provenance["data"].pop("decode")
        if old_rule is not None:
            provenance["data"]["decode"] = old_rule
        file.attrs["provenance"] = json.dumps(provenance)
        file.attrs["complete"] = how == "--skip-existing"
    if how == "--resume":
        out = out.rename(tmp_path / "f.h5.partial").with_suffix("")
    result = _extract(sixteen_bit_folder, out, how)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"its rows were decoded under {named}" in result.output
    assert "now decode under rule 'featlt-decode-2' (provenance key 'data.decode'" in result.output
    assert "pass --overwrite to extract it again" in result.output
    assert _extract(sixteen_bit_folder, out, "--overwrite").exit_code == 0
