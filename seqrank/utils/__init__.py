"""Small user-facing utilities: colour maps and results-file helpers."""
