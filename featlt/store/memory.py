"""Resident-memory budgets for chunked reads (``--memory-budget MB`` of fit-classifier,
evaluate-separability and rank): the shared units and the process setting that makes freed
chunks leave resident memory.

A budget is resident memory above the level right after imports; each command plans how many
rows it reads per chunk from what it holds whole and per row (:mod:`featlt.heads.budget`,
:mod:`featlt.separability.budget`) and refuses a budget below its smallest plan, naming it.
"""

from __future__ import annotations

MB = 2**20
MIN_CHUNK_ROWS = 256  # the smallest chunk any plan reads


def return_freed_memory() -> None:
    """Pin glibc's mmap threshold (128 KiB) so that every chunk-sized array is mapped on its
    own and goes back to the system when freed.

    By default glibc raises the threshold after a large block is freed, and later chunks then
    come from the heap, whose fragments stay resident: on a 77 MB store under a 48 MB budget
    that added 12 MB to the peak. The setting lasts for the process; without glibc (no
    ``mallopt``) nothing changes.
    """
    import ctypes
    import ctypes.util

    m_mmap_threshold = -3  # from glibc's <malloc.h>
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(m_mmap_threshold, 128 * 1024)
    except (OSError, AttributeError, TypeError):
        return
