"""Rank backbones (feature files) for long-tailed data, and prove the ranking (``featlt rank``).

One module per job:

- :mod:`featlt.rank.model` — the data model (settings, inputs, rows, score columns, sort order);
  a leaf: it imports no other ``featlt.rank`` module;
- :mod:`featlt.rank.inputs` — open the files, refuse different datasets, say duplicates once;
- :mod:`featlt.rank.formula` — ``featlt_v1``, the first long-tail-aware formula, from a
  separability report (``featlt`` is :data:`featlt.rank.model.DEFAULT_SCORE`);
- :mod:`featlt.rank.scoring` — cheap mode: the report, SFDA and the candidate scores of one file;
- :mod:`featlt.rank.measured` — full mode: fit (or reuse) the heads, the best validation-selected
  head's test predictions;
- :mod:`featlt.rank.paired` — the measured heads' recall on the shared test images, resampled
  by the one bootstrap (:mod:`featlt.evaluation.bootstrap`);
- :mod:`featlt.rank.quality` — scores missing on a file or saturated (equal on every file);
- :mod:`featlt.rank.validation` — ties, Kendall tau-b, weighted tau, intervals, top-1 regret;
- :mod:`featlt.rank.validate_rows` — every score validated against the measured ranking;
- :mod:`featlt.rank.recommend` — the closing sentence: backbone, head, how sure;
- :mod:`featlt.rank.pairs` — ``--pairs``: the combinations of the files, enumerated (greedily up
  to ``--pairs-max-k``) and scored in memory;
- :mod:`featlt.rank.cost` — each backbone's CPU time per image (a fixed timing run), and a
  combination's;
- :mod:`featlt.rank.combined` — ``--pairs --full``: the chosen combinations written as combined
  stores under ``--heads-dir/combined``, reused while their members are unchanged;
- :mod:`featlt.rank.combination_pick` — a combination named only when its paired
  cross-validated gain over the best single backbone excludes 0;
- :mod:`featlt.rank.ranking` — :func:`rank_files`, which ties them together;
- :mod:`featlt.rank.table`, :mod:`featlt.rank.plots` — text, CSV and PNG output.

Methods and formulas: docs/methods.md, "Ranking backbones" and "Ranking combinations".
"""
