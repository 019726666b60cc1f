"""Extraction: images through a frozen backbone into a feature store, crash-safe and resumable.

- :mod:`featlt.extract.pipeline` — the extraction loop (:func:`extract_features`);
- :mod:`featlt.extract.decode_loader` — DataLoader workers that decode, transform and batch;
- :mod:`featlt.extract.batch_normalize` — a batch's uint8 pixels to normalised floats;
- :mod:`featlt.extract.augment` — the augmentation policies of ``--views``;
- :mod:`featlt.extract.thread_policy` — how many threads the forward pass gets;
- :mod:`featlt.extract.distributed` — torchrun: this process's rank, its shard of the rows,
  agreement between processes; :mod:`featlt.extract.shards` — what one rank writes and the
  checks around it (the join itself: :mod:`featlt.store.join_writer`);
- :mod:`featlt.extract.device_decode` — JPEG decoding, resize and crop on the forward's device.

The backbones themselves (timm models, raw pixels, weights conversion, the zoo, forward paths)
are the adapters in the top-level ``extractors/`` folder, installed as ``featlt.extractors``.

Layer: extract (may import errors, runtime, store, data, evaluation, cluster and
featlt.extractors). See docs/architecture.md.
"""
