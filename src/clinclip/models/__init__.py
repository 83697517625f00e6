"""See SPEC.md; this package is the 'models' part."""
