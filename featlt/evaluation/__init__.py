"""Long-tail evaluation of predictions: shot groups and the metrics every result reports.

- :mod:`featlt.evaluation.shots` — head/mid/tail thirds and many/medium/few groups from the
  training class counts;
- :mod:`featlt.evaluation.metrics` — balanced accuracy (scikit-learn), per-group accuracy,
  worst class, macro-F1, NLL, ECE and bootstrap intervals;
- :mod:`featlt.evaluation.bootstrap` — the one bootstrap of evaluation rows (paired over models)
  and the one NaN-aware mean over classes, used by the metrics and by ``featlt rank``.

Layer: evaluation (may import errors, runtime, store and data). See docs/architecture.md.
"""
