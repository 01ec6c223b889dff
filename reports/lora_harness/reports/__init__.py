"""Report documents: the canonical run JSON, its schema, and the renderers (HTML, JUnit, compare) that read only that JSON."""
