"""Small shared utilities: device selection, distributed helpers, logging."""
