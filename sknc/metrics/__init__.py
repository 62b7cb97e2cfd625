"""Neural-collapse metrics: pure functions on features and a streaming accumulator.

Every metric is computed in float64 from one set of sufficient statistics
(class counts and means, within-class sums of squares, and the within-class
scatter seen through the span of the centred class means), whether those come
from an in-memory array (:func:`nc_report`) or from batches
(:class:`NCAccumulator`). Nothing here imports torch; tensors are accepted (and
reduced on their device) when torch is installed.

Conventions
-----------
Notation: ``K`` classes, features ``h_i`` in ``R^d``, class means ``mu_k``,
global mean ``mu_G``, centred means ``m_k = mu_k - mu_G``.

* ``global_mean='class'`` (default): ``mu_G`` is the unweighted mean of the class
  means, the centre of the simplex (Papyan, Han & Donoho 2020; also the
  multiplicity-1 centring of Li et al. 2024). ``'sample'``: the sample mean of the
  features, as in Zhu et al. 2021. Identical for balanced classes.
* ``between='class'`` (default): ``Sigma_B = (1/K) sum_k m_k m_k^T`` (Papyan et al.,
  Zhu et al., Li et al.). ``'sample'``: ``sum_k (n_k/N) m_k m_k^T`` (Hong & Ling 2023).
* ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` over the samples used.
* NC1 is ``tr(Sigma_W Sigma_B^+)`` divided by ``K`` (``normalize=True``, as in the
  PNAS paper and Zhu et al.; the Papyan et al. notebook omits the ``1/K``).
* NC3 in Gram form follows Zhu et al.; the difference form
  ``||W/||W|| - M/||M|| ||_F`` is unsquared by default (``squared=True`` gives the
  Papyan et al. 2020 value).
* NC4 is the NCC mismatch ``1 - agreement`` (Papyan et al.), with the bias.

Multi-label data (``y`` an ``(n, K)`` 0/1 indicator): samples are grouped by label
set; class means, NC1, NC2, NC3 and NC4 use the multiplicity-1 samples and are
centred at the (unweighted) mean of the multiplicity-1 class means, or, when a
class has fewer than two single-label samples (``class_means='auto'``), the class
means are estimated from every label set's mean under the tag-wise-average model
(see :func:`nc_report` and the theory page). Label-free rows (all zeros) are
counted and otherwise ignored.
"""

from ._accumulator import NCAccumulator
from ._keys import REPORT_KEYS, KeyInfo, key_info, report_options
from ._multilabel import TagwiseResult
from ._perclass import cdnv_matrix, class_variability
from ._report import (
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

__all__ = [
    "nc1",
    "nc1_trace_quotient",
    "cdnv",
    "nc2_h",
    "nc2_w",
    "equinorm",
    "equiangularity",
    "nc3",
    "nc4",
    "ncc_agreement",
    "bias_collapse",
    "class_means",
    "class_mean_norms",
    "mean_orthogonality",
    "minority_collapse",
    "tagwise_average",
    "TagwiseResult",
    "tagwise_angle_ratio",
    "nc_report",
    "NCAccumulator",
    "REPORT_KEYS",
    "KeyInfo",
    "key_info",
    "report_options",
    "class_variability",
    "cdnv_matrix",
]
