"""Train-time augmentation policies for ``--views V`` (the views contrastive heads train on).

Each view is drawn with torchvision's functional transforms, but every random parameter comes
from a private ``torch.Generator`` seeded from ``numpy.random.SeedSequence([seed, index, view])``.
The same (seed, sample index, view) therefore gives the same tensor in any process, worker or
batch order, so a resumed extraction writes the same views as an uninterrupted one. The global
torch / numpy / ``random`` states are neither read nor changed.

A view is, in order: a random resized crop of the source image scaled to the model's input size
(the data config's interpolation, antialiased), a horizontal flip, colour jitter in a random
order, an optional grayscale, then ``to_tensor`` and the data config's mean/std. Policies:

- ``mild`` (default): crop area 60-100 %, aspect 3/4-4/3, flip, light jitter (brightness,
  contrast, saturation 0.2, with probability 0.8). Small images (CIFAR's 32 px, MedMNIST's
  28 px) are upscaled to the model's size; a gentle crop keeps the object in the view.
- ``flip``: the whole image, resized, flipped with probability 0.5; nothing else.
- ``strong``: a reconstruction of SimCLR's CIFAR recipe (Chen et al. 2020, appendix B.9):
  crop area 8-100 %, flip, jitter 0.4/0.4/0.4/0.1 with probability 0.8, grayscale with
  probability 0.2, no blur.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from featlt.errors import FeatltError

DEFAULT_POLICY = "mild"


@dataclass(frozen=True)
class AugmentPolicy:
    """One augmentation policy; ``dataclasses.asdict`` of it goes into provenance."""

    name: str
    crop_scale: tuple[float, float]  # crop area as a fraction of the image area
    crop_ratio: tuple[float, float]  # crop aspect ratio (width / height) range
    hflip_p: float  # probability of a horizontal flip
    jitter_p: float  # probability of applying colour jitter at all
    brightness: float  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float  # contrast factor drawn from [1 - c, 1 + c]
    saturation: float  # saturation factor drawn from [1 - s, 1 + s]
    hue: float  # hue shift drawn from [-h, h], h <= 0.5
    grayscale_p: float  # probability of converting to grayscale (3 equal channels)


POLICIES: dict[str, AugmentPolicy] = {
    "mild": AugmentPolicy(
        name="mild", crop_scale=(0.6, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_p=0.5,
        jitter_p=0.8, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0, grayscale_p=0.0,
    ),
    "flip": AugmentPolicy(
        name="flip", crop_scale=(1.0, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_p=0.5,
        jitter_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0,
    ),
    "strong": AugmentPolicy(
        name="strong", crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip_p=0.5,
        jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, grayscale_p=0.2,
    ),
}


def policy_names() -> tuple[str, ...]:
    """The names ``--augment`` accepts."""
    return tuple(POLICIES)


def get_policy(policy: str | AugmentPolicy) -> AugmentPolicy:
    """Resolve a policy name (or pass a policy through)."""
    if isinstance(policy, AugmentPolicy):
        return policy
    if policy not in POLICIES:
        raise FeatltError(
            f"augmentation policy '{policy}': unknown; choose one of {', '.join(POLICIES)} "
            f"(default '{DEFAULT_POLICY}')"
        )
    return POLICIES[policy]


def describe_policy(policy: str | AugmentPolicy) -> dict[str, Any]:
    """Provenance record of a policy: its parameters and how its randomness is keyed."""
    record: dict[str, Any] = dataclasses.asdict(get_policy(policy))
    record["randomness"] = "torch.Generator seeded by numpy SeedSequence([seed, index, view])"
    return record


def view_generator(seed: int, index: int, view: int) -> Any:
    """A ``torch.Generator`` whose state depends only on (seed, sample index, view)."""
    import numpy as np
    import torch

    if min(seed, index, view) < 0:
        raise FeatltError(
            f"augmentation key (seed={seed}, index={index}, view={view}): all three must be "
            "non-negative integers; pass --seed >= 0"
        )
    words = np.random.SeedSequence([seed, index, view]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed((int(words[0]) << 32 | int(words[1])) >> 1)  # 63 bits
    return generator


def _uniform(generator: Any, low: float, high: float) -> float:
    import torch

    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: Any,
) -> tuple[int, int, int, int]:
    """Sample a crop (top, left, h, w) with area fraction in ``scale`` and aspect in ``ratio``.

    The rule of torchvision's ``RandomResizedCrop``: up to 10 draws of (area, log-aspect); the
    first that fits is taken; otherwise the largest centred crop with the aspect clamped into
    ``ratio``.
    """
    import torch

    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(generator, scale[0], scale[1])
        aspect = math.exp(_uniform(generator, log_low, log_high))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ViewTransform:
    """Callable ``(image, seed, index, view) -> (3, H, W) float32`` normalised tensor.

    Picklable (DataLoader workers), stateless between calls. ``H, W`` and interpolation, mean
    and std come from the timm data config the clean features use.
    """

    def __init__(self, policy: str | AugmentPolicy, data_config: dict[str, Any]):
        from torchvision.transforms import InterpolationMode

        self.policy = get_policy(policy)
        try:
            _, height, width = (int(v) for v in data_config["input_size"])
            self.mean = tuple(float(v) for v in data_config["mean"])
            self.std = tuple(float(v) for v in data_config["std"])
            interpolation = str(data_config.get("interpolation", "bilinear"))
        except (KeyError, TypeError, ValueError) as err:
            raise FeatltError(
                f"data config {data_config!r}: needs input_size (C, H, W), mean and std; pass "
                "timm.data.resolve_model_data_config(model)"
            ) from err
        try:
            self._interpolation = InterpolationMode(interpolation)
        except ValueError as err:
            names = ", ".join(mode.value for mode in InterpolationMode)
            raise FeatltError(
                f"data config interpolation '{interpolation}': not a fixed mode; use one of {names}"
            ) from err
        self.size = (height, width)

    def __call__(self, image: Any, seed: int, index: int, view: int) -> Any:
        """image: PIL RGB image -> (3, H, W) float32 tensor, keyed on (seed, index, view)."""
        import torchvision.transforms.functional as tvf

        augmented = self.augment(image, seed, index, view)
        return tvf.normalize(tvf.to_tensor(augmented), self.mean, self.std)

    def augment(self, image: Any, seed: int, index: int, view: int) -> Any:
        """The random steps only: PIL RGB image -> PIL RGB image of the output size (H, W)."""
        import torch
        import torchvision.transforms.functional as tvf

        p = self.policy
        generator = view_generator(seed, index, view)
        width, height = image.size
        top, left, h, w = crop_box(height, width, p.crop_scale, p.crop_ratio, generator)
        image = tvf.resized_crop(
            image, top, left, h, w, list(self.size), interpolation=self._interpolation,
            antialias=True,
        )
        if _uniform(generator, 0.0, 1.0) < p.hflip_p:
            image = tvf.hflip(image)
        if _uniform(generator, 0.0, 1.0) < p.jitter_p:
            for op in torch.randperm(4, generator=generator).tolist():
                if op == 0 and p.brightness > 0:
                    factor = _uniform(generator, max(0.0, 1 - p.brightness), 1 + p.brightness)
                    image = tvf.adjust_brightness(image, factor)
                elif op == 1 and p.contrast > 0:
                    factor = _uniform(generator, max(0.0, 1 - p.contrast), 1 + p.contrast)
                    image = tvf.adjust_contrast(image, factor)
                elif op == 2 and p.saturation > 0:
                    factor = _uniform(generator, max(0.0, 1 - p.saturation), 1 + p.saturation)
                    image = tvf.adjust_saturation(image, factor)
                elif op == 3 and p.hue > 0:
                    image = tvf.adjust_hue(image, _uniform(generator, -p.hue, p.hue))
        if _uniform(generator, 0.0, 1.0) < p.grayscale_p:
            image = tvf.rgb_to_grayscale(image, num_output_channels=3)
        return image

    def views(
        self, image: Any, seed: int, index: int, n_views: int, as_uint8: bool = False
    ) -> Any:
        """image -> (V, 3, H, W) float32: views 0..V-1 of sample ``index``.

        With ``as_uint8`` the views stay (V, 3, H, W) uint8 pixels, and
        ``BatchNormalize(self.mean, self.std)`` (:mod:`featlt.extract.batch_normalize`) turns a
        batch of them into the same floats.
        """
        import torch
        import torchvision.transforms.functional as tvf

        if as_uint8:
            return torch.stack([tvf.pil_to_tensor(self.augment(image, seed, index, v))
                                for v in range(n_views)])
        return torch.stack([self(image, seed, index, v) for v in range(n_views)])

    def describe(self) -> dict[str, Any]:
        """Provenance: the policy plus the output size, interpolation, mean and std."""
        record = describe_policy(self.policy)
        record.update(
            size=list(self.size), interpolation=self._interpolation.value,
            mean=list(self.mean), std=list(self.std),
        )
        return record


def make_view_transform(policy: str | AugmentPolicy, data_config: dict[str, Any]) -> ViewTransform:
    """The view transform of ``policy`` for a model with timm data config ``data_config``."""
    return ViewTransform(policy, data_config)
