"""Clustering on feature vectors, shared by the separability report and the seed-method heads.

- :mod:`featlt.cluster.faiss_ops` — the only module that imports faiss: device resolution,
  k-means, assignment, kNN search, input guards;
- :mod:`featlt.cluster.prototypes` — L2 normalisation of feature rows, class sums and cosine
  scores against class means (the nearest-class-mean math of the NCM head and the separability
  scores);
- :mod:`featlt.cluster.rows` — training rows read block by block, from an array or from a store
  chunk by chunk (``--memory-budget``);
- :mod:`featlt.cluster.lowp_search` — kNN by bfloat16 candidates re-ranked exactly in float32;
- :mod:`featlt.cluster.density` — the cluster-size-weighted Gaussian mixture (log-density per
  sample) and the make-up of its densest fraction;
- :mod:`featlt.cluster.splitting` — the classwise split plan and the split itself (CWS).

Layer: cluster (may import errors, runtime, store, data and evaluation). See
docs/architecture.md.
"""
