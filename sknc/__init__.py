"""sknc: neural-collapse research tools for the scikit-learn world.

``import sknc`` loads the metrics, the geometry helpers and the warnings only
(numpy, scipy, pandas). Everything else (the torch-backed estimators, the
callbacks, the scorers, the datasets, ...) is imported on first use, so
measuring saved features never loads torch.
"""

from importlib import import_module

from .exceptions import NCWarning, TrainingDivergedError, UndefinedMetricError
from .geometry import etf_alignment_error, etf_gram, gram_etf_error, multilabel_prototypes, simplex_etf
from .metrics import (
    NCAccumulator,
    TagwiseResult,
    bias_collapse,
    cdnv,
    class_mean_norms,
    class_means,
    equiangularity,
    equinorm,
    mean_orthogonality,
    minority_collapse,
    nc1,
    nc1_trace_quotient,
    nc2_h,
    nc2_w,
    nc3,
    nc4,
    nc_report,
    ncc_agreement,
    tagwise_angle_ratio,
    tagwise_average,
)

__version__ = "0.2.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "theory": None,
    "datasets": None,
    "plotting": None,
    "extract": None,
    "nn": None,
    "losses": None,
    "callbacks": None,
    "classifier": None,
    "decision": None,
    "scoring": None,
    "model_selection": None,
    "transformers": None,
    "ufm": None,
    "model_nc_report": "extract",
    "UFMSolver": "ufm",
    "NCTracker": "callbacks",
    "PALClassifier": "classifier",
    "PALLoss": "losses",
    "load_multilabel_digits": "datasets",
    "make_multilabel_images": "datasets",
    "TagWiseAverageClassifier": "decision",
    "MultilabelStratifiedKFold": "model_selection",
    "multilabel_scorers": "scoring",
    "nc_report_scorer": "scoring",
    "nc_scorer": "scoring",
    "nc_scorers": "scoring",
    "NCMetrics": "transformers",
}

__all__ = [
    "NCAccumulator",
    "NCWarning",
    "TagwiseResult",
    "TrainingDivergedError",
    "UndefinedMetricError",
    "bias_collapse",
    "cdnv",
    "class_mean_norms",
    "class_means",
    "equiangularity",
    "equinorm",
    "etf_alignment_error",
    "etf_gram",
    "gram_etf_error",
    "mean_orthogonality",
    "minority_collapse",
    "multilabel_prototypes",
    "nc1",
    "nc1_trace_quotient",
    "nc2_h",
    "nc2_w",
    "nc3",
    "nc4",
    "nc_report",
    "ncc_agreement",
    "simplex_etf",
    "tagwise_angle_ratio",
    "tagwise_average",
    *sorted(_LAZY),
]


def __getattr__(name):
    if name in _LAZY:
        module = _LAZY[name]
        if module is None:
            value = import_module(f".{name}", __name__)
        else:
            value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sknc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
