"""Minor cases of `featlt extract`: decompression bombs and sizes that cannot fit in memory.

Each is refused with a message naming the input, the problem and the fix (exit 2, no
traceback), or with --skip-bad recorded as an unreadable image.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featlt.cli import main
from featlt.data.decode import DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, decode_image
from featlt.errors import FeatltError
from featlt.extract import decode_loader
from featlt.extract.decode_loader import ACTIVATION_FACTOR, batch_memory, check_batch_memory
from featlt.store.feature_store import FeatureStore


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels but whose data holds one row:
    Pillow reads the size from the header without decoding anything, like a real bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/a: eight 8x8 PNGs (the run's first images, which the forward check decodes in the
    main process); train/b: two 8x8 PNGs and, last (train position 10), b/z.png, 20x20 or a
    declared bomb; test/a, test/b: one 8x8 PNG each."""
    rng = np.random.default_rng(0)
    for part, name, count in (("train", "a", 8), ("train", "b", 2), ("test", "a", 1),
                              ("test", "b", 1)):
        (tmp_path / "imgs" / part / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / part / name / f"{i}.png")
    return tmp_path / "imgs"


# (id, what train/b/z.png is, $FEATLT_MAX_IMAGE_PIXELS, extra options, host memory available
# (None: this machine's), exit code, message parts)
CASES = [
    ("bomb-declared-in-header", "bomb", None, [], None, 2,
     ["b/z.png: declares more pixels than featlt decodes (",
      f"400000000 pixels; the limit is {DEFAULT_MAX_IMAGE_PIXELS}), a possible decompression "
      f"bomb; downscale the image, or if you trust the file raise the limit with "
      f"{MAX_PIXELS_ENV}=N"]),
    # decoded by a DataLoader worker process: the limit reaches it through the environment
    ("limit-lowered-in-a-worker", "20x20", "100", ["--workers", "1"], None, 2,
     ["b/z.png: declares more pixels than featlt decodes (20 x 20 = 400 pixels; the limit is "
      "100)"]),
    ("bomb-skipped-with-skip-bad", "bomb", None, ["--skip-bad"], None, 0, ["train  10 rows"]),
    ("limit-not-a-number", "20x20", "lots", [], None, 2,
     [f"{MAX_PIXELS_ENV}='lots': not a positive number of pixels; unset it or pass e.g."]),
    ("resolution-beyond-the-bound", "20x20", None, ["--resolution", "100000"], None, 2,
     ["Invalid value for '--resolution': 100000 is not in the range 1<=x<=4096"]),
    # a batch holds at most the split's 11 rows: 11 x 3 x 512 x 512 x 4 bytes = 33 MiB,
    # x (1 + 4) for the forward plus one queued batch: 198 MiB > 128 MiB
    ("batch-beyond-memory", "20x20", None,
     ["--model", "test-efficientnet-random", "--resolution", "512", "--batch-size", "64"],
     2**27, 2,
     ["a batch of 11 images at 512x512 px (--batch-size, --resolution; --views 0, 0 workers) "
      "needs at least 198.0 MiB of this machine's memory, but 128.0 MiB is available (forward "
      "pass 165.0 MiB: the float32 batch 33.0 MiB and at least 4x it in activations; decoded "
      "batches queued: 33.0 MiB); pass --batch-size 7 or less, or a smaller --resolution"]),
]


@pytest.mark.parametrize(("z", "limit", "extra", "memory", "code", "parts"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_minor_case(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, z: str,
                    limit: str | None, extra: list[str], memory: int | None, code: int,
                    parts: list[str]) -> None:
    z_file = folder / "train" / "b" / "z.png"
    if z == "bomb":
        z_file.write_bytes(declared_png(20000, 20000))
    else:
        Image.new("RGB", (20, 20), (9, 9, 9)).save(z_file)
    if limit is None:
        monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    else:
        monkeypatch.setenv(MAX_PIXELS_ENV, limit)
    if memory is not None:  # the check runs in the main process, before any decode at size
        monkeypatch.setattr(decode_loader, "available_memory",
                            lambda device: {"host": memory, "device": None})
    out = tmp_path / "out.h5"
    options = [*([] if "--model" in extra else ["--model", "pixels_8"]),
               *([] if "--workers" in extra else ["--workers", "0"]), *extra]
    result = CliRunner().invoke(main, ["extract", "--data", f"folder:{folder}", "--splits",
                                       "train", "--batch-size", "2", "--threads", "1", "-o",
                                       str(out), *options])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for part in parts:
        assert part in result.output
    if code == 0:  # --skip-bad: the bomb (train position 10, the last) is recorded as skipped
        with FeatureStore(out) as store:
            assert store.read("train").shape[0] == 10 and store.info("train").n_skipped == 1
            assert store.source_index("train").tolist() == list(range(10))
        with h5py.File(out, "r") as file:
            assert file["train/skipped"][:].tolist() == [10]


def test_pillows_warning_band_below_featlts_limit_decodes_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image above Pillow's MAX_IMAGE_PIXELS (its DecompressionBombWarning) but within
    featlt's limit decodes without a warning; above the limit it is refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    file = tmp_path / "big.png"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(file)  # 900 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(file, "big").size == (30, 30)
    monkeypatch.setenv(MAX_PIXELS_ENV, "899")
    with pytest.raises(FeatltError, match=r"big: declares more pixels than featlt decodes "
                                          r"\(30 x 30 = 900 pixels; the limit is 899\)"):
        decode_image(file, "big")


def test_batch_memory_estimate_and_its_fix() -> None:
    """The estimate's arithmetic, and the fix it names for a given amount of memory."""
    pixels = 3 * 224 * 224
    cpu = batch_memory(64, (3, 224, 224), n_views=2, workers=3, device="cpu")
    assert cpu.forward == 64 * pixels * 4 * (1 + ACTIVATION_FACTOR)
    assert cpu.queued == 3 * 2 * 64 * 3 * pixels * 4  # 3 workers x 2 batches x (1 + 2 views)
    assert (cpu.host, cpu.device) == (cpu.queued + cpu.forward, 0)
    gpu = batch_memory(64, (3, 224, 224), n_views=0, workers=15, device="cuda", amp=True)
    assert gpu.device == 64 * pixels * 4 * (1 + ACTIVATION_FACTOR / 2)
    assert gpu.host == 15 * 2 * 64 * pixels  # uint8 batches for the GPU
    one = batch_memory(1, (3, 224, 224), 0, 0, "cpu").host
    with pytest.raises(FeatltError, match=r"pass --batch-size 10 or less"):
        check_batch_memory(64, (3, 224, 224), 0, 0, "cpu",
                           available={"host": 10 * one + 1, "device": None})
    assert check_batch_memory(10, (3, 224, 224), 0, 0, "cpu",
                              available={"host": 10 * one, "device": None}).host == 10 * one
    with pytest.raises(FeatltError, match=r"even --batch-size 1 needs .*; pass --resolution 112 "
                                          r"or less"):
        check_batch_memory(8, (3, 224, 224), 0, 0, "cpu",
                           available={"host": one // 4, "device": None})
    with pytest.raises(FeatltError, match=r"cuda free memory, but"):
        check_batch_memory(64, (3, 224, 224), 0, 2, "cuda", available={"host": 2**40,
                                                                       "device": 2**20})
    with pytest.raises(FeatltError, match=r"input is 5000x5000 px, above 4096"):
        check_batch_memory(1, (3, 5000, 5000), 0, 0, "cpu", available={"host": 2**60})
