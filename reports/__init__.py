"""Report documents: the canonical run JSON, its schema, and (later) renderers from it."""
