"""The process-wide default for checking block digests when a feature store is read.

Every reading command checks the digests of the blocks it reads unless ``--no-verify`` was
given; the CLI sets :func:`set_default` once per command, and
:class:`featlt.store.feature_store.FeatureStore` (``verify=None``) reads :func:`default`.

No h5py or numpy import here, so the CLI can import this module and stay instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_verify_default = True


def default() -> bool:
    """Whether stores opened with ``verify=None`` check their block digests (True unless
    ``--no-verify``)."""
    return _verify_default


def set_default(verify: bool) -> None:
    """Set the default for every store this process opens with ``verify=None``."""
    global _verify_default
    _verify_default = bool(verify)


@contextmanager
def default_set_to(verify: bool) -> Iterator[None]:
    """Use ``verify`` as the default inside the block, then restore the previous one."""
    previous = default()
    set_default(verify)
    try:
        yield
    finally:
        set_default(previous)
