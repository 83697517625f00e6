"""Applications built from the library's public functions: ``demo`` (the method end to end on phantom data).

Nothing in the library imports from here; apps sit on top of data, text, models, train, evaluate and
phantom."""
