"""Head/tail separability and transferability scores on frozen features (docs/methods.md).

One module per job; every score is a plain function ``score(X, y, ...) -> float | dataclass``.
The modules of this package:

- ``common``: the input checks every score shares;
- ``moments``: streamed feature moments (Gram matrices, class sums, covariance);
- ``logme``: LogME (You et al. 2021) and featlt's class-balanced LogME;
- ``gaussian``: PCA, GBC (Pandy et al. 2022), Bhattacharyya overlaps;
- ``sfda``: SFDA (Shao et al. 2022), a comparator of ``featlt rank``;
- ``neighbours``: stratified kNN and NCM balanced accuracy, kNN confusion;
- ``ridge_probe``: the class-balanced ridge probe scored by exact leave-one-out predictions over
  a grid of ridge strengths (a candidate of issue 17; its k-fold trained-head sibling is
  :mod:`featlt.rank.cv_head_score`, since this package may not import the heads);
- ``clustering``: purity and NMI of a global k-means;
- ``bins``: class x class values reduced to shot-group x shot-group matrices.

The density mixture and the make-up of its densest fraction (DLSA's observation) live in
:mod:`featlt.cluster.density`; :mod:`featlt.separability.evaluate` assembles everything into the
report.
"""
