"""Provider types: one module per type, found through :mod:`engine.providers.registry`."""
