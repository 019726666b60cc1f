"""Combined feature sets: several stores of one dataset joined into one feature per image.

For every image the members share, the combined feature is the concatenation of each member's
L2-normalised feature (:data:`featlt.store.members.RECIPE`, applied by
:func:`featlt.store.members.apply_recipe`).

- :mod:`~featlt.combine.inputs`: the member stores opened and checked (one dataset, distinct
  features, not combined themselves, the width bound);
- :mod:`~featlt.combine.rows`: the images the members share, matched on source positions;
- :mod:`~featlt.combine.record`: the combination's provenance;
- :mod:`~featlt.combine.arrays`: a combination in memory, for scoring without a file
  (:func:`~featlt.combine.arrays.combine_members`);
- :mod:`~featlt.combine.write`: ``featlt combine``, one combined store written through the
  store writer (:func:`~featlt.combine.write.combine_stores`).

Layer: combine (may import the store, data and the base).
"""
