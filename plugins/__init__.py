"""Built-in pesmith plugins, registered through the same hooks as outside ones."""
