"""The one image decode of featlt: encoded files and numpy arrays -> 8-bit RGB PIL images.

Every source (``folder``, ``split-list``, ``jpeg-npz``, the array formats) and ``featlt predict
--images`` decode through :func:`decode_image` (an encoded file) or :func:`array_to_rgb` (a
numpy array); both end in the same value rules. The rule has a name, :data:`DECODE_RULE`,
recorded in every feature store's provenance as ``data.decode`` (:func:`decode_record`), so a
store written under another rule is never resumed or kept as if it were the same.

Rule ``featlt-decode-2`` (docs/data-formats.md, "Decoding"):

- **Size**: an image of more than :func:`max_image_pixels` pixels (``FEATLT_MAX_IMAGE_PIXELS``,
  default 178,956,970, where Pillow's DecompressionBombError starts) is refused from its header,
  before any pixel is decoded; below it (Pillow's DecompressionBombWarning band, 89-179
  megapixels: real 100-megapixel photos) images decode without a warning.
- **Orientation**: the EXIF orientation tag (1-8) is applied, with the transposition table of
  ``PIL.ImageOps.exif_transpose``, so the image is upright as a viewer shows it.
- **Integers wider than 8 bits** keep their high byte: an unsigned B-bit value v becomes
  ``v >> (B - 8)`` (16-bit: ``v >> 8``, i.e. ``floor(v / 256)``). This is what Pillow itself
  does to 48-bit RGB and 64-bit RGBA files, so 16-bit grey and 16-bit colour files follow one
  rule; it maps 0 to 0 and 65535 to 255 and inverts the usual 8 -> 16 bit expansion
  (``v * 257``) exactly. Signed integers have no black or white level and are refused.
- **Floats** (TIFF mode ``F``, float arrays) must lie in [0, 1] and become ``round(255 v)``;
  anything else is refused with the fix.
- **Alpha** (RGBA, LA, PA, premultiplied modes, palette or grey or RGB transparency keys) is
  composited on white: ``round((c a + 255 (255 - a)) / 255)``.
- **Everything else** goes through Pillow's ``convert("RGB")``: grey and 1-bit replicated,
  palettes looked up, CMYK as ``(255 - C)(255 - K) / 255`` per channel (no ICC profile applied).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# imported once here, not in each function: every image passes through them (~150-190 us per
# CIFAR JPEG on this machine)
from PIL import Image, UnidentifiedImageError

from featlt.errors import FeatltError

DECODE_RULE = "featlt-decode-2"
DECODE_SUMMARY = (
    "EXIF orientation applied; unsigned B-bit integers keep the high byte (16-bit: v >> 8); "
    "signed integers refused; float in [0, 1] -> round(255 v); alpha composited on white; "
    "CMYK, palette and grey by Pillow's convert('RGB'); bombs over the pixel limit refused"
)
MAX_PIXELS_ENV = "FEATLT_MAX_IMAGE_PIXELS"
# Pillow raises DecompressionBombError above twice its Image.MAX_IMAGE_PIXELS (89,478,485).
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485
EXIF_ORIENTATION = 0x0112
# ImageOps.exif_transpose's table: EXIF orientation -> the Image.Transpose that makes it upright.
_TRANSPOSE_NAMES = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                    6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
# Formats whose 32-bit integer mode "I" holds 16-bit data: PNG (grey up to 16 bits; older
# Pillow opens it as "I") and PGM/PPM (Pillow scales any maxval to 0..65535).
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "PPM"})


def decode_record() -> dict[str, str]:
    """The decode rule for a store's provenance (``data.decode``)."""
    return {"rule": DECODE_RULE, "summary": DECODE_SUMMARY}


