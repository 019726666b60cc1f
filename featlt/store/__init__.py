"""The feature store: one HDF5 file per (backbone, dataset), its schema, provenance and resume.

:mod:`featlt.store.feature_store` writes a store batch by batch (crash-safe, resumable) and reads
it back in chunks under a memory budget; it also compares provenance records (which attribute of
two stores' backbones differs).

Layer: store (may import only errors, runtime and file_hash). See docs/architecture.md.
"""
