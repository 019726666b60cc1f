"""Frozen timm backbones from a spec: weights, data config, device and precision, provenance.

A :class:`BackboneSpec` names a timm model (``arch`` or ``arch.tag``; the tag fixes the
preprocessing) and a weights source:

- ``random``: seeded random initialisation (a baseline; no download);
- a file ``*.safetensors`` / ``*.pth`` / ``*.pt`` / ``*.bin``: a timm-layout state dict, loaded
  with ``torch.load(weights_only=True)`` (a ``.pth`` holding anything but tensors is refused,
  never executed);
- ``local-dir:FOLDER``: a timm/Hugging Face export (``config.json`` plus ``model.safetensors`` or
  ``pytorch_model.bin``);
- ``hub``: the tag's weights on the Hugging Face hub, from the local hub cache, downloaded only
  with ``--allow-download``.

Zoo names (``featlt zoo list``) resolve to a spec through :func:`resolve_spec`; so do ``pixels``
and ``pixels_<size>`` (:mod:`featlt.extractors.pixels`, raw pixels, no weights).

``resolution`` sets the input size; a model with a fixed input size (a ViT) is created at that
size, its position embedding resampled on load (:mod:`featlt.extractors.input_size`).

The feature is the pooled pre-logits output, or with ``layer`` a pooled inner layer
(:mod:`featlt.extractors.feature_module`). :meth:`Backbone.prepare_forward` picks and checks the
forward path (channels_last, compiled, CUDA autocast: :mod:`featlt.extractors.fast_forward`).

Local weights are loaded by featlt, not by timm, so that every failure names the file, the
backbone, the first mismatching tensor and both shapes. The classifier size is taken from the
file (0 when it has no classifier), so logits stay available where the weights have them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.file_hash import file_sha256
from featlt.runtime import log

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
LOCAL_DIR_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


@dataclass(frozen=True)
class BackboneSpec:
    """What to build: a timm model, a weights source, the preprocessing resolution, the layer."""

    model: str  # timm "arch" or "arch.tag" (the tag selects the preprocessing), or pixels[_S]
    weights: str = "random"  # random | hub | FILE | local-dir:FOLDER (see the module docstring)
    # square input size; None: the tag's own. Fixed-input-size models (ViTs) are built at it.
    resolution: int | None = None
    seed: int = 0  # seeds random initialisation
    zoo: str | None = None  # the zoo entry this spec came from, recorded in provenance
    origin: dict[str, Any] | None = None  # where converted zoo weights came from
    # inner layer as the feature (featlt.extractors.feature_module); None: pre-logits
    layer: str | None = None


@dataclass
class Backbone:
    """A frozen model on its device with its eval transform.

    ``transform`` maps an RGB PIL image to a (3, H, W) float32 tensor; :meth:`forward` maps a
    (B, 3, H, W) batch to (B, D) float32 features and, when asked, (B, K) float32 logits.
    """

    model: Any  # torch.nn.Module in eval mode, parameters frozen
    transform: Callable[[Any], Any]
    data_config: dict[str, Any]  # timm's resolved data config (input_size, mean, std, ...)
    dim: int  # D, the feature width (head_hidden_size, or the layer's channels)
    num_classes: int  # K, the classifier width of the weights (0: no classifier)
    device: str
    amp_dtype: str | None  # CUDA autocast dtype ("float16" / "bfloat16"); None: float32
    provenance: dict[str, Any] = field(repr=False)  # what shapes the features (no local paths)
    # The weights file read ({"path", "sha256"}; None for random init). Kept out of
    # ``provenance``: the path is machine-specific, and the same tensors can sit in files with
    # different bytes (safetensors writes its metadata in no fixed order), so the weights'
    # identity in provenance is ``weights.tensors_sha256``, a hash of the loaded tensors.
    weights_file: dict[str, str] | None = None
    layer_index: int | None = None  # forward_intermediates index of spec.layer

    def feature_module(self, logits: bool = False) -> Any:
        """The model as one module: x -> features (B, D) [, logits (B, K)] (FeatureModule)."""
        from featlt.extractors.feature_module import FeatureModule

        return FeatureModule(self.model, self.layer_index, logits)

    def prepare_forward(
        self,
        example: Any,
        requested: str = "auto",
        n_images: int | None = None,
        batch_size: int | None = None,
        logits: bool = False,
    ) -> tuple[Any, dict[str, Any]]:
        """The run's forward ``fn(x) -> outputs`` (float32, on the device) and its record.

        See :func:`featlt.extractors.fast_forward.prepare_forward`: ``example`` is a (B, 3, H, W)
        batch of real inputs at the run's batch size, ``n_images`` every forward image of the run.
        """
        from featlt.extractors.fast_forward import prepare_forward

        return prepare_forward(
            self.feature_module(logits), example, self.device, requested, n_images=n_images,
            amp_dtype=self.amp_dtype, batch_size=batch_size,
        )

    def forward(self, images: Any, logits: bool = False) -> tuple[Any, Any]:
        """Features (B, D) and optionally logits (B, K), float32, on CPU (eager path, AMP kept).

        For a few batches; long runs use :meth:`prepare_forward`.
        """
        from featlt.extractors.fast_forward import FastForward, choose_forward_path

        path = choose_forward_path("eager", self.device, amp_dtype=self.amp_dtype)
        out = FastForward(self.feature_module(logits), path, int(images.shape[0]))(images)
        feats, scores = out if logits else (out, None)
        check_features(feats, self.dim, self.provenance["model"])
        return feats.cpu(), None if scores is None else scores.cpu()


def check_features(feats: Any, dim: int, model: str) -> None:
    """Raise unless ``feats`` is a (B, ``dim``) batch of features."""
    if feats.ndim != 2 or int(feats.shape[1]) != dim:
        raise FeatltError(
            f"backbone {model}: features have shape {tuple(feats.shape)}, not (B, {dim}); "
            "choose a model with a pooling head (timm's forward_head)"
        )


def resolve_spec(
    model: str,
    weights: str | None,
    resolution: int | None = None,
    seed: int = 0,
    layer: str | None = None,
) -> BackboneSpec:
    """A spec from CLI-style input: a zoo name, ``pixels[_S]``, or a timm name with weights."""
    from featlt.extractors import get_zoo_entry, zoo_names
    from featlt.extractors.pixels import is_pixels_name

    if model in zoo_names():
        if weights is not None:
            raise FeatltError(
                f"--model {model} is a zoo entry and fixes its own weights; drop --weights "
                f"{weights}, or pass a timm architecture as --model"
            )
        return dataclasses.replace(
            get_zoo_entry(model).spec(resolution=resolution, seed=seed), layer=layer
        )
    if is_pixels_name(model):
        if weights is not None:
            raise FeatltError(
                f"--model {model}: the pixels pseudo-backbone has no weights; drop --weights "
                f"{weights}"
            )
        return BackboneSpec(model=model, weights="none", resolution=resolution, seed=seed,
                            layer=layer)
    check_model_name(model)
    if weights is None:
        raise FeatltError(
            f"--model {model}: no weights given; pass --weights FILE.safetensors|FILE.pth, "
            "--weights local-dir:FOLDER, --weights hub (with --allow-download to fetch), "
            "--weights random for a random-init baseline, or a zoo name (featlt zoo list)"
        )
    return BackboneSpec(model=model, weights=weights, resolution=resolution, seed=seed,
                        layer=layer)


def check_model_name(model: str) -> tuple[str, str | None]:
    """Split ``arch[.tag]`` and check both against timm; unknown names get close suggestions."""
    import timm
    from timm.models import split_model_name_tag

    from featlt.extractors import zoo_names

    arch, tag = split_model_name_tag(model)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, [*timm.list_models(), *zoo_names()], n=5)
        hint = f"did you mean {', '.join(close)}?" if close else "no similar name exists;"
        raise FeatltError(
            f"--model {model}: '{arch}' is not a timm architecture or zoo entry; {hint} "
            "list names with `python -c 'import timm; print(timm.list_models())'` or "
            "`featlt zoo list` (or pixels / pixels_<size> for the raw-pixel baseline)"
        )
    if tag:
        tags = [name.split(".", 1)[1] for name in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise FeatltError(
                f"--model {model}: '{arch}' has no tag '{tag}'; its tags are "
                f"{', '.join(tags) or 'none'} (or omit the tag for the default)"
            )
    return arch, tag or None


def create_backbone(
    spec: BackboneSpec, device: str = "cpu", amp: bool = True, amp_dtype: str = "float16"
) -> Backbone:
    """Build the frozen model of ``spec`` on ``device`` (``cpu`` or ``cuda``).

    On CUDA the forward runs under ``amp_dtype`` autocast (float16 by default, bfloat16 on
    request) unless ``amp`` is False; on CPU it runs in float32. A fixed-input-size model (ViT)
    is built at ``spec.resolution`` (:mod:`featlt.extractors.input_size`).
    """
    from timm.data import create_transform

    from featlt.extractors.fast_forward import check_amp_dtype

    check_amp_dtype(amp_dtype)
    _check_resolution(spec.resolution)
    model, weights_record, weights_file = _build_model(spec)
    model.eval().requires_grad_(False)
    weights_record["num_classes"] = int(getattr(model, "num_classes", 0))
    weights_record["tensors_sha256"] = state_sha256(model.state_dict())
    data_config = _data_config(model, spec.resolution)
    name = _model_name(model)
    layer_index, feature = _feature_record(model, spec.layer, name)
    chosen_amp = _autocast_dtype(device, amp, amp_dtype)
    if device == "cuda":
        model = model.to(device)
    provenance = {
        "model": name,
        "arch": model.pretrained_cfg["architecture"],
        "tag": model.pretrained_cfg.get("tag"),
        "zoo": spec.zoo,
        "weights": {**weights_record, **({"origin": spec.origin} if spec.origin else {})},
        "data_config": _jsonable_config(data_config),
        "resolution": spec.resolution,
        "feature": feature,
        "device": device,
        "precision": f"amp-{chosen_amp}" if chosen_amp else "float32",
    }
    log.info("backbone %s: %s weights, dim %d, %s", name, weights_record["source"],
             feature["dim"], provenance["precision"])
    return Backbone(
        model=model,
        transform=create_transform(**data_config, is_training=False),
        data_config=data_config,
        dim=feature["dim"],
        num_classes=weights_record["num_classes"],
        device=device,
        amp_dtype=chosen_amp,
        provenance=provenance,
        weights_file=weights_file,
        layer_index=layer_index,
    )


def _check_resolution(resolution: int | None) -> None:
    if resolution is not None and resolution < 8:
        raise FeatltError(f"--resolution {resolution}: too small; pass at least 8")


def _build_model(spec: BackboneSpec) -> tuple[Any, dict[str, Any], dict[str, str] | None]:
    """(model on CPU, weights provenance record, weights file record or None) of ``spec``."""
    from featlt.extractors.input_size import size_kwargs
    from featlt.extractors.pixels import create_pixels_model, is_pixels_name

    if is_pixels_name(spec.model):
        return create_pixels_model(spec.model), {"source": "none"}, None
    check_model_name(spec.model)
    sized = size_kwargs(spec.model, spec.resolution)
    if spec.weights == "random":
        model = random_model(spec.model, spec.seed, sized)
        return model, {"source": "random", "seed": spec.seed}, None
    return _load_model(spec, sized)


def _load_model(
    spec: BackboneSpec, sized: dict[str, Any]
) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """The model of ``spec`` with its weights file loaded strictly (position grid resampled)."""
    from featlt.extractors.input_size import fit_position_embedding

    file, create_kwargs, weights_record = _locate_weights(spec)
    state = load_state_file(file, spec.model)
    num_classes = _classifier_width(spec.model, state, create_kwargs)
    model = _create(spec.model, num_classes=num_classes, **create_kwargs, **sized)
    resampled = fit_position_embedding(state, model, str(file))
    if resampled is not None:
        weights_record["pos_embed_resampled"] = resampled
    check_state_fits(model, state, str(file), spec.model)
    model.load_state_dict(state, strict=True)
    return model, weights_record, {"path": str(file), "sha256": file_sha256(file)}


def _create(model: str, **kwargs: Any) -> Any:
    """``timm.create_model(model, pretrained=False, **kwargs)``; a refused size is a FeatltError."""
    import timm

    try:
        return timm.create_model(model, pretrained=False, **kwargs)
    except TypeError as err:
        if "img_size" not in kwargs:
            raise
        raise FeatltError(
            f"--resolution {kwargs['img_size']}: backbone {model} has a fixed input size but "
            f"cannot be built at another ({err}); drop --resolution"
        ) from err


def _data_config(model: Any, resolution: int | None) -> dict[str, Any]:
    """timm's data config of ``model``, its input size set to ``resolution`` when given."""
    from timm.data import resolve_model_data_config

    data_config = resolve_model_data_config(model)
    if resolution is not None:
        data_config["input_size"] = (data_config["input_size"][0], resolution, resolution)
    return data_config