def max_image_pixels() -> int:
    """The most pixels (width x height) an image may declare: ``$FEATLT_MAX_IMAGE_PIXELS``, else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`. Read at every decode, so DataLoader workers see the value
    their parent process had."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise FeatltError(
            f"{MAX_PIXELS_ENV}={value!r}: not a positive number of pixels; unset it or pass e.g. "
            f"{MAX_PIXELS_ENV}=400000000"
        )
    return limit


def decode_image(data: str | Path | BinaryIO, what: str) -> Any:
    """Decode an encoded image (a path or a binary file object) into an 8-bit RGB PIL image.

    Args:
        data: the file, or its bytes as a file object (e.g. ``io.BytesIO``).
        what: names the image in error messages (dataset and file or item).
    Returns:
        an RGB ``PIL.Image.Image`` of (W, H) = the upright image's size, by rule
        :data:`DECODE_RULE`.
    Raises:
        FeatltError: naming ``what`` when the image is missing, cannot be decoded, declares more
            pixels than :func:`max_image_pixels`, or holds values the rule refuses.
    """
    limit = max_image_pixels()
    _pillow_limit_at_least(limit)
    try:
        with Image.open(data) as image:
            _check_pixels(image.size, limit, what)
            image.load()  # decode errors surface here, inside the handlers below
            return to_rgb(image, what)
    except FileNotFoundError as err:
        raise FeatltError(
            f"{what}: not found ({err}); restore it or re-create the dataset"
        ) from err
    except Image.DecompressionBombError as err:  # above twice featlt's limit: Pillow's check
        size = re.search(r"\((\d+) pixels\)", str(err))
        detail = f"{size.group(1)} pixels" if size else str(err)
        raise FeatltError(_bomb_message(what, detail, limit)) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise FeatltError(
            f"{what}: cannot be decoded as an image ({err}); replace or remove the file"
        ) from err


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG's header says, for a decoder that is not Pillow (:func:`jpeg_header`)."""

    width: int  # as stored, before the orientation is applied
    height: int
    orientation: int  # EXIF orientation 1..8 (1: upright)


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The header of an 8-bit colour or grey JPEG that another decoder may decode under this
    rule, read without decoding a pixel; None for anything else (other formats, CMYK/YCCK
    JPEGs, images over :func:`max_image_pixels`, unreadable headers), which
    :func:`decode_image` then decodes, or refuses with its message.

    Under :data:`DECODE_RULE` such a JPEG's pixels are the decoder's RGB output (grey
    replicated to three channels) transposed by the EXIF orientation; a decoder other than
    Pillow's libjpeg-turbo (nvJPEG on a GPU) may differ in its IDCT and chroma upsampling by a
    few levels (docs/scaling.md measures it).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                return None
            width, height = image.size
            if width * height > max_image_pixels():
                return None
            return JpegHeader(int(width), int(height), _orientation(image))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError, FeatltError):
        return None


def orientation_steps(orientation: int) -> tuple[str, ...]:
    """The array operations that make an image of EXIF ``orientation`` upright, the same as
    Pillow's transposition table: names among ``flip_w`` (mirror left-right), ``flip_h``
    (mirror top-bottom) and ``swap`` (exchange the two image axes), applied in order to an
    array of (..., H, W) layout."""
    return _ORIENTATION_STEPS.get(orientation, ())


# Pillow's transpositions as array operations on (..., H, W): TRANSPOSE swaps the axes,
# ROTATE_90 (counter-clockwise) is swap then flip_h, ROTATE_270 swap then flip_w, TRANSVERSE
# swap then both flips.
_ORIENTATION_STEPS = {2: ("flip_w",), 3: ("flip_h", "flip_w"), 4: ("flip_h",), 5: ("swap",),
                      6: ("swap", "flip_w"), 7: ("swap", "flip_h", "flip_w"),
                      8: ("swap", "flip_h")}


def to_rgb(image: Any, what: str) -> Any:
    """An opened, loaded PIL image of any mode -> a new upright 8-bit RGB PIL image.

    The value rules are :data:`DECODE_RULE`'s (module docstring); ``image.format`` and its TIFF
    tags decide the bit depth of mode ``I``, so pass the image as Pillow opened it.
    """
    orientation = _orientation(image)
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        rgb = _grey_to_rgb(high_byte(np.asarray(image), 16, what))
    elif mode == "I":
        rgb = _grey_to_rgb(_int32_to_uint8(image, what))
    elif mode == "F":
        rgb = _grey_to_rgb(unit_float_to_uint8(np.asarray(image), what))
    elif mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        straight = image.convert("LA") if mode == "La" else image  # Pillow has no La -> RGBA
        rgb = composite_on_white(np.asarray(straight.convert("RGBA")))
    elif mode == "RGB":
        rgb = image.copy()
    else:  # 1, L, P, CMYK, YCbCr, RGBX, HSV, ...
        rgb = image.convert("RGB")
    if not isinstance(rgb, Image.Image):
        rgb = Image.fromarray(rgb, "RGB")
    if orientation in _TRANSPOSE_NAMES:
        # Image.Transpose from Pillow 9.1; the same names are Image attributes before it
        methods = getattr(Image, "Transpose", Image)
        rgb = rgb.transpose(getattr(methods, _TRANSPOSE_NAMES[orientation]))
    return rgb


