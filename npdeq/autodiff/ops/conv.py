"""Placeholder: filled in by the conv ops."""

__all__: list[str] = []
