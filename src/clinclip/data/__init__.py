"""See SPEC.md; this package is the 'data' part."""
