"""clinclip: chest X-ray vision-language models that understand negation.

Parts (one sub-package each, see docs/ARCHITECTURE.md): ``data`` (dataset adapters and image I/O),
``text`` (report pipeline), ``models`` (encoders, save/load, external wrappers), ``losses``,
``train``, ``evaluate``, ``phantom`` (embedded synthetic data) and ``cli``.
"""

__version__ = "0.1.0"
