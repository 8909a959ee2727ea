"""Builds the compiled hot path (``nss/hot/_compiled.pyx``) where it can.

Without Cython or a C compiler the build goes on without it and nss runs
its pure-Python path (``nss.hot.pure``): same behaviour, slower. Set
``NSS_PURE_BUILD=1`` to skip the compile on purpose."""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - any toolchain failure
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._skip(e)

    @staticmethod
    def _skip(e: BaseException) -> None:
        print(f"nss: compiled hot path not built ({e}); using the pure-Python path", file=sys.stderr)


def extensions() -> list[Extension]:
    if os.environ.get("NSS_PURE_BUILD", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("nss: Cython not available; using the pure-Python path", file=sys.stderr)
        return []
    ext = Extension("nss.hot._compiled", ["nss/hot/_compiled.pyx"], extra_compile_args=["-O2"])
    return cythonize([ext], language_level=3, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
