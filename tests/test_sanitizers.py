"""Build the whole native extension with AddressSanitizer + UndefinedBehaviorSanitizer
and replay the ingest fuzz corpus plus a few thousand seeded mutations through every
parser and the batched ingest kernel, in a subprocess; any sanitizer report fails.

The build goes to a temporary directory under another module name (build.py's
RTMS_NATIVE_SANITIZE / RTMS_NATIVE_MODULE knobs), so the normal build is untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
MODULE = "rtms_native_sanitized"
MUTATIONS = 3000


def _runtime(name: str) -> str | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    path = subprocess.run(
        [cc, f"-print-file-name={name}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def test_kernels_are_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    if sys.platform != "linux" or not (ROOT / "build.py").exists():
        pytest.skip("needs a Linux source checkout with build.py")
    libasan = _runtime("libasan.so")
    if libasan is None:
        pytest.skip("gcc's libasan is not installed")
    env = dict(os.environ, RTMS_NATIVE_SANITIZE="1", RTMS_NATIVE_MODULE=MODULE)
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, build; from pathlib import Path; "
            "print(build.build_inplace(Path(sys.argv[1])))",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    run_env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        PYTHONMALLOC="malloc",  # every Python object gets redzones too
        ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=66",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=67",
    )
    run = subprocess.run(
        [
            sys.executable,
            str(TESTS / "_sanitizer_driver.py"),
            str(tmp_path),
            MODULE,
            str(TESTS / "data" / "ingest-corpus"),
            str(MUTATIONS),
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "sanitizer driver: ok" in run.stdout
    # both TLS receive paths ran (unless this build has no OpenSSL)
    if "TLS unavailable" not in run.stdout:
        tls_line = next(line for line in run.stdout.splitlines() if "TLS ok" in line)
        assert "'own records': 0" not in tls_line, tls_line
    assert "runtime error" not in report and "AddressSanitizer" not in report, report[-6000:]