def _autocast_dtype(device: str, amp: bool, amp_dtype: str) -> str | None:
    """The CUDA autocast dtype to run under, or None (CPU, or ``amp`` off)."""
    import torch

    if device != "cuda" or not amp:
        return None
    if amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise FeatltError(
            "--amp-dtype bfloat16: this GPU does not support bfloat16; use --amp-dtype "
            "float16 or --no-amp"
        )
    return amp_dtype


def _model_name(model: Any) -> str:
    """``arch.tag`` (or ``arch``) of a timm model's pretrained config."""
    cfg = model.pretrained_cfg
    return f"{cfg['architecture']}.{cfg.get('tag') or ''}".rstrip(".")


def _feature_record(model: Any, layer: str | None, name: str) -> tuple[int | None, dict[str, Any]]:
    """(forward_intermediates index or None, provenance record of the feature).

    The record has the layer, pooling, width ``dim`` and ``params``, the parameter count of the
    feature extractor (:func:`featlt.extractors.static_baselines.feature_params`).
    """
    from featlt.extractors.static_baselines import feature_params

    if layer is None:
        dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        feature = {"layer": "pre_logits", "pooling": _pooling(model), "dim": dim}
        layer_index = None
    else:
        from featlt.extractors.feature_module import LAYER_POOLING, resolve_layer

        layer_index, dim = resolve_layer(model, layer, name)
        feature = {"layer": layer, "index": layer_index, "pooling": LAYER_POOLING, "dim": dim}
    feature["params"] = feature_params(model, layer_index)
    return layer_index, feature


