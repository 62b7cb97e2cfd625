"""sknc: neural-collapse research tools for the scikit-learn world.

``import sknc`` loads nothing but the warnings: every public name is imported
from its module on first use. The metrics, geometry, theory and plotting paths
need numpy, scipy and pandas only, so measuring saved features never loads
torch or skorch, and the ``sknc`` command starts at once.
"""

from importlib import import_module

from .exceptions import NCWarning, TrainingDivergedError, UndefinedMetricError
__version__ = "0.2.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "etf_alignment_error": "geometry",
    "etf_gram": "geometry",
    "gram_etf_error": "geometry",
    "multilabel_prototypes": "geometry",
    "simplex_etf": "geometry",
    "NCAccumulator": "metrics",
    "TagwiseResult": "metrics",
    "bias_collapse": "metrics",
    "cdnv": "metrics",
    "class_mean_norms": "metrics",
    "class_means": "metrics",
    "equiangularity": "metrics",
    "equinorm": "metrics",
    "mean_orthogonality": "metrics",
    "minority_collapse": "metrics",
    "nc1": "metrics",
    "nc1_trace_quotient": "metrics",
    "nc2_h": "metrics",
    "nc2_w": "metrics",
    "nc3": "metrics",
    "nc4": "metrics",
    "nc_report": "metrics",
    "ncc_agreement": "metrics",
    "tagwise_angle_ratio": "metrics",
    "tagwise_average": "metrics",
    "geometry": None,
    "metrics": None,
    "theory": None,
    "datasets": None,
    "plotting": None,
    "extract": None,
    "nn": None,
    "losses": None,
    "callbacks": None,
    "classifier": None,
    "decision": None,
    "ood": None,
    "scoring": None,
    "model_selection": None,
    "transformers": None,
    "ufm": None,
    "study": None,
    "model_nc_report": "extract",
    "layer_features": "extract",
    "history_scorers": "study",
    "tracked_epochs": "study",
    "study_table": "study",
    "study_trajectories": "study",
    "UFMSolver": "ufm",
    "NCTracker": "callbacks",
    "PALClassifier": "classifier",
    "PALLoss": "losses",
    "load_multilabel_digits": "datasets",
    "make_multilabel_images": "datasets",
    "make_multilabel_strips": "datasets",
    "TagWiseAverageClassifier": "decision",
    "MultilabelStratifiedKFold": "model_selection",
    "multilabel_scorers": "scoring",
    "nc_report_scorer": "scoring",
    "nc_scorer": "scoring",
    "nc_scorers": "scoring",
    "NCMetrics": "transformers",
    "NCOutlierDetector": "ood",
}

__all__ = sorted({"NCWarning", "TrainingDivergedError", "UndefinedMetricError", *_LAZY})


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
