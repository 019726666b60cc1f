"""Classifier heads on frozen features (sklearn-style; see :mod:`featlt.heads.base`).

``make_head(name, **params)`` builds a named head, ``list_heads()`` lists the names;
``save_head``/``load_head`` write and read a fitted head (safetensors + JSON).
``fit-classifier --memory-budget`` streams features by chunks (:mod:`featlt.heads.streaming`,
the plan and its refusals: :mod:`featlt.heads.budget`).
"""

from featlt.heads.base import BaseHead, HeadInputError
from featlt.heads.cosine import CosineHead
from featlt.heads.io import load_head, save_head
from featlt.heads.ldam import LDAMDRWHead
from featlt.heads.linear import LinearHead
from featlt.heads.ncm import NCMHead
from featlt.heads.posthoc import LWS, PostHocLA, TauNorm
from featlt.heads.registry import HEADS, HeadSpec, head_spec, list_heads, make_head

__all__ = [
    "HEADS",
    "LWS",
    "BaseHead",
    "CosineHead",
    "HeadInputError",
    "HeadSpec",
    "LDAMDRWHead",
    "LinearHead",
    "NCMHead",
    "PostHocLA",
    "TauNorm",
    "head_spec",
    "list_heads",
    "load_head",
    "make_head",
    "save_head",
]
