"""In the environment the tests run in (A1111 pins, Forge pins, current): installing us changes nothing."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _freeze() -> list:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                         check=True).stdout
    return sorted(l for l in out.splitlines() if l and not l.startswith("-e "))


def test_install_py_changes_no_installed_version():
    before = _freeze()
    p = subprocess.run([sys.executable, str(ROOT / "install.py")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert _freeze() == before


def test_pip_would_install_nothing_from_requirements():
    """Our declared minimums are satisfied by every host set the matrix runs (no upgrade, no downgrade)."""
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-r",
                        str(ROOT / "requirements.txt")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Would install" not in p.stdout, p.stdout
