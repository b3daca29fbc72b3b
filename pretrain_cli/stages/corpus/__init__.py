"""The corpus stage: raw dumps, text and JSON(L) files to cleaned documents split into sentences."""
