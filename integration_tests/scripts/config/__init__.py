"""zencfg configs of the stand-in training scripts (laid out like upstream's config/ folder)."""
