"""The feature store: one HDF5 file per (backbone, dataset), its schema, provenance and resume.

- :mod:`~featlt.store.feature_store`: the schema, and :class:`FeatureStore`, which reads a store
  back in chunks under a memory budget, checking block digests;
- :mod:`~featlt.store.writer`: :class:`StoreWriter`, which writes a store batch by batch
  (crash-safe, resumable);
- :mod:`~featlt.store.files`: what both share about a file on disk (schema version, the
  ``.partial`` name, locked and damaged files);
- :mod:`~featlt.store.provenance`: provenance comparison (which attribute of two records
  differs) and backbone identity;
- :mod:`~featlt.store.digests`: block digests; :mod:`~featlt.store.verification`: whether reads
  check them;
- :mod:`~featlt.store.indirection`: the walk that refuses data stored outside the file;
  :mod:`~featlt.store.joined`: the rules a joined store's sources must meet;
  :mod:`~featlt.store.join_writer`: joining a torchrun extraction's shard stores into one store
  of virtual datasets (the writer's side of those rules).

Layer: store (may import only errors, runtime and file_hash). See docs/architecture.md.
"""
