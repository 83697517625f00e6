"""See SPEC.md; this package is the 'evaluate' part."""
