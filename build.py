"""cffi builder for ``rtms_fast._native`` (API / out-of-line mode).

``pip install .`` and ``pip install -e .`` run this through setuptools
(``setup.py`` names ``build.py:ffibuilder``). For a quick rebuild in a source
tree, ``python build.py`` compiles the module straight into ``src/rtms_fast``
(built in a private temporary directory and moved into place atomically, so
parallel rebuilds never see a half-written library).

The C declarations are read from ``csrc/rtms_native.h``: everything between the
``RTMS_CDEF_BEGIN`` and ``RTMS_CDEF_END`` markers, minus preprocessor lines, is
handed to ``ffi.cdef``. One header is both the C API and the Python binding.

Environment knobs (for tests and CI, not for users):
  RTMS_NATIVE_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  RTMS_NATIVE_MODULE=name  compile under another module name (the sanitizer build)
  RTMS_NATIVE_NO_OPENSSL=1 build the TLS client (csrc/tls.c) without OpenSSL, as when its
                           headers or libraries are missing: rtms_tls_available() is 0

The TLS client links libssl and libcrypto (OpenSSL 1.1.1 or later) when a test program
that includes <openssl/ssl.h> compiles and links with the C compiler; otherwise tls.c is
built with -DRTMS_NO_OPENSSL (every function present, reporting "unavailable").
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
HEADER = CSRC / "rtms_native.h"


def _read_cdef() -> str:
    try:
        text = HEADER.read_text(encoding="utf-8")
    except OSError as exc:  # pragma: no cover - only on a broken checkout
        raise SystemExit(f"rtms-fast build: cannot read {HEADER}: {exc}") from exc
    match = re.search(r"RTMS_CDEF_BEGIN\s*\*/(.*?)/\*\s*RTMS_CDEF_END", text, re.S)
    if match is None:
        raise SystemExit(f"rtms-fast build: {HEADER} lacks the RTMS_CDEF_BEGIN/END markers")
    lines = [ln for ln in match.group(1).splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(lines)


def _compile_args(sanitize: bool) -> list[str]:
    if sys.platform == "win32":  # pragma: no cover - MSVC
        return ["/O2", "/std:c11"]
    args = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"]
    if sanitize:
        args = [
            "-std=c11", "-O1", "-g", "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
        ]
    return args


_OPENSSL_PROBE = """
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "OpenSSL older than 1.1.1"
#endif
int main(void) { SSL_CTX *c = SSL_CTX_new(TLS_client_method()); SSL_CTX_free(c); return 0; }
"""


def openssl_usable() -> bool:
    """Whether a small program using libssl compiles and links: with $CC (else the
    compiler Python was built with), $CFLAGS, $CPPFLAGS and $LDFLAGS, as the build uses."""
    if os.environ.get("RTMS_NATIVE_NO_OPENSSL") == "1" or sys.platform == "win32":
        return False
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    flags = [*shlex.split(os.environ.get("CFLAGS", "")),
             *shlex.split(os.environ.get("CPPFLAGS", ""))]
    with tempfile.TemporaryDirectory(prefix="rtms-openssl-probe-") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(_OPENSSL_PROBE, encoding="utf-8")
        cmd = [*cc, *flags, str(src), "-o", str(Path(tmp) / "probe"),
               *shlex.split(os.environ.get("LDFLAGS", "")), "-lssl", "-lcrypto"]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def make_builder(
    module_name: str = "rtms_fast._native", sanitize: bool = False, absolute: bool = False
) -> FFI:
    """A cffi builder; setuptools wants relative source paths, ffi.compile() absolute ones."""
    paths = sorted(CSRC.glob("*.c"))
    sources = [str(p if absolute else p.relative_to(HERE)) for p in paths]
    if not sources:
        raise SystemExit(f"rtms-fast build: no C sources found in {CSRC}")
    libraries = [] if sys.platform == "win32" else ["m"]
    macros: list[tuple[str, str | None]] = []
    if openssl_usable():
        libraries += ["ssl", "crypto"]
    else:
        macros.append(("RTMS_NO_OPENSSL", "1"))
    builder = FFI()
    builder.cdef(_read_cdef())
    builder.set_source(
        module_name,
        '#include "rtms_native.h"',
        sources=sources,
        include_dirs=[str(CSRC)],
        define_macros=macros,
        extra_compile_args=_compile_args(sanitize),
        extra_link_args=["-fsanitize=address,undefined"] if sanitize else [],
        libraries=libraries,
    )
    return builder


ffibuilder = make_builder(
    os.environ.get("RTMS_NATIVE_MODULE", "rtms_fast._native"),
    sanitize=os.environ.get("RTMS_NATIVE_SANITIZE") == "1",
)


def build_inplace(target_dir: Path | None = None) -> Path:
    """Compile into ``src/rtms_fast`` (or ``target_dir``); return the library path."""
    import shutil

    dest = target_dir or HERE / "src" / "rtms_fast"
    builder = make_builder(
        os.environ.get("RTMS_NATIVE_MODULE", "rtms_fast._native"),
        sanitize=os.environ.get("RTMS_NATIVE_SANITIZE") == "1",
        absolute=True,
    )
    with tempfile.TemporaryDirectory(prefix="rtms-native-") as tmp:
        built = Path(builder.compile(tmpdir=tmp, verbose=False))
        final = dest / built.name
        staged = dest / (built.name + f".{os.getpid()}.tmp")
        shutil.copy2(built, staged)
        os.replace(staged, final)
    return final


if __name__ == "__main__":
    print(build_inplace())
