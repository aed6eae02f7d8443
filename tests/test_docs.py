"""The docs say what the code does: the option tables of docs/configuration.md are the
config groups' (scripts/config_docs.py)."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_option_tables_are_the_config_groups():
    check = subprocess.run([sys.executable, "scripts/config_docs.py", "--check"], cwd=REPO)
    assert check.returncode == 0, "run `python scripts/config_docs.py` to regenerate them"


def test_every_option_is_in_the_tables():
    from bnexp import options
    text = (REPO / "docs" / "configuration.md").read_text()
    for group in options.GROUPS:
        for name in options.option_files(group):
            assert f"`{group}={name}`" in text
