"""tests/conftest.py keeps every test (and every process a test starts) out of the developer's own
user data dir: the run registry and the default runs root live in a temp dir."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from ftwizard.core.runs import default_runs_root, registry_path


def test_the_registry_and_default_runs_root_are_never_the_real_ones(_isolated_user_data):
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    here = [registry_path(), default_runs_root()]
    out = subprocess.run([sys.executable, "-c", "from ftwizard.core.runs import default_runs_root, registry_path;"
                          "print(registry_path()); print(default_runs_root())"],
                         capture_output=True, text=True, check=True).stdout.split()
    for path in here + [Path(p) for p in out]:
        assert path.is_relative_to(_isolated_user_data) and not path.is_relative_to(real_home), path
