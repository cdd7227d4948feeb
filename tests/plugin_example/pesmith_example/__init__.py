"""pesmith_example: an outside pesmith plugin (a radial-only Gaussian descriptor)."""
