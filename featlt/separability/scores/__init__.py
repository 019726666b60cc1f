"""Head/tail separability and transferability scores on frozen features (docs/methods.md).

One module per job; every score is a plain function ``score(X, y, ...) -> float | dataclass``:

- :mod:`featlt.separability.scores.common` — label checks, class sums, per-class recall;
- :mod:`featlt.separability.scores.moments` — streamed feature moments (Gram matrices, class sums,
  covariance);
- :mod:`featlt.separability.scores.logme` — LogME (You et al. 2021) and featlt's class-balanced
  LogME;
- :mod:`featlt.separability.scores.gaussian` — PCA, GBC (Pandy et al. 2022), Bhattacharyya overlaps;
- :mod:`featlt.separability.scores.neighbours` — stratified kNN and NCM balanced accuracy, kNN
  confusion;
- :mod:`featlt.separability.scores.clustering` — purity/NMI of a global k-means, the density
  mixture and the make-up of its densest fraction (DLSA's observation);
- :mod:`featlt.separability.scores.bins` — class x class values reduced to shot-group x shot-group
  matrices.

:mod:`featlt.separability.evaluate` assembles them into the report.
"""
