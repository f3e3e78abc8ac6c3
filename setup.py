"""Build the Cython helpers in place: ``python setup.py build_ext --inplace``.

Extensions:
    lib.bbox.bbox        IoU (Cython)
    lib.nms.cpu_nms      greedy NMS (Cython)
    lib.nms.gpu_nms      CUDA bitmask NMS; only with ``DCN_WITH_CUDA=1`` (needs nvcc)

CUDA options (environment):
    DCN_WITH_CUDA=1      build lib.nms.gpu_nms
    CUDA_HOME            toolkit root (default: /usr/local/cuda, else found from nvcc on PATH)
    DCN_CUDA_ARCHS       space-separated SM versions, default "75 80 86 89 90" (CUDA 13 needs
                         sm_75 or newer); PTX for the last one is embedded too
"""

import os
import shutil

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CYTHON_DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False}
CXX_FLAGS = ["-O3", "-Wno-unused-function"]
NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]


def locate_cuda() -> dict:
    """Paths of the CUDA toolkit: ``{'home', 'nvcc', 'include', 'lib64'}``."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and os.path.exists("/usr/local/cuda/bin/nvcc"):
        home = "/usr/local/cuda"
    if not home:
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            raise OSError("DCN_WITH_CUDA=1 but nvcc was not found: set CUDA_HOME or fix PATH")
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    cuda = {
        "home": home,
        "nvcc": os.path.join(home, "bin", "nvcc"),
        "include": os.path.join(home, "include"),
        "lib64": os.path.join(home, "lib64"),
    }
    for key in ("nvcc", "include", "lib64"):
        if not os.path.exists(cuda[key]):
            raise OSError(f"CUDA {key} not found at {cuda[key]} (CUDA_HOME={home})")
    return cuda


def nvcc_flags() -> list:
    archs = os.environ.get("DCN_CUDA_ARCHS", "75 80 86 89 90").split()
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags + ["-O3", "-std=c++17", "--compiler-options", "-fPIC"]


class BuildExt(build_ext):
    """build_ext that sends ``.cu`` sources to nvcc (py-faster-rcnn's
    ``customize_compiler_for_nvcc``) and everything else to the C/C++ compiler."""

    nvcc = None  # set when a CUDA extension is built

    def build_extensions(self):
        if self.nvcc is not None:
            compiler = self.compiler
            compiler.src_extensions.append(".cu")
            host_compile = compiler._compile
            nvcc = self.nvcc

            def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
                if os.path.splitext(src)[1] != ".cu":
                    return host_compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
                compiler.spawn([nvcc] + cc_args + [src, "-o", obj] + nvcc_flags())

            compiler._compile = _compile
        super().build_extensions()


def extensions() -> list:
    exts = [
        Extension(
            "lib.bbox.bbox",
            ["lib/bbox/bbox.pyx"],
            include_dirs=[np.get_include()],
            define_macros=NUMPY_MACROS,
            extra_compile_args=CXX_FLAGS,
        ),
        Extension(
            "lib.nms.cpu_nms",
            ["lib/nms/cpu_nms.pyx"],
            include_dirs=[np.get_include()],
            define_macros=NUMPY_MACROS,
            extra_compile_args=CXX_FLAGS,
        ),
    ]
    if os.environ.get("DCN_WITH_CUDA") == "1":
        cuda = locate_cuda()
        BuildExt.nvcc = cuda["nvcc"]
        exts.append(
            Extension(
                "lib.nms.gpu_nms",
                ["lib/nms/nms_kernel.cu", "lib/nms/gpu_nms.pyx"],
                language="c++",
                include_dirs=[np.get_include(), cuda["include"], "lib/nms"],
                define_macros=NUMPY_MACROS,
                extra_compile_args=CXX_FLAGS + ["-std=c++17"],
                library_dirs=[cuda["lib64"]],
                # static cudart: the module then needs only the driver (libcuda) at run time
                libraries=["cudart_static", "rt", "pthread", "dl"],
            )
        )
    return cythonize(exts, compiler_directives=CYTHON_DIRECTIVES, quiet=True)


setup(
    packages=[],
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
