"""Command-line interface: `clinclip ...`; one module per part registers its commands."""
