"""Installs BlazePose's lite and heavy landmark models for offline use.

The mediapipe 0.10.21 wheel ships only the full model and downloads the other two on first use.
The npm package ``@mediapipe/pose`` carries both; mediapipe uses them without downloading when they
sit in its ``modules/pose_landmark/`` folder. ``./dev`` runs this once:

    python -m edge.backends.blazepose_models
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NPM_PACKAGE = "@mediapipe/pose@0.5.1675469404"
MODELS = {  # file -> sha256 of the copy in that npm release
    "pose_landmark_lite.tflite": "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    "pose_landmark_heavy.tflite": "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
}


def modules_dir() -> Path:
    """The mediapipe wheel's model folder (pose_detection/, pose_landmark/, ...)."""
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules"


def model_dir() -> Path:
    return modules_dir() / "pose_landmark"


def missing() -> list[str]:
    folder = model_dir()
    return [name for name in MODELS if not (folder / name).is_file()]


def check_complexity(complexity: int) -> None:
    """A clear error for a model complexity that does not exist or is not installed."""
    from edge.backends.base import BackendError

    if complexity not in (0, 1, 2):
        raise BackendError("BlazePose complexity must be 0 (lite), 1 (full) or 2 (heavy)")
    if complexity != 1 and missing():
        raise BackendError(f"BlazePose {'lite' if complexity == 0 else 'heavy'} is not installed "
                           "(the wheel ships only full); run: python -m edge.backends.blazepose_models")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def web_dir() -> Path:
    """Where the gateway serves the browser build of BlazePose from (/vendor/pose/)."""
    from rehab.settings import Settings

    return Settings.from_env().state_dir / "vendor" / "pose"


def install() -> list[str]:
    """Copies the missing models from the npm package, and unpacks the package's browser build for
    the gateway's edge mode; returns the files installed."""
    todo = missing()
    web = web_dir()
    need_web = not (web / "pose.js").is_file()
    if not todo and not need_web:
        return []
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch BlazePose lite/heavy (@mediapipe/pose); install Node.js")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"npm pack {NPM_PACKAGE} failed: {proc.stderr.strip()[-500:]}")
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            if need_web:
                web.mkdir(parents=True, exist_ok=True)
                for member in tar.getmembers():
                    if member.isfile() and member.name.startswith("package/") and "/" not in member.name[8:]:
                        (web / member.name[8:]).write_bytes(tar.extractfile(member).read())
                todo = todo + ["browser build"]
            for name in (n for n in todo if n in MODELS):
                member = tar.getmember(f"package/{name}")
                src = tar.extractfile(member)
                target = Path(tmp) / name
                target.write_bytes(src.read())
                if _sha256(target) != MODELS[name]:
                    raise RuntimeError(f"{name} from {NPM_PACKAGE} does not match its known checksum")
                shutil.copyfile(target, model_dir() / name)
    return todo


if __name__ == "__main__":
    try:
        done = install()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"BlazePose models installed: {', '.join(done) or 'already present'} in {model_dir()}")
