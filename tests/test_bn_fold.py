"""BatchNorm folding: same outputs, which pairs fold and which stay, the eager check behind it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featlt.extractors.bn_fold import fold_batchnorm
from featlt.extractors.fast_forward import TOLERANCE, prepare_forward, relative_error


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
            c = module.num_features
            module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(c, generator=generator) - 0.5)
    return model.eval()


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_timm_model_folds_every_norm_and_keeps_outputs():
    import timm

    torch.manual_seed(0)
    model = _randomise_norms(timm.create_model("test_efficientnet", pretrained=False,
                                               num_classes=0))
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(3, 3, 48, 48)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, count = fold_batchnorm(model, x)
    assert count == n_norms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert relative_error(_outputs(folded, x), _outputs(model, x)) < 1e-5
    after = model.state_dict()  # the original is untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    # timm's BatchNormAct2d keeps its activation: a folded ReLU6 still clips
    assert any(isinstance(m, nn.ReLU6) for m in folded.modules()) == any(
        isinstance(m, nn.ReLU6) for m in model.modules())


def test_plain_pair_folds_into_conv_without_bias():
    model = _randomise_norms(nn.Sequential(nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5),
                                           nn.ReLU()))
    x = torch.randn(2, 3, 8, 8)
    folded, count = fold_batchnorm(model, x)
    assert count == 1 and isinstance(folded[1], nn.Identity)
    assert folded[0].bias is not None and model[0].bias is None
    assert relative_error(_outputs(folded, x), _outputs(model, x)) < 1e-6


class _SharedConv(nn.Module):
    """One convolution called twice, each time followed by its own BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.conv(self.bn1(self.conv(x))))


class _NormNotAfterConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x) * 2)  # something between conv and norm


class _ScaledConv(nn.Conv2d):
    """A Conv2d subclass whose forward changes the weights (like weight standardisation)."""

    def forward(self, x):
        return self._conv_forward(x, self.weight / self.weight.norm(), self.bias)


@pytest.mark.parametrize("model", [
    _SharedConv(),
    _NormNotAfterConv(),
    nn.Sequential(_ScaledConv(3, 4, 1), nn.BatchNorm2d(4)),
    nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)),
], ids=["shared-conv", "op-between", "conv-subclass", "no-running-stats"])
def test_unsafe_pairs_are_left_alone(model):
    model = _randomise_norms(model)
    in_channels = 4 if isinstance(model, _SharedConv) else 3
    x = torch.randn(2, in_channels, 6, 6)
    folded, count = fold_batchnorm(model, x)
    assert count == 0
    assert relative_error(_outputs(folded, x), _outputs(model, x)) == 0.0


def test_training_mode_norm_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    model[1].train()
    assert fold_batchnorm(model, torch.randn(2, 3, 4, 4))[1] == 0


class _ConvUsedTwice(nn.Module):
    """The conv output feeds the BatchNorm AND a residual: hooks pair them, folding is wrong."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return (self.bn(y) + y).mean((2, 3))


def test_eager_check_catches_a_wrong_fold_and_auto_steps_down():
    model = _randomise_norms(_ConvUsedTwice())
    x = torch.randn(4, 3, 8, 8)
    folded, count = fold_batchnorm(model, x)
    assert count == 1 and relative_error(_outputs(folded, x), _outputs(model, x)) > 1e-3
    fn, record = prepare_forward(model, x, "cpu", "auto")
    assert record["name"] == "channels_last" and "folded differed from eager" in record["reason"]
    assert record["folded_batchnorms"] == 0
    assert relative_error(fn(x), _outputs(model, x)) <= TOLERANCE
