"""Data: the synthetic head family, datasets and image files."""
