"""Placeholder: filled in by the losses ops."""

__all__: list[str] = []
