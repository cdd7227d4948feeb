"""Built-in descriptor plugins."""
