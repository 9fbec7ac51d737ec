"""Small shared helpers (atomic file writes, seeding)."""
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_torch_save

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_torch_save"]
