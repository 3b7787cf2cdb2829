"""What the newcomer's docs (docs/architecture.md, CONTRIBUTING.md) say about the code, pinned where it is cheap."""

from __future__ import annotations

import re

import pytest

from detectors.state import ENCODING_VERSION
from tests.conftest import ROOT

DOCS = ["docs/architecture.md", "CONTRIBUTING.md", "docs/performance.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_the_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:detectors|schemas|streams|scripts|tests|bench|docs|deploy)/[\w./-]+)`", text))
    assert named, "the pattern found nothing: it is out of step with the doc"
    missing = sorted(p for p in named if "<" not in p and not (ROOT / p.split(" ")[0]).exists())
    assert not missing, f"{doc} names files that do not exist: {missing}"


def test_the_architecture_states_the_current_state_encoding() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "compact JSON array" not in text  # the state has been packed binary since encoding 3
    assert f"`ENCODING_VERSION` in `state.py` lists what each version added (now {ENCODING_VERSION}:" in text
