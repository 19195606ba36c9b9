"""`./dev demo` registers its guide with BlazePose before the services start: on the real MariaDB, in a
process of its own (MediaPipe writes its start-up notes to the process's file descriptor 2, so only a
separate process shows what the user's terminal would)."""
import os
import subprocess
import sys

REGISTER = """
import asyncio, sys
from pathlib import Path
from rehab.cli.live import _demo_reference
from rehab.settings import Settings
print("id", asyncio.run(_demo_reference(Settings.from_env(), Path(sys.argv[1]))))
"""


def test_the_demo_registers_its_guide_once_with_nothing_from_the_libraries_on_the_terminal(isolated_settings, data_dir):
    guide = data_dir / "pose2sim_single_cam01.mp4"
    env = {**os.environ, **isolated_settings.as_env()}

    def register() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", REGISTER, str(guide)], env=env, capture_output=True, text=True,
                              timeout=240)

    first = register()
    assert first.returncode == 0, first.stderr
    assert "registering pose2sim_single_cam01.mp4" in first.stdout
    # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and the like stay off
    assert first.stderr == ""
    again = register()
    assert again.returncode == 0 and "already registered" in again.stdout and again.stderr == ""
    assert first.stdout.split()[-1] == again.stdout.split()[-1]  # the same reference id
