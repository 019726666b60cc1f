"""Head/tail separability and transferability scores on frozen features (ALGORITHMS.md §6).

One module per job; every score is a plain function ``score(X, y, ...) -> float | dataclass``:

- :mod:`featlt.scores.common` — label checks, class sums, per-class recall;
- :mod:`featlt.scores.moments` — streamed feature moments (Gram matrices, class sums, covariance);
- :mod:`featlt.scores.logme` — LogME (You et al. 2021) and featlt's class-balanced LogME;
- :mod:`featlt.scores.gaussian` — PCA, GBC (Pandy et al. 2022), Bhattacharyya overlaps;
- :mod:`featlt.scores.neighbours` — stratified kNN and NCM balanced accuracy, kNN confusion;
- :mod:`featlt.scores.clustering` — purity/NMI of a global k-means, the density mixture and the
  make-up of its densest fraction (DLSA's observation);
- :mod:`featlt.scores.bins` — class x class values reduced to shot-group x shot-group matrices.

:mod:`featlt.separability` assembles them into the report.
"""
