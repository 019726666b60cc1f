"""The one exception family featlt raises for bad input.

Every message names the input, the problem and the fix, e.g.
``"weights file /x/y.pth: not found for backbone tf_efficientnet_lite0; pass an existing file
with --weights or run `featlt weights convert`"``. The CLI prints the message without a traceback
and exits with status 2.
"""


class FeatltError(Exception):
    """Bad input or an impossible request; the message says what to do."""


class StoreError(FeatltError):
    """A feature store is missing, incomplete, malformed or inconsistent."""


class ProvenanceMismatchError(StoreError):
    """Two provenance records disagree on an attribute that matters."""
