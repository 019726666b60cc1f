"""Shot-group x shot-group ("bin-by-bin") separability matrices [featlt's design].

Rows are the group of a class, columns the group of *other* classes; an empty group's row and
column are NaN (null in JSON). Two matrices:

- kNN confusion: entry (g, h) is the mean over classes c in g of the share of c's queries' k
  nearest neighbours that belong to a class other than c in group h. Lower is better; the row sum
  plus the own-class share is 1.
- Bhattacharyya overlap: entry (g, h) is the mean Bhattacharyya coefficient over ordered pairs
  (c in g, c' in h, c' != c) of the shrunk diagonal class Gaussians. Lower is better.
"""

from __future__ import annotations

import numpy as np

from featlt.separability.scores.gaussian import bhattacharyya_rows


def knn_bin_matrix(
    query_labels: np.ndarray, neighbour_labels: np.ndarray, group_of: np.ndarray, n_groups: int
) -> np.ndarray:
    """(G, G) kNN confusion between groups.

    Args:
        query_labels: (q,) int class of each query; neighbour_labels: (q, k) their neighbours.
        group_of: (C,) int group of each class, -1 for classes outside every group.
    """
    n_classes = group_of.size
    k = neighbour_labels.shape[1]
    other = neighbour_labels != query_labels[:, None]
    shares = np.zeros((query_labels.size, n_groups))
    neighbour_groups = group_of[neighbour_labels]
    for h in range(n_groups):
        shares[:, h] = (other & (neighbour_groups == h)).sum(axis=1) / k
    per_class = np.zeros((n_classes, n_groups))
    np.add.at(per_class, query_labels, shares)
    n_queries = np.bincount(query_labels, minlength=n_classes)
    with np.errstate(invalid="ignore"):
        per_class /= n_queries[:, None]
    matrix = np.full((n_groups, n_groups), np.nan)
    for g in range(n_groups):
        members = np.flatnonzero((group_of == g) & (n_queries > 0))
        if members.size:
            matrix[g] = per_class[members].mean(axis=0)
    matrix[:, ~np.isin(np.arange(n_groups), group_of)] = np.nan  # empty group: null column
    return matrix


def bhattacharyya_bin_matrix(
    means: np.ndarray, variances: np.ndarray, group_of: np.ndarray, n_groups: int
) -> np.ndarray:
    """(G, G) mean Bhattacharyya coefficient between classes of two groups.

    Args:
        means: (C, k) and variances: (C, k) of the diagonal class Gaussians (rows of classes with
            ``group_of == -1`` are ignored and may be NaN).
        group_of: (C,) int group of each class, -1 for classes outside every group.
    """
    members = np.flatnonzero(group_of >= 0)
    groups = group_of[members]
    sums = np.zeros((n_groups, n_groups))
    pairs = np.zeros((n_groups, n_groups))
    for start, dist in bhattacharyya_rows(means[members], variances[members], "diagonal"):
        coeff = np.exp(-dist)
        rows = np.arange(coeff.shape[0])
        coeff[rows, start + rows] = 0.0
        row_groups = groups[start:start + coeff.shape[0]]
        for h in range(n_groups):
            in_h = groups == h
            np.add.at(sums[:, h], row_groups, coeff[:, in_h].sum(axis=1))
            np.add.at(pairs[:, h], row_groups, in_h.sum() - in_h[start + rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, sums / pairs, np.nan)
