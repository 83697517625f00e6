"""See SPEC.md; this package is the 'losses' part."""
