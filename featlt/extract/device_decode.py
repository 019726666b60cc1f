"""JPEG decoding on the forward's device: encoded bytes in, a uint8 batch of the input size out.

On CUDA the decode workers are the limit of an extraction (an H100 forwards EfficientNet-Lite0 at
160 px ten times faster than 15 CPU workers decode CIFAR JPEGs: results/gpu_extract.json). With
the device path the workers only read each image's bytes and its header
(:func:`featlt.data.decode.jpeg_header`); the main process decodes a batch at once with
``torchvision.io.decode_jpeg(..., device=...)`` (nvJPEG on CUDA, libjpeg-turbo on CPU), applies
the EXIF orientation, resizes and centre-crops each image there, and the batch is normalised on
the device like every CUDA batch (:mod:`featlt.extract.batch_normalize`). The same code runs on
CPU tensors (``--decode device`` on a CPU run), which is how the tests check it.

The CPU path stays the fallback, per image: what is not an 8-bit colour or grey JPEG (other
formats, CMYK JPEGs, oversized images) is decoded and transformed by the decode workers as on a
CPU run, and a JPEG the device decoder refuses is decoded in the main process by
:func:`featlt.data.decode.decode_image`, so a corrupt image fails (or, under ``--skip-bad``, was
left out beforehand) exactly as on CPU.

What differs from the CPU path: the decoder (nvJPEG's IDCT and chroma upsampling on CUDA, not
Pillow's libjpeg-turbo; on CPU torchvision's libjpeg-turbo gives Pillow's pixels exactly) and the
resize (``torch.nn.functional.interpolate`` in float32 passes rounded like Pillow's fixed-point
ones): on CPU pixels within 1 level of the CPU path's, features within the tolerance
docs/scaling.md states.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featlt.data.decode import jpeg_header, orientation_steps
from featlt.errors import FeatltError

DECODE_PATHS = ("auto", "cpu", "device")
# torchvision.transforms.InterpolationMode value -> torch.nn.functional.interpolate mode
_MODES = {"bicubic": "bicubic", "bilinear": "bilinear"}


@dataclass(frozen=True)
class DeviceTransform:
    """timm's eval transform as tensor steps: resize the shorter side to ``size`` (or to
    ``(h, w)``), then centre-crop ``crop`` (h, w)."""

    size: int | tuple[int, int]
    mode: str  # interpolate mode: bicubic | bilinear
    crop: tuple[int, int]

    def describe(self) -> str:
        return (f"torch interpolate {self.mode} antialias to {self.size}, width then height, "
                f"each pass rounded to uint8 (Pillow's order), centre crop "
                f"{self.crop[0]}x{self.crop[1]}")


def plan_device_transform(transform: Any) -> DeviceTransform | None:
    """The :class:`DeviceTransform` of a torchvision ``Compose`` of ``Resize``, ``CenterCrop``,
    ``ToTensor``, ``Normalize`` (timm's eval transform); None for any other transform (the CPU
    path then decodes)."""
    from torchvision import transforms

    steps = list(getattr(transform, "transforms", []))
    if len(steps) != 4 or not isinstance(steps[0], transforms.Resize) or \
            type(steps[1]) is not transforms.CenterCrop:
        return None
    resize, crop = steps[0], steps[1]
    mode = _MODES.get(getattr(resize.interpolation, "value", str(resize.interpolation)))
    if mode is None or resize.max_size is not None or resize.antialias is False:
        return None
    size = resize.size
    if isinstance(size, (list, tuple)):
        size = int(size[0]) if len(size) == 1 else (int(size[0]), int(size[1]))
    return DeviceTransform(size, mode, (int(crop.size[0]), int(crop.size[1])))


@dataclass(frozen=True)
class Encoded:
    """A JPEG for the device decoder: its bytes ((n,) uint8 tensor) and EXIF orientation."""

    data: Any
    orientation: int


class EncodedImages:
    """Map-style dataset of one split's rows for the device path: item j -> (payload, position,
    error).

    ``payload``: an :class:`Encoded` JPEG, or for anything else the (3, H, W) uint8 tensor of
    the CPU transform (``cpu_transform`` of the decoded image); ``error``: None, or the message
    of an unreadable image.
    """

    def __init__(self, source: Any, split: str, rows: Any, cpu_transform: Callable[[Any], Any]):
        self.source, self.split, self.rows, self.cpu_transform = source, split, rows, cpu_transform

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, j: int) -> tuple[Any, int, str | None]:
        import torch

        index = int(self.rows[j])
        data = self.source.load_encoded(self.split, index)
        header = None if data is None else jpeg_header(data)
        if header is not None:
            payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return Encoded(payload, header.orientation), index, None
        try:
            return self.cpu_transform(self.source.load_image(self.split, index)), index, None
        except FeatltError as err:
            return None, index, str(err)


def collate_encoded(items: list[tuple[Any, int, str | None]]) -> tuple[Any, None, str | None]:
    """A batch of :class:`EncodedImages` items as (list of (payload, position), None, error):
    the first error of the batch instead, as in :class:`featlt.extract.decode_loader.Collate`."""
    for _, _, error in items:
        if error is not None:
            return None, None, error
    return [(payload, index) for payload, index, _ in items], None, None


class DeviceDecoder:
    """Decode a batch of :func:`collate_encoded` items on ``device`` into (B, 3, h, w) uint8.

    Args:
        transform: the tensor steps (:func:`plan_device_transform`).
        device: ``cuda`` (nvJPEG) or ``cpu`` (libjpeg-turbo; the same code, for tests).
        fallback: position -> (3, h, w) uint8 tensor by the CPU path, for a JPEG the device
            decoder refuses (raises the CPU path's error for a corrupt image).
    """

    def __init__(self, transform: DeviceTransform, device: str,
                 fallback: Callable[[int], Any]):
        self.transform, self.device, self.fallback = transform, device, fallback
        self.fallbacks = 0  # JPEGs the device decoder refused and the CPU path decoded

    def __call__(self, items: list[tuple[Any, int]]) -> Any:
        import torch

        out: list[Any] = [None] * len(items)
        jpegs = [(k, payload, index) for k, (payload, index) in enumerate(items)
                 if isinstance(payload, Encoded)]
        for k, (payload, _) in enumerate(items):
            if not isinstance(payload, Encoded):
                out[k] = payload.to(self.device)
        decoded = self._decode([payload.data for _, payload, _ in jpegs])
        for (k, payload, index), pixels in zip(jpegs, decoded, strict=True):
            if pixels is None:
                self.fallbacks += 1
                out[k] = self.fallback(index).to(self.device)
            else:
                out[k] = self._resize_crop(upright(pixels, payload.orientation))
        return torch.stack(out)

    def _decode(self, data: list[Any]) -> list[Any]:
        """(3, H, W) uint8 tensors on the device, None where one cannot be decoded: the batch at
        once, image by image when the batch fails (nvJPEG refuses a batch for one bad image)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        if not data:
            return []
        with warnings.catch_warnings():  # torchvision 0.29 marks its image codecs deprecated
            warnings.simplefilter("ignore")
            try:
                return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                pass
            out = []
            for one in data:
                try:
                    out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    out.append(None)
            return out

    def _resize_crop(self, pixels: Any) -> Any:
        """(3, H, W) uint8 -> (3, h, w) uint8: resized to torchvision ``Resize``'s size, then
        centre-cropped.

        The resize is Pillow's, on tensors: antialiased (bicubic a = -0.5 or bilinear), width
        first, then height, each pass rounded half up to uint8 as Pillow's separable passes are
        (in one float pass the pixels differed from Pillow's by 0.20 levels on average; in two,
        by 6e-5, at most 1 level: 100 CIFAR-10 JPEGs at 160 px).
        """
        import torch
        from torchvision.transforms.functional import center_crop

        height, width = int(pixels.shape[1]), int(pixels.shape[2])
        new_height, new_width = resized_size(height, width, self.transform.size)
        x = pixels.unsqueeze(0).to(torch.float32)
        for size in ((height, new_width), (new_height, new_width)):
            if tuple(x.shape[2:]) != size:
                x = torch.nn.functional.interpolate(x, size=size, mode=self.transform.mode,
                                                    antialias=True, align_corners=False)
                x = x.add_(0.5).floor_().clamp_(0, 255)
        return center_crop(x.to(torch.uint8)[0], list(self.transform.crop))


def resized_size(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """(h, w) after torchvision's ``Resize(size)``: an int sets the shorter side (the longer
    one truncated to keep the aspect ratio), a pair is the size itself."""
    if isinstance(size, tuple):
        return size
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def upright(pixels: Any, orientation: int) -> Any:
    """(C, H, W) -> the image upright for EXIF ``orientation`` (rule featlt-decode-2: the
    transpositions of Pillow's table, :func:`featlt.data.decode.orientation_steps`)."""
    for step in orientation_steps(orientation):
        if step == "swap":
            pixels = pixels.transpose(-1, -2)
        else:
            pixels = pixels.flip(-1 if step == "flip_w" else -2)
    return pixels.contiguous()


def choose_decode_path(requested: str, device: str, source: Any, first: tuple[str, int] | None,
                       transform: Any, n_views: int) -> tuple[DeviceTransform | None,
                                                              dict[str, Any]]:
    """The decode path of a run and its provenance record (``decode_path``).

    ``auto``: the device path on CUDA when the source holds encoded files (``first`` is probed)
    and the eval transform is a plain resize and crop, without ``--views``; else the CPU path.
    ``device`` insists (refused where it cannot run), ``cpu`` never uses it. The record says
    which path decoded (not why), so ``auto`` and an explicit choice of the same path resume
    each other.

    Args:
        first: (split, position) of the run's first image, or None when there is none.
    Returns:
        (the tensor steps, or None for the CPU path; the record).
    """
    if requested not in DECODE_PATHS:
        raise FeatltError(f"--decode {requested}: unknown; choose one of "
                          f"{', '.join(DECODE_PATHS)}")
    cpu = {"path": "cpu", "decoder": "Pillow (libjpeg-turbo) in the decode workers",
           "resize": "the eval transform on PIL images"}
    if requested == "cpu":
        return None, cpu
    plan = plan_device_transform(transform)
    encoded = first is not None and source.load_encoded(*first) is not None
    why_not = ("--views augments PIL images on the CPU" if n_views else
               "the eval transform is not a plain resize and centre crop" if plan is None else
               f"dataset {source.uri} holds decoded pixels, not encoded files" if not encoded
               else None)
    if requested == "auto" and (device != "cuda" or why_not):
        return None, cpu
    if why_not:
        raise FeatltError(f"--decode device: not possible here ({why_not}); pass --decode auto "
                          "or cpu")
    assert plan is not None
    return plan, {
        "path": "device", "device": device,
        "decoder": f"torchvision.io.decode_jpeg on {device} (batched"
                   + (", nvJPEG)" if device == "cuda" else ", libjpeg-turbo)"),
        "resize": plan.describe(),
        "fallback": "non-JPEG, CMYK and oversized images and JPEGs the device decoder refuses "
                    "go through the CPU path",
    }
