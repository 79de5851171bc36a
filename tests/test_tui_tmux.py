"""The installed tfminima-tui in a real terminal: scripts/tui_tmux_check.sh driven through tmux."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "tui_tmux_check.sh"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.skipif(shutil.which("tfminima-tui") is None, reason="tfminima-tui is not installed (pip install -e .)")
def test_tui_in_tmux_launches_quickstart_and_shows_progress():
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "PASS" in out.stdout and "epoch progress appears in the table" in out.stdout
