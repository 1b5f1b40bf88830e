"""What the CI scripts share: the repository's root and its `cargo metadata`."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cargo_metadata():
    """`cargo metadata` of the whole workspace, every feature on, from Cargo.lock."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE,
    ).stdout
    return json.loads(out)
