"""The named heads: one factory, ``make_head(name, **params)``, and their selection grids.

Each :class:`HeadSpec` says what the name builds, which hyper-parameters the validation-only
selection (:mod:`featlt.heads.selection`) tries, and how sure we are of the method (the labels of
docs/methods.md: ``code``, ``paper``, ``reconstruction``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featlt.errors import FeatltError
from featlt.heads.base import BaseHead
from featlt.heads.cibl import CIBLHead
from featlt.heads.cosine import CosineHead
from featlt.heads.cws import CWSHead
from featlt.heads.dlsa import DLSAHead, stage_family_problem
from featlt.heads.ldam import LDAMDRWHead
from featlt.heads.linear import LinearHead
from featlt.heads.ncm import NCMHead
from featlt.heads.posthoc import LWS, PostHocLA, TauNorm

# The optimisation grid of every trainable head (chosen on validation; epochs by early stopping).
TRAIN_GRID: dict[str, tuple[Any, ...]] = {"lr": (1e-3, 3e-3), "weight_decay": (3e-3, 3e-2)}
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0, 0.1, ..., 2.0
# The head classes that accept chunk-streamed features (exact classes: CWSHead subclasses
# LinearHead but moves its sub-class targets over all rows each epoch).
STREAMING_CLASSES: tuple[type[BaseHead], ...] = (LinearHead, CosineHead, LDAMDRWHead, NCMHead,
                                                 TauNorm, LWS, PostHocLA)


@dataclass(frozen=True)
class HeadSpec:
    """A named head."""

    name: str
    cls: type[BaseHead]
    defaults: dict[str, Any]  # constructor parameters that define the recipe
    description: str
    source: str  # code | paper | reconstruction (docs/methods.md labels), with the reference
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # selected on validation
    base: str | None = None  # post-hoc wrappers: the registry name of the base head

    @property
    def streams(self) -> bool:
        """Whether the head fits and predicts on chunk-streamed features (``--memory-budget``,
        :mod:`featlt.heads.streaming`); CWS, DLSA and CIBL need their rows in memory."""
        return self.cls in STREAMING_CLASSES

    def build(self, **params: Any) -> BaseHead:
        """A new head of the recipe; estimator-valued defaults (DLSA's ``stage_head``) are
        cloned, so no two built heads share one."""
        from sklearn.base import BaseEstimator, clone

        defaults = {k: clone(v) if isinstance(v, BaseEstimator) else v
                    for k, v in self.defaults.items()}
        return self.cls(**{**defaults, **params})


HEADS: dict[str, HeadSpec] = {
    spec.name: spec
    for spec in (
        HeadSpec("linear", LinearHead, {}, "linear, cross-entropy, instance-balanced sampling",
                 "code: Kang et al. 2020", TRAIN_GRID),
        HeadSpec("crt", LinearHead, {"sampling": "class_balanced"},
                 "classifier re-training: fresh linear head, class-balanced sampling",
                 "code: Kang et al. 2020", TRAIN_GRID),
        HeadSpec("la_loss", LinearHead, {"loss": "la"},
                 "linear, logit-adjusted loss CE(f + tau log pi)",
                 "paper+code: Menon et al. 2021", {**TRAIN_GRID, "tau": (1.0, 1.5)}),
        HeadSpec("balanced_softmax", LinearHead, {"loss": "balanced_softmax"},
                 "linear, Balanced Softmax CE(f + log n_c)", "paper+code: Ren et al. 2020",
                 TRAIN_GRID),
        HeadSpec("ldam_drw", LDAMDRWHead, {},
                 "cosine logits, LDAM margins, deferred re-weighting (beta 0.9999)",
                 "paper+code: Cao et al. 2019", {"lr": TRAIN_GRID["lr"]}),
        HeadSpec("cosine", CosineHead, {}, "cosine classifier s * cos(w_c, z), cross-entropy",
                 "paper", {"lr": TRAIN_GRID["lr"], "s": (16.0, 25.0, 30.0)}),
        HeadSpec("mlp_la", LinearHead, {"loss": "la", "hidden": 256},
                 "MLP projection (256, ReLU) + linear, logit-adjusted loss",
                 "featlt option (projection) over Menon et al. 2021", {"lr": TRAIN_GRID["lr"]}),
        HeadSpec("ncm_l2", NCMHead, {"metric": "l2"},
                 "nearest class mean, centred + L2-normalised features, -squared L2",
                 "code: Kang et al. 2020"),
        HeadSpec("ncm_cosine", NCMHead, {"metric": "cosine"},
                 "nearest class mean, centred + L2-normalised features, cosine",
                 "paper: Kang et al. 2020 (their code uses a dot product)"),
        HeadSpec("tau_norm", TauNorm, {}, "tau-normalised plain linear head (bias dropped)",
                 "code: Kang et al. 2020", {"tau": TAU_GRID}, base="linear"),
        HeadSpec("lws", LWS, {}, "learnable per-class weight scaling over the plain linear head",
                 "code: Kang et al. 2020", {"lr": (0.01, 0.1)}, base="linear"),
        HeadSpec("posthoc_la", PostHocLA, {}, "plain linear head, post-hoc f - tau log pi",
                 "paper+code: Menon et al. 2021", {"tau": TAU_GRID}, base="linear"),
        HeadSpec("dlsa", DLSAHead, {"stage_head": LinearHead(loss="balanced_softmax")},
                 "DLSA stages: density router peels the densest rho per stage to cluster-aided "
                 "Balanced Softmax heads (leave-one-out histograms); a final head takes the rest",
                 "code (staging, cluster-aided head): Xu et al. 2022; router and leave-one-out "
                 "histograms: featlt's reconstruction", {"rho": (0.3, 0.5), "depth": (1, 2)}),
        HeadSpec("cws", CWSHead, {},
                 "classwise split into near-equal sub-classes, logit-adjusted linear head on "
                 "sub-classes, prior-neutral group mapping (logsumexp - log K_c)",
                 "reconstruction of Yuan et al. 2023 (no public code)", TRAIN_GRID),
        HeadSpec("cibl", CIBLHead, {},
                 "projection MLP + cosine head, logit-adjusted CE + (1 - 1/b)-weighted "
                 "supervised contrast (stored views, else feature noise)",
                 "reconstruction of Lavoie & Waslander 2023 (no public code)",
                 {"lam": (0.5, 2.0)}),
    )
}


def list_heads() -> list[str]:
    """The registered head names, in the order ``--head all`` runs them."""
    return list(HEADS)


def head_spec(name: str) -> HeadSpec:
    """The spec of ``name``; an unknown name is an error that lists the known ones."""
    if name not in HEADS:
        raise FeatltError(
            f"head '{name}': unknown; choose one of {', '.join(HEADS)} (or 'all')"
        )
    return HEADS[name]


def make_head(name: str, stages: int | None = None, **params: Any) -> BaseHead:
    """Build the named head; ``params`` override its recipe's defaults (e.g. ``lr=0.01``).

    ``stages=k`` wraps a trainable head in DLSA's balanced label-space stages: ``k`` peeling
    stages of cluster-aided heads of that family and a final one. The named head, built with
    ``params``, is the :class:`DLSAHead`'s ``stage_head`` (cloned per stage); ``device``,
    ``random_state`` and ``max_epochs`` go to the DLSA head, which passes them to every stage.
    ``stages=0`` is the head alone, trained like a DLSA final head. A head whose family DLSA
    cannot stage (post-hoc wrappers, LDAM-DRW, CIBL, NCM) is refused by name.
    """
    spec = head_spec(name)
    if stages is None:
        return spec.build(**params)
    runtime = {k: params.pop(k) for k in ("device", "random_state", "max_epochs") if k in params}
    stage_head = spec.build(**params)
    problem = stage_family_problem(stage_head) if spec.base is None else "a post-hoc wrapper"
    if problem is not None:
        raise FeatltError(
            f"head '{name}' cannot be staged (stages={stages}): {problem}; stage a trainable "
            "head trained with a loss of ce, la or balanced_softmax (e.g. balanced_softmax, "
            "la_loss, linear, crt, mlp_la, cws)"
        )
    return DLSAHead(stage_head=stage_head, depth=stages, **runtime)


HEAD_CLASSES: dict[str, Callable[..., BaseHead]] = {
    cls.__name__: cls for cls in (LinearHead, CosineHead, LDAMDRWHead, NCMHead, TauNorm, LWS,
                                  PostHocLA, DLSAHead, CWSHead, CIBLHead)
}
