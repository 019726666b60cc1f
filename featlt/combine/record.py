"""The provenance of a combined feature set (what ``featlt combine`` writes into the store).

- ``backbone``: the members and the recipe (:func:`featlt.store.members.combined_backbone`);
- ``data``: the data record of the member holding the fewest rows (the images the combination
  holds), with the combined splits;
- ``store``: the combined dtype and what ``features`` holds;
- ``views``: the members' augmentation record (their ``views`` record without each backbone's
  own input size, normalisation and filter) when every member's is identical, else none;
- ``run`` (may differ on resume): each member's file, its weights file and its creation time,
  and the package versions.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from featlt import __version__
from featlt.combine.inputs import Member, augmentation, same_augmentation
from featlt.store.members import combined_backbone

FEATURES_TEXT = "combined: each member's feature L2-normalised, concatenated (backbone.members)"


def combined_provenance(members: Sequence[Member], splits: Sequence[str], dtype: str,
                        smallest: Member, keep_logits: bool) -> dict[str, Any]:
    """The provenance record of a combination of ``members``.

    Args:
        splits: the splits the combination holds.
        dtype: its feature dtype.
        smallest: the member holding the fewest rows (its data record is kept).
        keep_logits: whether the members' logits are kept (concatenated).
    """
    data = {**(smallest.provenance.get("data") or {}), "extracted_splits": list(splits)}
    views = augmentation(members[0].provenance) if same_augmentation(members) else None
    return {
        "backbone": combined_backbone([m.provenance for m in members], [m.dim for m in members]),
        "data": data,
        "store": {"dtype": dtype, "features": FEATURES_TEXT, "store_logits": keep_logits},
        "views": views or {"n_views": 0},
        "run": {
            "members": [{"file": str(m.path),
                         "weights_file": (m.provenance.get("run") or {}).get("weights_file"),
                         "created": (m.provenance.get("run") or {}).get("started")}
                        for m in members],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": {"featlt": __version__, "numpy": np.__version__,
                         "python": platform.python_version()},
        },
    }
