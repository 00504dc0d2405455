"""Lets torchvision (and so timm and transformers) import on a CPU-only torch.

The package registries this project installs from carry torchvision only as CUDA builds. With
the CPU torch wheel `make install` uses, torchvision's compiled `_C` extension does not load
(it links `libc10_cuda.so`), and torchvision then registers fake kernels for two detection
ops (`nms`, `qnms`) that were never defined, so `import torchvision` raises, and with it
`import timm` and transformers' image and even text model imports (transformers imports
torchvision whenever it is installed). Nothing here uses those two ops.

`python -m trainables.tasks.torchvision_cpu` (run by `make install`) installs a startup hook
into the virtual environment: a `.pth` file that puts a finder on `sys.meta_path` which,
the first time anything imports torchvision, tries to load its extension and, only where that
fails, defines the two ops' schemas first. It costs nothing until torchvision is imported and
does nothing where the extension loads (a CUDA torch, as on GPU nodes).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

HOOK_MODULE = "_finetune_sweeps_torchvision_cpu"

# The hook module's source, written next to the `.pth` file; kept free of any import of this
# project so that every Python process of the environment can run it at start-up.
HOOK_SOURCE = '''"""Written by `python -m trainables.tasks.torchvision_cpu`; see there."""
import importlib.abc
import importlib.util
import sys


def _define_missing_ops():
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import glob
    import os

    libraries = []
    for folder in spec.submodule_search_locations:
        libraries += glob.glob(os.path.join(folder, "_C*.so"))
    try:
        for library in libraries:
            torch.ops.load_library(library)
        if libraries:
            return
    except OSError:
        pass
    for op in ("nms", "qnms"):
        try:
            torch.library.define(
                "torchvision::" + op, "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        except RuntimeError:
            pass


class _FirstTorchvisionImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        try:
            _define_missing_ops()
        except Exception:
            pass
        return None


sys.meta_path.insert(0, _FirstTorchvisionImport())
'''


def install(site_packages: Path | None = None) -> Path:
    """Writes the hook module and its `.pth` into `site_packages` (default: this
    interpreter's); returns the `.pth` path."""
    folder = site_packages or Path(sysconfig.get_paths()["purelib"])
    (folder / f"{HOOK_MODULE}.py").write_text(HOOK_SOURCE)
    pth = folder / f"{HOOK_MODULE}.pth"
    pth.write_text(f"import {HOOK_MODULE}\n")
    return pth


if __name__ == "__main__":
    print(f"torchvision import hook: {install()}", file=sys.stderr)
