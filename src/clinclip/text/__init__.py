"""See SPEC.md; this package is the 'text' part."""
