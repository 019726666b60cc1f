"""Apply saved heads to raw images: the backbone rebuilt from provenance, then the head."""
