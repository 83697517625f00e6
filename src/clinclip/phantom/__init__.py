"""Phantom data: synthetic MIMIC-style reports and label-driven synthetic radiographs (docs/demo.md).

``generate_phantom(out_dir, PhantomConfig(n_studies=...))`` writes a collection in the MIMIC-CXR-JPG
layout, with counterfactual images (each held-out study without one finding; ``read_counterfactuals``);
``clinclip.apps.demo.run_demo`` runs the end-to-end CPU demo on one.
"""

from clinclip.phantom.generate import PhantomSummary, generate_phantom, load_truth, read_counterfactuals
from clinclip.phantom.studies import PhantomConfig, StudySpec

__all__ = ["PhantomConfig", "PhantomSummary", "StudySpec", "generate_phantom", "load_truth", "read_counterfactuals"]
