"""Model selection on validation data only (docs/methods.md, "Selection on validation").

For a named head (:mod:`featlt.heads.registry`) every combination of its grid (learning rate,
weight decay, tau, scale ...) is fitted on the training rows; trainable heads stop early on the
validation rows. The combination with the best validation balanced accuracy wins (ties: lower
validation cross-entropy, then grid order). A temperature is then fitted on validation
(minimising NLL; it changes probabilities, never predictions). Post-hoc wrappers are tried
over every fitted grid point of their base head: (base point, wrapper point) are chosen jointly.
The test split is not touched here; the caller
(:func:`featlt.heads.workflow.fit_classifiers`) scores it once, after everything is chosen.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.heads.base import BaseHead
from featlt.heads.registry import head_spec
from featlt.heads.streaming import StreamedFeatures

TEMPERATURE_BOUNDS = (1e-3, 1e3)


@dataclass
class SelectedHead:
    """A head fitted with its validation-chosen hyper-parameters."""

    name: str
    head: BaseHead
    selected: dict[str, Any]  # chosen grid values, best epoch, temperature
    val: dict[str, float]  # balanced_accuracy and nll of the chosen head on validation
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every grid point tried
    fit_seconds: float = 0.0  # wall time of the whole procedure, selection (and base) included
    fits: list[tuple[BaseHead, dict[str, Any]]] = field(default_factory=list, repr=False)
    # ^ every fitted grid point (head, point); post-hoc wrappers are tried over all of them


@dataclass(frozen=True)
class SelectionData:
    """Training and validation arrays with labels 0..C-1 (features in memory, or streamed by
    chunks: :class:`featlt.heads.streaming.StreamedFeatures`)."""

    X_train: np.ndarray | StreamedFeatures  # (n_train, D)
    y_train: np.ndarray  # (n_train,) int
    X_val: np.ndarray | StreamedFeatures  # (n_val, D)
    y_val: np.ndarray  # (n_val,) int
    train_counts: np.ndarray  # (C,) long-tailed training counts (the prior)
    views_train: np.ndarray | None = None  # (n_train, V, D) stored augmented views, if read


def val_score(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, cross-entropy) of raw logits ``(n, C)`` on labels ``(n,)`` 0..C-1.

    Balanced accuracy is the mean recall over the classes present in ``y``.
    """
    from scipy.special import log_softmax

    from featlt.evaluation.metrics import balanced_accuracy

    bacc = balanced_accuracy(y, logits.argmax(axis=1), logits.shape[1])
    nll = -log_softmax(logits, axis=1)[np.arange(y.shape[0]), y].mean()
    return float(bacc), float(nll)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` minimising validation NLL of ``softmax(logits / T)``.

    Args:
        logits: (n, C) raw validation logits; y: (n,) labels 0..C-1.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(y.shape[0])

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / math.exp(log_t), axis=1)[rows, y].mean())

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(nll, bounds=(low, high), method="bounded",
                            options={"xatol": 1e-4})
    return float(math.exp(found.x))


def grid_points(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Every combination of a grid, in order (one empty point for an empty grid)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def runtime_params(head: BaseHead, device: str, seed: int) -> dict[str, Any]:
    """``device`` and ``random_state`` for the heads that take them."""
    names = head.get_params(deep=False)
    return {k: v for k, v in (("device", device), ("random_state", seed)) if k in names}


def view_arguments(head: BaseHead, data: SelectionData) -> dict[str, Any]:
    """``{"views": ...}`` for a head whose ``fit`` takes augmented views (CIBL), when read."""
    import inspect

    if data.views_train is None or "views" not in inspect.signature(head.fit).parameters:
        return {}
    return {"views": data.views_train}


def select_head(
    name: str,
    data: SelectionData,
    device: str = "auto",
    seed: int = 0,
    done: dict[str, SelectedHead] | None = None,
    overrides: dict[str, Any] | None = None,
) -> SelectedHead:
    """Fit every grid point of head ``name``, keep the best on validation, fit its temperature.

    Args:
        done: heads already selected in this run; a wrapper's base is taken from here (and
            added when missing).
        overrides: fixed constructor parameters (e.g. ``max_epochs``) for every grid point;
            a head without such a parameter ignores it.
    """
    spec = head_spec(name)
    done = {} if done is None else done
    start = time.perf_counter()
    base_seconds = 0.0
    accepted = spec.build().get_params(deep=False)
    fixed = {k: v for k, v in (overrides or {}).items() if k in accepted}
    # A wrapper is tried over every fitted grid point of its base: (base point, own point)
    # are chosen jointly by the wrapper's validation score.
    bases: list[tuple[BaseHead | None, dict[str, Any]]] = [(None, {})]
    if spec.base is not None:
        if spec.base not in done:
            done[spec.base] = select_head(spec.base, data, device, seed, done, overrides)
        bases = list(done[spec.base].fits)
        base_seconds = done[spec.base].fit_seconds
    fits, candidates = [], []
    for base, base_point in bases:
        for point in grid_points(spec.grid):
            head = spec.build(**fixed, **point, **({} if base is None else {"base": base}))
            head.set_params(**runtime_params(head, device, seed))
            head.fit(data.X_train, data.y_train, X_val=data.X_val, y_val=data.y_val,
                     **view_arguments(head, data))
            bacc, nll = val_score(head.logits(data.X_val), data.y_val)
            full_point = {**point, **({"base": base_point} if base is not None else {})}
            candidates.append({**full_point, "val_balanced_accuracy": bacc, "val_nll": nll,
                               "best_epoch": getattr(head, "best_epoch_", None)})
            fits.append((head, point))
    # Best balanced accuracy, then lowest NLL; max() keeps the first of equal keys (grid order).
    chosen = max(range(len(candidates)), key=lambda i: (
        candidates[i]["val_balanced_accuracy"], -candidates[i]["val_nll"]))
    head, point = fits[chosen]
    bacc, nll = candidates[chosen]["val_balanced_accuracy"], candidates[chosen]["val_nll"]
    temperature = fit_temperature(head.logits(data.X_val), data.y_val)
    head.set_params(temperature=temperature)
    selected = {**point, "temperature": temperature}
    if hasattr(head, "best_epoch_"):
        selected["best_epoch"] = head.best_epoch_
    if spec.base is not None:
        base = head.base_  # type: ignore[attr-defined]
        selected["base"] = {"name": spec.base, **candidates[chosen]["base"]}
        if hasattr(base, "best_epoch_"):
            selected["base"]["best_epoch"] = base.best_epoch_
    return SelectedHead(
        name=name, head=head, selected=selected,
        val={"balanced_accuracy": bacc, "nll": nll}, candidates=candidates,
        fit_seconds=time.perf_counter() - start + base_seconds, fits=fits,
    )


def select_heads(
    names: list[str],
    data: SelectionData,
    device: str = "auto",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    on_selected: Callable[[str], None] | None = None,
) -> dict[str, SelectedHead]:
    """Select every named head (shared bases are fitted once); returns them in ``names`` order.

    ``on_selected(name)``, when given, is called as each named head is ready (progress).
    """
    done: dict[str, SelectedHead] = {}
    for name in names:
        if name not in done:
            done[name] = select_head(name, data, device, seed, done, overrides)
        if on_selected is not None:
            on_selected(name)
    return {name: done[name] for name in names}


def check_selection_data(data: SelectionData, class_names: list[str]) -> None:
    """Refuse what selection cannot work with, naming the fix."""
    n_classes = len(data.train_counts)
    for split, X, y in (("train", data.X_train, data.y_train), ("validation", data.X_val,
                                                                 data.y_val)):
        if y.shape[0] == 0:
            raise FeatltError(
                f"{split} split: empty; check the profile and the feature file's splits"
            )
        if y.min() < 0 or y.max() >= n_classes:
            raise FeatltError(
                f"{split} split: labels outside 0..{n_classes - 1}; the feature file is "
                "inconsistent, re-extract it"
            )
        if not isinstance(X, np.ndarray):  # streamed: the store refuses NaN/Inf as it reads
            continue
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        if bad.size:
            raise FeatltError(
                f"{split} split: features of row {int(bad[0])} contain NaN/Inf "
                f"({bad.size} rows); re-extract the features"
            )
    missing = np.flatnonzero(np.asarray(data.train_counts) == 0)
    if missing.size:
        c = int(missing[0])
        raise FeatltError(
            f"class {c} ('{class_names[c]}') has no training rows in this view "
            f"({missing.size} class(es) missing); a head cannot learn it — use a profile or "
            "imbalance factor that keeps every class, or drop the class from the data"
        )
