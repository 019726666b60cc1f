"""Process-wide settings every command shares: offline mode, threads, device, seed, output.

Nothing here imports torch, timm or faiss at module level, so ``featlt --help`` stays instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featlt.errors import FeatltError

Device = Literal["auto", "cpu", "cuda"]

log = logging.getLogger("featlt")


@dataclass(frozen=True)
class Runtime:
    """The common options of every command (docs/architecture.md, "Contracts")."""

    device: Device = "auto"
    threads: int | None = None  # None: all cores for torch, 1 for faiss (see faiss_ops)
    seed: int = 0
    json_output: bool = False  # stdout carries one JSON document; logs go to stderr
    verbosity: int = 0
    allow_download: bool = False

    def apply(self) -> None:
        """Set the environment before any heavy import: offline hub, logging, thread counts."""
        set_offline(not self.allow_download)
        configure_logging(self.verbosity)
        if self.threads is not None:
            if self.threads < 1:
                raise FeatltError(f"--threads {self.threads}: must be at least 1; pass e.g. 2")
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[var] = str(self.threads)


def set_offline(offline: bool = True) -> None:
    """Make the Hugging Face hub fail fast unless downloads are allowed.

    Must run before timm is imported; an already-set ``HF_HUB_OFFLINE`` is respected.
    """
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    else:
        os.environ["HF_HUB_OFFLINE"] = "0"


def configure_logging(verbosity: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def resolve_torch_device(requested: Device) -> str:
    """Return ``"cuda"`` or ``"cpu"``; an explicit ``cuda`` without a GPU is an error."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise FeatltError(
            "--device cuda: no CUDA GPU is visible to torch; use --device auto or --device cpu"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def cache_dir() -> Path:
    """The featlt cache folder: ``$FEATLT_CACHE`` or ``~/.cache/featlt`` (created on demand)."""
    path = Path(os.environ.get("FEATLT_CACHE", Path.home() / ".cache" / "featlt")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, dataclasses and paths into plain JSON types."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON to ``path`` via a temporary file and rename, so no half-written file remains."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
