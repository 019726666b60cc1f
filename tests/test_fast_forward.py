"""Forward-path selection: the rule, each path against eager, fallbacks, provenance."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from featlt.errors import FeatltError
from featlt.extractors.fast_forward import (
    AMP_TOLERANCE,
    COMPILE_MIN_IMAGES,
    TOLERANCE,
    _amp_failure,
    choose_forward_path,
    prepare_forward,
    relative_error,
)

# Inductor with a cold cache takes 50-90 s for a tiny model on 2 busy cores (11-20 s warm), too
# long for every run: the real-compiler test runs when FEATLT_TEST_COMPILE=1. Every real run
# checks its compiled forward against eager anyway (prepare_forward), and the padding / fallback
# logic is tested below with dynamo's eager backend.
RUN_INDUCTOR = os.environ.get("FEATLT_TEST_COMPILE") == "1"
COMPILE_BUDGET_S = 300


@pytest.fixture(scope="module")
def tiny():
    """timm's test_efficientnet (random init) and a (6, 3, 48, 48) batch with its eager features."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    x = torch.randn(6, 3, 48, 48)
    with torch.inference_mode():
        reference = model(x)
    return model, x, reference


def test_auto_rule():
    small = choose_forward_path("auto", "cpu", n_images=COMPILE_MIN_IMAGES - 1)
    assert (small.name, small.channels_last, small.folded, small.compiled) == (
        "folded", True, True, False)
    large = choose_forward_path("auto", "cpu", n_images=COMPILE_MIN_IMAGES)
    assert (large.name, large.folded, large.compiled) == ("compile", True, True)
    assert choose_forward_path("auto", "cpu").name == "folded"  # unknown size: no compile
    cuda = choose_forward_path("auto", "cuda", n_images=10**6)
    assert (cuda.name, cuda.folded, cuda.compiled) == ("channels_last", False, False)
    eager = choose_forward_path("eager", "cpu", n_images=10**6)
    assert (eager.channels_last, eager.folded, eager.compiled, eager.reason) == (
        False, False, False, "requested")
    with pytest.raises(FeatltError, match="unknown; choose one of auto, eager"):
        choose_forward_path("fastest", "cpu")
    with pytest.raises(FeatltError, match="AMP: used on CUDA only"):
        choose_forward_path("auto", "cpu", amp_dtype="float16")
    with pytest.raises(FeatltError, match="--amp-dtype half: unknown; choose one of float16"):
        choose_forward_path("auto", "cuda", amp_dtype="half")


def test_overflow_is_an_infinite_error_and_amp_failures_name_the_fix():
    reference = torch.ones(2, 3)
    assert relative_error(torch.tensor([[1.0, float("inf"), 1.0]] * 2), reference) == float("inf")
    assert relative_error(torch.tensor([[1.0, float("nan"), 1.0]] * 2), reference) == float("inf")
    path = choose_forward_path("channels_last", "cpu")
    fp16 = _amp_failure(dataclasses.replace(path, amp_dtype="float16"), float("inf"), 0.03)
    assert "float16 autocast overflowed" in fp16 and "--amp-dtype bfloat16 or --no-amp" in fp16
    bf16 = _amp_failure(dataclasses.replace(path, amp_dtype="bfloat16"), 0.5, 0.2)
    assert "differ from float32 by 0.5" in bf16 and "--amp-dtype float16 or --no-amp" in bf16


@pytest.mark.parametrize("requested", ["eager", "channels_last", "folded", "auto"])
def test_paths_match_eager(tiny, requested):
    model, x, reference = tiny
    fn, record = prepare_forward(model, x, "cpu", requested, n_images=100)
    out = fn(x[:5])  # a short last batch
    assert out.dtype == torch.float32 and out.shape == (5, reference.shape[1])
    assert relative_error(out, reference[:5]) <= TOLERANCE
    assert record["name"] == ("folded" if requested == "auto" else requested)
    assert record["check"]["max_relative_error"] <= TOLERANCE
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert record["folded_batchnorms"] == (n_norms if record["folded"] else 0)
    json.dumps(record)


