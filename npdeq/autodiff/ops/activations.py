"""Placeholder: filled in by the activations ops."""

__all__: list[str] = []
