"""quadd_codec: the bit-packed `.qdd` dataset format (see FORMAT.md), its reader and writer.

Importing it needs only numpy, msgpack and crc32c. `QddDataset` (PyTorch) is imported
when first used; so are the zarr (`quadd_codec.zarr_io`), numcodecs
(`quadd_codec.numcodecs_codec`) and image folder (`quadd_codec.imagefolder`) modules.
"""

from typing import Any

from .bitpack import pack_rows, packed_nbytes, unpack_rows
from .codebook import fit_levels, quantize, quantize_array
from .errors import (
    QddChangedError,
    QddChecksumError,
    QddError,
    QddFeatureError,
    QddFormatError,
    QddHeaderError,
    QddLayoutError,
    QddSignatureError,
    QddTruncatedError,
    QddValueError,
    QddVersionError,
)
from .filespec import FileSpec, encoded_size, max_samples_per_class
from .paths import atomic_write
from .reader import QddFile, open_qdd
from .resample import (
    downsample_mean,
    linear_taps,
    output_shape,
    stored_shape,
    upsample,
    upsample_linear,
    upsample_nearest,
)
from .rules import (
    CODEBOOKS,
    GROUPS,
    MAJOR,
    MAX_CLASSES,
    MINOR,
    RAW_BITS,
    UPSAMPLE_FILTERS,
    Denorm,
    check_bits,
)
from .sources import check_labels
from .writer import encode_qdd, write_qdd

__all__ = [
    "CODEBOOKS", "GROUPS", "MAJOR", "MAX_CLASSES", "MINOR", "RAW_BITS", "UPSAMPLE_FILTERS",
    "Denorm", "FileSpec", "QddChangedError", "QddChecksumError", "QddError", "QddFeatureError",
    "QddFile", "QddFormatError", "QddHeaderError", "QddLayoutError", "QddSignatureError",
    "QddTruncatedError", "QddValueError", "QddVersionError", "atomic_write", "check_bits",
    "check_labels", "downsample_mean", "encode_qdd", "encoded_size", "fit_levels",
    "linear_taps", "max_samples_per_class", "open_qdd", "output_shape", "pack_rows",
    "packed_nbytes", "quantize", "quantize_array", "stored_shape", "unpack_rows", "upsample",
    "upsample_linear", "upsample_nearest", "write_qdd",
]


# QddDataset is not in __all__: a star import must work where torch is not installed.
def __getattr__(name: str) -> Any:
    # QddDataset is a torch Dataset: torch is imported only by code that asks for it.
    if name == "QddDataset":
        try:
            from .dataset import QddDataset
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            raise ModuleNotFoundError("quadd_codec.QddDataset needs PyTorch: pip install "
                                      "'quadd[torch]'", name="torch") from exc
        return QddDataset
    raise AttributeError(f"module 'quadd_codec' has no attribute {name!r}")
