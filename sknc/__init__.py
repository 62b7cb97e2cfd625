"""sknc: neural-collapse research tools for the scikit-learn world."""

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

__version__ = "0.1.0"

__all__ = [
    "NCAccumulator",
    "TagwiseResult",
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
]

from . import theory  # noqa: E402
from .ufm import UFMSolver  # noqa: E402

__all__ += ["UFMSolver", "theory"]

from .callbacks import NCTracker  # noqa: E402
from .classifier import PALClassifier  # noqa: E402
from .losses import PALLoss  # noqa: E402

__all__ += ["NCTracker", "PALClassifier", "PALLoss"]

from . import datasets  # noqa: E402
from .datasets import load_multilabel_digits, make_multilabel_images  # noqa: E402
from .decision import TagWiseAverageClassifier  # noqa: E402

__all__ += ["TagWiseAverageClassifier", "datasets", "load_multilabel_digits", "make_multilabel_images"]

from .model_selection import MultilabelStratifiedKFold  # noqa: E402
from .scoring import multilabel_scorers, nc_report_scorer, nc_scorer, nc_scorers  # noqa: E402
from .transformers import NCMetrics  # noqa: E402

__all__ += ["MultilabelStratifiedKFold", "NCMetrics", "multilabel_scorers", "nc_report_scorer", "nc_scorer", "nc_scorers"]