def random_model(model: str, seed: int, sized: dict[str, Any] | None = None) -> Any:
    """A randomly initialised model; the global torch RNG is left untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create(model, **(sized or {}))


def _locate_weights(spec: BackboneSpec) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(weights file, extra create_model kwargs, provenance record) of a non-random source."""
    source = spec.weights
    if source == "hub":
        return _hub_file(spec.model), {}, {"source": "hub"}
    if source.startswith("local-dir:"):
        return _local_dir(Path(source.removeprefix("local-dir:")).expanduser(), spec.model)
    path = Path(source).expanduser()
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise FeatltError(
            f"--weights {source}: not a weights file ({', '.join(WEIGHT_SUFFIXES)}), "
            "'local-dir:FOLDER', 'hub' or 'random'; pass one of those"
        )
    return path, {}, {"source": "zoo" if spec.zoo else "file"}


def _local_dir(folder: Path, model: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Weights file and pretrained config of a timm export folder; its architecture must match."""
    from timm.models import split_model_name_tag

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FeatltError(
            f"--weights local-dir:{folder}: {config_file} not found for backbone {model}; pass a "
            "folder written by timm (config.json + model.safetensors)"
        )
    config = json.loads(config_file.read_text())
    pretrained_cfg = dict(config.get("pretrained_cfg", config))
    arch = config.get("architecture", pretrained_cfg.get("architecture"))
    if arch != split_model_name_tag(model)[0]:
        raise FeatltError(
            f"--weights local-dir:{folder}: holds architecture '{arch}' but --model is "
            f"'{model}'; pass --model {arch}"
        )
    file = next((folder / n for n in LOCAL_DIR_FILES if (folder / n).is_file()), None)
    if file is None:
        raise FeatltError(
            f"--weights local-dir:{folder}: no weights file ({', '.join(LOCAL_DIR_FILES)}) for "
            f"backbone {model}; copy the export's weights file into the folder"
        )
    pretrained_cfg.pop("architecture", None)
    kwargs: dict[str, Any] = {"pretrained_cfg_overlay": pretrained_cfg,
                              **config.get("model_args", {})}
    return file, kwargs, {"source": "local-dir"}


def _hub_file(model: str) -> Path:
    """The tag's weights file from the Hugging Face hub cache (downloads need --allow-download)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    if cfg is None or not cfg.hf_hub_id:
        raise FeatltError(
            f"--weights hub: backbone {model} has no Hugging Face hub weights in timm; download "
            "a weights file yourself and pass --weights FILE"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors",
                                                                 "pytorch_model.bin"]
    for name in names:
        try:
            return Path(hf_hub_download(cfg.hf_hub_id, name))
        except LocalEntryNotFoundError as err:
            raise FeatltError(
                f"--weights hub: {cfg.hf_hub_id}/{name} for backbone {model} is not in the local "
                "hub cache and featlt is offline; pass --allow-download, or --weights FILE"
            ) from err
        except EntryNotFoundError:
            continue
    raise FeatltError(f"--weights hub: {cfg.hf_hub_id} holds none of {', '.join(names)}")


def load_state_file(path: Path, backbone: str) -> dict[str, Any]:
    """A flat ``name -> tensor`` state dict from a safetensors or torch file (weights only).

    Raises :class:`FeatltError` for a missing file, a file that is not a state dict, and a
    pickle holding anything but tensors (refused by ``weights_only`` before any code runs, or
    found among the values).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FeatltError(
            f"weights file {path}: not found for backbone {backbone}; pass an existing file "
            "with --weights, or convert one with `featlt weights convert`"
        )
    if path.stat().st_size == 0:
        raise FeatltError(
            f"weights file {path}: empty (0 bytes; a download or copy did not finish); pass the "
            "complete file"
        )
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise FeatltError(
                f"weights file {path}: not a readable safetensors file ({err}); re-create it "
                "with `featlt weights convert`"
            ) from err
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Name what was refused, never quote torch's advice (it suggests an unsafe load).
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"a {refused.group(1)} object" if refused else "objects other than tensors"
        raise FeatltError(
            f"weights file {path}: holds {what}, refused without running it; save only the "
            "state dict (torch.save(model.state_dict(), path)) or a .safetensors file"
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise FeatltError(
            f"weights file {path}: not a torch checkpoint ({err}); pass a .pth state dict "
            "or a .safetensors file"
        ) from err
    if not isinstance(state, dict):
        raise FeatltError(
            f"weights file {path}: holds {type(state).__name__}, not a state dict of tensors; "
            "save model.state_dict()"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise FeatltError(
                f"weights file {path}: entry '{key}' holds {type(value).__name__}, not a tensor; "
                "refused (featlt loads plain state dicts only); save just the tensors, e.g. "
                "torch.save(checkpoint['state_dict'], path)"
            )
    return state


def _classifier_width(model: str, state: dict[str, Any], create_kwargs: dict[str, Any]) -> int:
    """K of the classifier in ``state``: the rows of ``<classifier>.weight``, 0 when absent."""
    from timm.models import get_pretrained_cfg

    overlay = create_kwargs.get("pretrained_cfg_overlay", {})
    cfg = get_pretrained_cfg(model)
    classifier = overlay.get("classifier") or (cfg.classifier if cfg else None) or "head"
    names = [classifier] if isinstance(classifier, str) else list(classifier)
    weight = state.get(f"{names[0]}.weight")
    return int(weight.shape[0]) if weight is not None else 0


def check_state_fits(model: Any, state: dict[str, Any], source: str, backbone: str) -> None:
    """Raise a :class:`FeatltError` naming the first tensor where ``state`` does not fit ``model``.

    Checks, in the model's order: every model tensor present with the model's shape; then no
    tensor in ``state`` the model lacks.
    """
    target = model.state_dict()
    convert = f"`featlt weights convert {source} --model {backbone}`"
    missing = [k for k in target if k not in state]
    for key, tensor in target.items():
        if key not in state:
            raise FeatltError(
                f"weights {source} do not fit backbone {backbone}: tensor '{key}' is missing "
                f"({len(missing)} of {len(target)} model tensors missing; the file's first "
                f"tensor is '{next(iter(state), 'none')}'); if the file uses another "
                f"codebase's names, map it by position with {convert}"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise FeatltError(
                f"weights {source} do not fit backbone {backbone}: tensor '{key}' has shape "
                f"{tuple(state[key].shape)} in the file but {tuple(tensor.shape)} in the model; "
                "pass weights trained for this architecture (check the arch name and variant)"
            )
    extra = [k for k in state if k not in target]
    if extra:
        raise FeatltError(
            f"weights {source} do not fit backbone {backbone}: the file has {len(extra)} "
            f"tensor(s) the model lacks, first '{extra[0]}'; pass weights of this architecture "
            f"or map them by position with {convert}"
        )


def state_sha256(state: dict[str, Any]) -> str:
    """Hex sha256 over a state dict's names, dtypes, shapes and bytes (order as given)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in state.items():
        flat = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{flat.dtype}|{tuple(flat.shape)}\n".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the features."""
    import platform

    import numpy
    import PIL
    import timm
    import torch

    from featlt import __version__

    return {
        "featlt": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def _pooling(model: Any) -> str:
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str):
        return pool
    return str(getattr(pool, "pool_type", type(pool).__name__ if pool is not None else "none"))


def _jsonable_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
