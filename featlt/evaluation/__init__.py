"""Long-tail evaluation of predictions: shot groups and the metrics every result reports.

- :mod:`featlt.evaluation.shots` — head/mid/tail thirds and many/medium/few groups from the
  training class counts;
- :mod:`featlt.evaluation.metrics` — balanced accuracy (scikit-learn), per-group accuracy,
  worst class, macro-F1, NLL, ECE and bootstrap intervals.

Layer: evaluation (may import errors, runtime, store and data). See docs/architecture.md.
"""
