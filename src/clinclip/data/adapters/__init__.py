"""One adapter per dataset (see ``base.py`` for the contract) and the registry ``ADAPTERS``."""

from __future__ import annotations

from clinclip.data.adapters.base import AdapterOptions, DatasetAdapter, PrepareSummary
from clinclip.data.adapters.chexpert import Chexpert5x200Adapter, ChexpertPlusAdapter
from clinclip.data.adapters.cxr14 import ChestXray14Adapter
from clinclip.data.adapters.generic import CsvAdapter
from clinclip.data.adapters.mimic import MimicCxrAdapter
from clinclip.data.adapters.openi import OpenIAdapter
from clinclip.data.adapters.rsna import RsnaPneumoniaAdapter
from clinclip.data.adapters.siim import SiimPneumothoraxAdapter
from clinclip.data.adapters.vindr import VindrCxrAdapter

ADAPTERS: dict[str, type[DatasetAdapter]] = {
    cls.name: cls
    for cls in (MimicCxrAdapter, ChexpertPlusAdapter, OpenIAdapter, RsnaPneumoniaAdapter, SiimPneumothoraxAdapter,
                VindrCxrAdapter, ChestXray14Adapter, Chexpert5x200Adapter, CsvAdapter)
}

__all__ = ["ADAPTERS", "AdapterOptions", "DatasetAdapter", "PrepareSummary", *[c.__name__ for c in ADAPTERS.values()]]
