"""See SPEC.md; this package is the 'train' part."""
