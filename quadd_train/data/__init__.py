"""Loading the real datasets that distillation starts from and evaluation tests on.

``load_dataset`` accepts

* ``"digits"`` -- scikit-learn's 8x8 digits, embedded, needs no files;
* ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` -- looked up in a data directory
  (``data_dir`` argument, else ``$QUADD_DATA``, else ``~/.cache/quadd/datasets``), as an
  extracted folder ``<dir>/<name>/{train,test}/<class>/*`` or an archive
  ``<dir>/<name>-png.tar.gz`` / ``<name>-jpg.tar.gz``. Archives are extracted once into
  the cache (``$QUADD_CACHE``, else ``~/.cache/quadd``) and the decoded images are kept
  there as an uncompressed ``.npz`` so later loads take a fraction of a second;
* ``"beam"`` -- the 3GPP beam-management vectors (:mod:`quadd_train.data.beam`, needs
  ``quadd[beam]``), generated with the default settings on first use and kept in the
  cache;
* a path: a folder with ``train/<class>/*`` and ``test/<class>/*`` images, or an
  ``.npz`` holding ``x_train, y_train, x_test, y_test`` (optionally ``class_names`` and
  ``rsrp_test``), images or feature vectors ``(N, F)``.

A name that is not one of the known datasets is treated as a path; write ``./mnist``
to load a local folder that happens to be called like a known dataset.

Values stay in the source value space (images: [0, 1]); normalization uses the
per-channel train statistics in ``DatasetBundle.mean`` / ``std``.

Modules, one concern each:

* :mod:`.load` -- :func:`load_dataset`, which picks one of the loaders below;
* :mod:`.named` -- the known datasets: digits, and names looked up in a data directory;
* :mod:`.archive` -- archives: safe extraction and the decoded-image cache;
* :mod:`.folders` -- image folders ``{train,test}/<class>/*``;
* :mod:`.npz` -- ``.npz`` datasets: the one reader and the cache writer;
* :mod:`.bundle` -- :class:`DatasetBundle`, normalization and statistics;
* :mod:`.checks` -- the label and sample checks.
"""

from __future__ import annotations

from .archive import UnsafeArchiveError, safe_extract
from .bundle import DatasetBundle, DatasetNotFoundError
from .checks import check_every_class_has_samples
from .folders import CIFAR10_CLASSES
from .load import load_dataset
from .named import KNOWN_DATASETS, default_cache_dir, default_data_dir

__all__ = [
    "CIFAR10_CLASSES",
    "KNOWN_DATASETS",
    "DatasetBundle",
    "DatasetNotFoundError",
    "UnsafeArchiveError",
    "check_every_class_has_samples",
    "default_cache_dir",
    "default_data_dir",
    "load_dataset",
    "safe_extract",
]
