"""Fixtures for the family tests: the five tiny models, built once per session into a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_families import FAMILIES, build

NAMES = list(FAMILIES)


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → folder of a tiny random model of that family (HF layout: config, safetensors, tokenizer)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("families")
    return {name: build(family, root / name) for name, family in FAMILIES.items()}