def array_to_rgb(pixels: np.ndarray, what: str) -> Any:
    """One image array to an 8-bit RGB ``PIL.Image.Image``, by :data:`DECODE_RULE`'s values.

    - shape (H, W) or (H, W, 1): grayscale, replicated to 3 channels; (H, W, 3): RGB.
    - dtype uint8: 0..255 as is; uint16: 0..65535, high byte (``v >> 8``); float: [0, 1],
      ``round(255 v)``. Other dtypes and float ranges are refused with a hint.

    Args:
        pixels: (H, W), (H, W, 1) or (H, W, 3) uint8, uint16 or float.
        what: names the item in error messages.
    """
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise FeatltError(
            f"{what}: image array of shape {pixels.shape} is not (H, W), (H, W, 1) or (H, W, 3); "
            "store images channels-last"
        )
    if pixels.dtype == np.uint16:
        pixels = high_byte(pixels, 16, what)
    elif np.issubdtype(pixels.dtype, np.floating):
        pixels = unit_float_to_uint8(pixels, what)
    elif pixels.dtype != np.uint8:
        raise FeatltError(
            f"{what}: image dtype {pixels.dtype} is neither uint8 (0..255), uint16 (0..65535) "
            "nor float (0..1); convert the array to one of them"
        )
    if pixels.ndim == 2:
        return _grey_to_rgb(pixels)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def high_byte(values: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Unsigned ``bits``-bit integers -> uint8 by their high byte, ``v >> (bits - 8)``.

    Args:
        values: (H, W) or (H, W, 3) integers in 0..2**bits - 1 (any integer dtype).
        bits: the declared bit depth, 8..32.
    Returns:
        uint8 array of the same shape.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize * 8 <= bits:  # in range by its type
        return (values >> (bits - 8)).astype(np.uint8)
    wide = values.astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() >= 2**bits):
        raise FeatltError(
            f"{what}: {bits}-bit pixels span {wide.min()}..{wide.max()}, outside "
            f"0..{2**bits - 1}; save the image as unsigned {bits}-bit (or 8-bit) data"
        )
    return (wide >> (bits - 8)).astype(np.uint8)


def unit_float_to_uint8(values: np.ndarray, what: str) -> np.ndarray:
    """Floats in [0, 1] -> uint8 ``round(255 v)``; NaN, inf and values outside are refused.

    Args:
        values: (H, W) or (H, W, 3) floating point.
    Returns:
        uint8 array of the same shape.
    """
    if values.size:
        low, high = float(np.min(values)), float(np.max(values))
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > 1.0:
            raise FeatltError(
                f"{what}: float pixels span [{low:g}, {high:g}] but must lie in [0, 1]; "
                "divide 0..255 data by 255, rescale the image to [0, 1] (or store it as uint8)"
            )
    return np.round(values.astype(np.float64) * 255.0).astype(np.uint8)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight-alpha RGBA -> (H, W, 3) uint8 composited on white.

    ``round((c a + 255 (255 - a)) / 255)`` per channel, exact in integers (no value lies half
    way: 255 is odd).
    """
    colour = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:].astype(np.uint32)
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Any:
    """(H, W) uint8 -> RGB PIL image of three equal channels."""
    return Image.fromarray(np.ascontiguousarray(grey), "L").convert("RGB")


def _int32_to_uint8(image: Any, what: str) -> np.ndarray:
    """Mode ``I`` (Pillow's int32) -> (H, W) uint8 by the bit depth the file declares."""
    values = np.asarray(image)
    fmt = image.format or "unknown"
    if fmt in _SIXTEEN_BIT_FORMATS:
        return high_byte(values, 16, what)
    if fmt != "TIFF":
        raise FeatltError(
            f"{what}: 32-bit integer pixels (mode I, format {fmt}) have no declared range; "
            "save the image as 8- or 16-bit PNG/TIFF, or as float TIFF in [0, 1]"
        )
    bits = int(_first(image.tag_v2.get(258), 32))
    signed = int(_first(image.tag_v2.get(339), 1)) == 2
    if signed:
        raise FeatltError(
            f"{what}: signed {bits}-bit integer pixels have no black or white level; save the "
            "image as unsigned 8/16-bit or as float in [0, 1]"
        )
    if bits == 32:  # Pillow holds unsigned 32-bit samples in int32: read the bits back
        values = values.astype(np.int32).view(np.uint32)
    return high_byte(values, max(bits, 8), what)


def _first(value: Any, default: int) -> Any:
    """A TIFF tag's first value (tags with one value per sample are tuples)."""
    if value is None:
        return default
    return value[0] if isinstance(value, tuple) else value


def _orientation(image: Any) -> int:
    """The image's EXIF orientation (1 = upright, 2..8 = flips and rotations); 1 when unread."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
        return int(value)
    except Exception:  # a malformed EXIF block is no reason to refuse the pixels
        return 1


def _check_pixels(size: tuple[int, int], limit: int, what: str) -> None:
    width, height = size
    if width * height > limit:
        raise FeatltError(_bomb_message(what, f"{width} x {height} = {width * height} pixels",
                                        limit))


def _bomb_message(what: str, detail: str, limit: int) -> str:
    return (
        f"{what}: declares more pixels than featlt decodes ({detail}; the limit is {limit}), a "
        "possible decompression bomb; downscale the image, or if you trust the file raise the "
        f"limit with {MAX_PIXELS_ENV}=N (with --skip-bad it is left out)"
    )


def _pillow_limit_at_least(limit: int) -> None:
    """Raise Pillow's ``Image.MAX_IMAGE_PIXELS`` to featlt's ``limit``, so Pillow neither warns
    (above 1x its value) nor fails (above 2x) on an image featlt accepts: featlt's own check
    (:func:`_check_pixels`) is the one that decides. Only ever raised, so concurrent decodes
    agree; a higher value set by the caller is kept."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < limit:
        Image.MAX_IMAGE_PIXELS = limit