class _Pair(nn.Module):
    """(features, logits) like a backbone with its classifier kept."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        features = self.conv(x).mean((2, 3))
        return features, self.fc(features)


def test_compile_pads_short_batches(monkeypatch):
    """The compiled path (dynamo with its eager backend here, fast) pads and slices batches."""
    torch.manual_seed(0)
    model = _Pair().eval()
    x = torch.randn(4, 3, 10, 10)
    with torch.inference_mode():
        reference = model(x)
    calls = []
    original = torch.compile

    def compile_spy(module, **kwargs):
        calls.append(kwargs)
        return original(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_spy)
    fn, record = prepare_forward(model, x, "cpu", "compile", batch_size=4)
    assert record["compiled"] and calls == [{"dynamic": False}]
    features, logits = fn(x[:3])
    assert features.shape == (3, 4) and logits.shape == (3, 3)
    assert relative_error((features, logits), tuple(t[:3] for t in reference)) <= TOLERANCE


def test_failed_compile_falls_back_only_under_auto(tiny, monkeypatch):
    model, x, _ = tiny

    def broken_compile(module, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken_compile)
    _, record = prepare_forward(model, x, "cpu", "auto", n_images=COMPILE_MIN_IMAGES)
    assert record["name"] == "folded" and "compilation failed" in record["reason"]
    with pytest.raises(FeatltError, match=r"forward path 'compile' failed.*no C\+\+ compiler"):
        prepare_forward(model, x, "cpu", "compile")


class _LayoutSensitive(nn.Module):
    """A model whose output depends on the input's memory layout (a broken fast path)."""

    def forward(self, x):
        flag = float(x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1)
        return x.mean((2, 3)) + flag


def test_mismatching_path_falls_back_to_eager():
    x = torch.rand(2, 3, 4, 4)
    fn, record = prepare_forward(_LayoutSensitive(), x, "cpu", "auto")  # folded, channels_last
    assert record["name"] == "eager" and "channels_last differed from eager" in record["reason"]
    assert relative_error(fn(x), x.mean((2, 3))) == 0.0
    with pytest.raises(FeatltError, match=r"differ from eager by .* use --forward-path eager"):
        prepare_forward(_LayoutSensitive(), x, "cpu", "channels_last")


_COMPILE_SCRIPT = textwrap.dedent("""
    import json, torch, timm
    from featlt.extractors.fast_forward import prepare_forward, relative_error
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        reference = model(x)
    fn, record = prepare_forward(model, x, "cpu", "compile")
    short = relative_error(fn(x[:3]), reference[:3])
    print(json.dumps({"record": record, "short": short}))
""")


@pytest.mark.slow
@pytest.mark.skipif(not RUN_INDUCTOR, reason="set FEATLT_TEST_COMPILE=1 (takes 1-2 min cold)")
def test_inductor_compile_matches_eager():
    """Real torch.compile (inductor) on a tiny timm model, in a fresh process."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE_SCRIPT], capture_output=True, text=True,
            timeout=COMPILE_BUDGET_S, check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"torch.compile took over {COMPILE_BUDGET_S} s on this machine")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["record"]["compiled"] and result["record"]["channels_last"]
    assert result["record"]["check"]["max_relative_error"] <= TOLERANCE
    assert result["short"] <= TOLERANCE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("requested", ["auto", "folded"])
@pytest.mark.parametrize("amp_dtype", [None, "float16", "bfloat16"])
def test_cuda_paths_match_eager(tiny, amp_dtype, requested):
    model, x, reference = tiny
    if amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = model.to("cuda")
    fn, record = prepare_forward(model, x, "cuda", requested, amp_dtype=amp_dtype)
    assert record["amp_dtype"] == amp_dtype and record["channels_last"]
    assert record["folded"] == (requested == "folded")
    # float32 convolutions on CUDA use TF32 (cuDNN's default): float16's mantissa
    tolerance = AMP_TOLERANCE[amp_dtype or "float16"]
    assert relative_error(fn(x), reference) <= tolerance  # against CPU float32
    model.to("cpu")
