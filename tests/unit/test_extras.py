"""The install hint names the facenet-pytorch version the project pins."""

from __future__ import annotations

from fakescope.extras import FACENET_REQUIREMENT, TRAINING_INSTALL_HINT
from fakescope.paths import PROJECT_ROOT


def test_facenet_requirement_is_the_constraints_pin_when_parsed():
    pins = {
        line.split("==")[0]: line
        for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert pins["facenet-pytorch"] == FACENET_REQUIREMENT
    assert f"--no-deps {FACENET_REQUIREMENT}" in TRAINING_INSTALL_HINT
