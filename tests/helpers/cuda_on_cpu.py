"""Run a simple CUDA raw kernel on the CPU: its source compiled with the host C++
compiler, each block run in turn with one thread per CUDA thread.

For kernels that use only ``blockIdx``/``threadIdx``, ``__shared__`` arrays,
``__syncthreads()`` and the math functions of ``<cmath>`` (the one-launch recurrent
steps of the cupy backend): ``__shared__`` becomes a function-local ``static`` (one
block runs at a time) and ``__syncthreads()`` a ``std::barrier`` over the block's
threads, so the kernel's own index arithmetic, tiling and synchronisation run as
written. Warp-level behaviour, atomics and the CUDA memory model are not emulated.

    kernel = compile_kernel(source, name, tmp_path)  # None without a C++20 compiler
    kernel(grid, block, args)                         # as cupy.RawKernel is called
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

_PRELUDE = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
using std::exp; using std::min; using std::tanh;
struct dim3_ { int x, y, z; };
static dim3_ blockIdx;
static thread_local dim3_ threadIdx;
static std::barrier<>* block_barrier;
static void __syncthreads() { block_barrier->arrive_and_wait(); }
#define __global__
#define __shared__ static
"""

_LAUNCH = r"""
extern "C" void launch({signature}, int grid_x, int grid_y, int threads) {{
    for (int by = 0; by < grid_y; ++by)
        for (int bx = 0; bx < grid_x; ++bx) {{
            blockIdx = dim3_{{bx, by, 0}};
            std::barrier<> barrier(threads);
            block_barrier = &barrier;
            std::vector<std::thread> team;
            for (int tx = 0; tx < threads; ++tx)
                team.emplace_back([&, tx] {{
                    threadIdx = dim3_{{tx, 0, 0}};
                    {name}({names});
                }});
            for (auto& member : team) member.join();
        }}
}}
"""


def _parameters(source: str, name: str) -> list[tuple[str, str]]:
    """(C type, name) of each parameter of kernel ``name``, comments removed."""
    source = re.sub(r"//[^\n]*", "", source)
    start = source.index(f"void {name}(") + len(f"void {name}(")
    body = source[start : source.index(")", start)]
    found = []
    for declaration in body.split(","):
        declaration = " ".join(declaration.split())
        c_type, _, parameter = declaration.rpartition(" ")
        if parameter.startswith("*"):
            c_type, parameter = c_type + "*", parameter[1:]
        found.append((c_type, parameter))
    return found


def compile_kernel(source: str, name: str, workdir: Path):
    """The kernel ``name`` of ``source`` as a callable ``kernel(grid, block, args)``
    over NumPy arrays and NumPy scalars, or None where no C++20 compiler is found."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        return None
    parameters = _parameters(source, name)
    typedef = re.search(r"typedef (\w+) T;", source).group(1)
    signature = ", ".join(f"{c_type} {p}" for c_type, p in parameters)
    names = ", ".join(p for _, p in parameters)
    code = (
        _PRELUDE + source + _LAUNCH.format(signature=signature, name=name, names=names)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path_cpp = workdir / f"{name}.cpp"
    path_so = workdir / f"{name}.so"
    path_cpp.write_text(code)
    result = subprocess.run(
        [compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
         str(path_cpp), "-o", str(path_so)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        if "barrier" in result.stderr and "No such file" in result.stderr:
            return None  # a compiler without C++20's <barrier>
        raise RuntimeError(f"{name} does not compile:\n{result.stderr}")
    library = ctypes.CDLL(str(path_so))
    scalar = {"int": ctypes.c_int, "float": ctypes.c_float, "double": ctypes.c_double}
    scalar["T"] = scalar[typedef]
    float_dtype = np.float32 if typedef == "float" else np.float64
    pointer_dtype = {"T": np.dtype(float_dtype), "int": np.dtype(np.int32)}

    def kernel(grid, block, args):
        assert len(args) == len(parameters), (len(args), parameters)
        converted = []
        for (c_type, parameter), value in zip(parameters, args, strict=True):
            if c_type.endswith("*"):
                # what a device pointer demands: the C type, contiguous memory
                base = c_type.replace("const", "").replace("*", "").strip()
                assert isinstance(value, np.ndarray), parameter
                assert value.dtype == pointer_dtype[base], (parameter, value.dtype)
                assert value.flags.c_contiguous, f"{parameter} is not contiguous"
                converted.append(ctypes.c_void_p(value.ctypes.data))
            else:
                converted.append(
                    scalar[c_type](value.item() if hasattr(value, "item") else value)
                )
        library.launch(
            *converted,
            ctypes.c_int(int(grid[0])),
            ctypes.c_int(int(grid[1])),
            ctypes.c_int(int(block[0])),
        )

    return kernel
