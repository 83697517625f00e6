"""See SPEC.md; this package is the 'phantom' part."""
