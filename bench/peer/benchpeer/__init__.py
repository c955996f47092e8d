"""The Django Channels peer of Canal's benchmark (see bench/README.md)."""
