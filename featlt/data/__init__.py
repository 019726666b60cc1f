"""Dataset sources, long-tail profiles and the one validation-split function."""
