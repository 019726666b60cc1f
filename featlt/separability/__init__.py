"""The separability report: how well a feature space keeps rare classes apart.

- :mod:`featlt.separability.scores` — one module per family of scores (kNN/NCM, LogME, GBC,
  clustering, bin matrices), each a plain function ``score(X, y, ...)``;
- :mod:`featlt.separability.evaluate` — assembles them on a store's index view;
- :mod:`featlt.separability.samples` — the drawn rows the k-means stages train on;
- :mod:`featlt.separability.budget` — how a report keeps ``--memory-budget`` (or refuses it);
- :mod:`featlt.separability.report` — the comparison table and the JSON report;
- :mod:`featlt.separability.plots` — the PNG plots.

Layer: separability (may import errors, runtime, store, data, evaluation and cluster). See
docs/architecture.md.
"""
