"""quadd_codec: the bit-packed `.qdd` dataset format (see FORMAT.md), its reader and writer."""

from .bitpack import pack_rows, packed_nbytes, unpack_rows
from .codebook import fit_levels, quantize, quantize_array
from .dataset import QddDataset
from .errors import (
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
from .layout import (
    MAJOR,
    MINOR,
    Denorm,
    downsample_mean,
    encoded_size,
    max_samples_per_class,
    upsample_nearest,
)
from .reader import QddFile, open_qdd
from .upsample import linear_taps, upsample, upsample_linear
from .writer import atomic_write, encode_qdd, write_qdd

__all__ = [
    "MAJOR", "MINOR", "Denorm", "QddChecksumError", "QddDataset", "QddError", "QddFeatureError",
    "QddFile", "QddFormatError", "QddHeaderError", "QddLayoutError", "QddSignatureError",
    "QddTruncatedError", "QddValueError", "QddVersionError", "atomic_write", "downsample_mean",
    "encode_qdd", "encoded_size", "fit_levels", "max_samples_per_class", "open_qdd",
    "pack_rows", "packed_nbytes", "quantize", "quantize_array", "unpack_rows",
    "linear_taps", "upsample", "upsample_linear", "upsample_nearest", "write_qdd",
]
