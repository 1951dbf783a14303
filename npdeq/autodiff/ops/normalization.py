"""Placeholder: filled in by the normalization ops."""

__all__: list[str] = []
