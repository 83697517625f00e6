"""clinclip: chest X-ray vision-language models that understand negation.

Parts (one sub-package each, see docs/ARCHITECTURE.md): ``data`` (dataset adapters and image I/O),
``text`` (report pipeline), ``models`` (encoders, save/load, external wrappers), ``losses``,
``train``, ``evaluate``, ``phantom`` (embedded synthetic data) and ``cli``.

Importing clinclip registers ``model_type: clinclip`` with transformers' ``AutoConfig`` / ``AutoModel``
(``clinclip.models.transformers_auto``) -- at once when transformers is already imported, else right after
its first import, so that ``import clinclip`` itself stays fast.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register_with_transformers() -> None:
    from clinclip.models.transformers_auto import register

    register()


class _RegisterAfterTransformersImport(importlib.abc.MetaPathFinder):
    """One-shot import hook: lets the real finder locate transformers, then registers after it loads."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _register_with_transformers()

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_with_transformers()
elif importlib.util.find_spec("transformers") is not None:
    sys.meta_path.insert(0, _RegisterAfterTransformersImport())
