"""What every key of :func:`sknc.nc_report` means: formula, conventions, source, and when it is NaN.

One table, read by the report's docstring, the documentation's metrics
reference (generated from it at build time), the scorers (which metric is
better when lower) and a test that checks it covers every key a report can
return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KeyInfo", "REPORT_KEYS", "key_info", "report_options"]


@dataclass(frozen=True)
class KeyInfo:
    """One report key.

    ``formula`` is reStructuredText math; ``conventions`` names the
    :func:`sknc.nc_report` parameters that change it; ``nan_when`` says which
    degeneracy of the data makes it NaN (with an :class:`sknc.NCWarning`).

    Examples
    --------
    >>> from sknc.metrics import key_info
    >>> info = key_info("nc1")
    >>> info.conventions, info.lower_is_better
    (('global_mean', 'between', 'normalize', 'rtol'), True)
    """

    key: str
    meaning: str
    formula: str
    conventions: tuple
    reference: str
    nan_when: str
    lower_is_better: bool | None = True
    needs: str = ""


_MEANS = ("a class mean is undefined (multi-label: with class_means='singletons' a class without a multiplicity-1 "
          "sample; with the tag-wise estimate a class whose mean the label sets do not determine)")
_RANK0 = "all class means coincide (between-class rank 0)"
_MISSING = "a class of W has no sample in the data"
_OTHER = "the second pass read other rows than the first (an accumulator)"

#: Every key :func:`sknc.nc_report` can return, as :class:`KeyInfo` records (a test keeps it complete).
REPORT_KEYS = (
    KeyInfo("n_samples", "number of samples", r"N", (), "", "never", None),
    KeyInfo("n_classes", "number of classes K", r"K", (), "", "never", None),
    KeyInfo("n_dims", "feature dimension d", r"d", (), "", "never", None),
    KeyInfo("n_singletons", "multiplicity-1 samples (the ones NC1-NC4 use with single-label class means)",
            r"N_1 = \#\{i : |S_i| = 1\}", (), "Li et al. 2024", "never", None, "multi-label y"),
    KeyInfo("class_means_estimated", "whether the class means were estimated from the label sets (tag-wise-average "
            "model) rather than taken from single-label samples", r"\hat\mu_k = g + \tilde\mu_k,\ "
            r"\bar h_S \approx g + \tfrac{c_{|S|}}{|S|}\sum_{k\in S}\tilde\mu_k", ("class_means",),
            "this library (see the theory page)", "never", None, "multi-label y"),
    KeyInfo("pairs_sampled", "pairs of classes the all-pairs keys were estimated from (with pair_sample=)",
            r"m", ("pair_sample",), "", "never", None, "pair_sample"),
    KeyInfo("nc1", "within-class variability relative to the between-class spread",
            r"\frac{1}{K}\operatorname{tr}\left(\Sigma_W \Sigma_B^{+}\right)",
            ("global_mean", "between", "normalize", "rtol"), "Papyan, Han & Donoho 2020; Zhu et al. 2021",
            f"{_RANK0}; {_MEANS}; a two-pass accumulator before its second pass; {_OTHER}"),
    KeyInfo("nc1_rank", r"rank r of \Sigma_B kept by the tolerance (directions used by NC1)",
            r"r = \#\{\sigma_j > \mathrm{tol}\}", ("rtol",), "", _MEANS, None),
    KeyInfo("nc1_trace_quotient", "trace ratio variant of NC1",
            r"\operatorname{tr}\Sigma_W / \operatorname{tr}\Sigma_B", ("global_mean", "between"),
            "Tirer, Huang & Niles-Weed 2023", f"{_RANK0}; {_MEANS}"),
    KeyInfo("cdnv", "class-distance-normalised variance, averaged over class pairs",
            r"\frac{2}{K(K-1)}\sum_{k<l}\frac{\sigma_k^2+\sigma_l^2}{2\,\lVert\mu_k-\mu_l\rVert^{2p}}",
            ("cdnv_power",), "Galanti, György & Hutter 2022",
            f"two class means coincide (to the data's resolution); {_RANK0}; {_MEANS}"),
    KeyInfo("nc2_h", "distance of the centred class means' Gram to the simplex-ETF Gram",
            r"\left\lVert \frac{\tilde M\tilde M^\top}{\lVert\tilde M\tilde M^\top\rVert_F} - "
            r"\frac{I_K - \mathbf{1}\mathbf{1}^\top/K}{\sqrt{K-1}}\right\rVert_F",
            ("global_mean",), "Zhu et al. 2021", f"{_RANK0}; {_MEANS}"),
    KeyInfo("nc2_h_equinorm", "coefficient of variation of the centred class-mean norms",
            r"\operatorname{std}_k\lVert\tilde\mu_k\rVert / \operatorname{mean}_k\lVert\tilde\mu_k\rVert",
            ("global_mean",), "Papyan, Han & Donoho 2020", f"{_RANK0}; {_MEANS}"),
    KeyInfo("nc2_h_equiangular", "mean deviation of the centred means' cosines from the ETF's",
            r"\operatorname{mean}_{k\neq l}\left|\cos(\tilde\mu_k,\tilde\mu_l) + \tfrac{1}{K-1}\right|",
            ("global_mean",), "Papyan, Han & Donoho 2020", f"a centred class mean is zero; {_RANK0}; {_MEANS}"),
    KeyInfo("means_effective_rank", "effective rank of the centred class means (K - 1 at a simplex ETF)",
            r"\exp\big(-\textstyle\sum_i p_i \log p_i\big),\ p_i = \sigma_i / \sum_j \sigma_j",
            ("global_mean", "between", "rtol"), "Roy & Vetterli 2007", f"{_RANK0}; {_MEANS}", None),
    KeyInfo("means_stable_rank", "stable rank of the centred class means (K - 1 at a simplex ETF)",
            r"\sum_i \sigma_i^2 / \sigma_1^2", ("global_mean", "between", "rtol"), "Rudelson & Vershynin 2007",
            f"{_RANK0}; {_MEANS}", None),
    KeyInfo("features_effective_rank", "effective rank of the features themselves (every sample, centred on their mean)",
            r"\exp\big(-\textstyle\sum_i p_i \log p_i\big),\ p_i = s_i / \sum_j s_j,\ "
            r"s_i = \sigma_i(H - \mathbf{1}\bar h^\top)", (), "Roy & Vetterli 2007",
            "all features coincide (eigenvalues of the d x d scatter below 64 d eps times the largest count as 0)",
            None, "feature_rank=True"),
    KeyInfo("features_stable_rank", "stable rank of the features themselves (every sample, centred on their mean)",
            r"\lVert H - \mathbf{1}\bar h^\top\rVert_F^2 / \lVert H - \mathbf{1}\bar h^\top\rVert_2^2", (),
            "Rudelson & Vershynin 2007", "all features coincide", None, "feature_rank=True"),
    KeyInfo("ncc_accuracy", "share of samples whose nearest class mean is their own class's (no classifier)",
            r"\frac{1}{N}\#\{i : \arg\min_k \lVert h_i - \mu_k\rVert = y_i\}", (),
            "Papyan, Han & Donoho 2020; He & Su 2023 (law of data separation)",
            f"{_MEANS}; the tag-wise estimate; an accumulator before its second pass; {_OTHER}", False,
            "ncc_accuracy=True"),
    KeyInfo("nc5", "alignment of the mean OOD feature with the centred class means (0: orthogonal)",
            r"\frac{1}{K}\sum_k |\cos(\mu_k - \mu_G,\ \mu_{\mathrm{OOD}} - \mu_G)|", ("global_mean",),
            "Ammar et al. 2024 (NECO)", f"the OOD mean is the ID global mean; a zero centred mean; {_MEANS}", True,
            "ood_features"),
    KeyInfo("mean_max_abs_cos", "largest |cosine| between distinct uncentred class means (0: orthogonal frame)",
            r"\max_{k\neq l}|\cos(\mu_k,\mu_l)|", (), "Dang et al. 2024 (orthogonal frame of ReLU features)",
            f"fewer than two class means are non-zero; {_MEANS}"),
    KeyInfo("nc2_w", "distance of the classifier rows' Gram to the simplex-ETF Gram",
            r"\left\lVert \frac{WW^\top}{\lVert WW^\top\rVert_F} - \frac{I_K - \mathbf{1}\mathbf{1}^\top/K}"
            r"{\sqrt{K-1}}\right\rVert_F", (), "Zhu et al. 2021", "W = 0", True, "W"),
    KeyInfo("nc2_w_equinorm", "coefficient of variation of the classifier row norms",
            r"\operatorname{std}_k\lVert w_k\rVert / \operatorname{mean}_k\lVert w_k\rVert", (),
            "Papyan, Han & Donoho 2020", "W = 0", True, "W"),
    KeyInfo("nc2_w_equiangular", "mean deviation of the classifier rows' cosines from the ETF's",
            r"\operatorname{mean}_{k\neq l}\left|\cos(w_k,w_l) + \tfrac{1}{K-1}\right|", (),
            "Papyan, Han & Donoho 2020", "a classifier row is zero", True, "W"),
    KeyInfo("nc3", "self-duality of classifier and centred means (Gram form)",
            r"\left\lVert \frac{W\tilde M^\top}{\lVert W\tilde M^\top\rVert_F} - "
            r"\frac{I_K - \mathbf{1}\mathbf{1}^\top/K}{\sqrt{K-1}}\right\rVert_F",
            ("global_mean",), "Zhu et al. 2021; Li et al. 2024",
            f"W is orthogonal to every centred mean; {_RANK0}; {_MEANS}",
            True, "W"),
    KeyInfo("nc3_difference", "self-duality (difference form)",
            r"\left\lVert \frac{W}{\lVert W\rVert_F} - \frac{\tilde M}{\lVert \tilde M\rVert_F}\right\rVert_F"
            r"\ (\text{squared with } \texttt{nc3\_squared=True})",
            ("global_mean", "nc3_squared"), "Papyan, Han & Donoho 2020", f"W = 0 or {_RANK0}; {_MEANS}; {_MISSING}",
            True, "W"),
    KeyInfo("nc4", "mismatch between the nearest-class-mean rule and the classifier",
            r"\frac{1}{N_1}\#\{i : \arg\min_k\lVert h_i-\mu_k\rVert \neq \arg\max_k (Wh_i+b)_k\}", (),
            "Papyan, Han & Donoho 2020", f"{_MEANS}; an accumulator before its second pass; {_OTHER}; {_MISSING}",
            True, "W"),
    KeyInfo("ncc_agreement", "1 - nc4", r"1 - \mathrm{NC4}", (), "Papyan, Han & Donoho 2020",
            f"{_MEANS}; an accumulator before its second pass; {_OTHER}; {_MISSING}", False, "W"),
    KeyInfo("bias_collapse", "logits of the global mean", r"\lVert W\mu_G + b\rVert_2", ("global_mean",),
            "Zhu et al. 2021 (their NC4)", f"{_MEANS}; {_MISSING}", True, "W"),
    KeyInfo("tagwise_angle", "mean angle (degrees) between each label set's centred mean and the sum of its tags' means",
            r"\operatorname{mean}_S \angle\left(\mu_S - \mu_G,\ \textstyle\sum_{k\in S}\tilde\mu_k\right)",
            ("global_mean",), "Li et al. 2024 (tag-wise average)",
            f"every set's mean or tag sum is zero; {_MEANS}", True, "multi-label y with a set 2 <= |S| < K"),
    KeyInfo("tagwise_angle_max", "largest of those angles (degrees)",
            r"\max_S \angle\left(\mu_S - \mu_G,\ \textstyle\sum_{k\in S}\tilde\mu_k\right)", ("global_mean",),
            "Li et al. 2024", f"every set's mean or tag sum is zero; {_MEANS}", True,
            "multi-label y with a set 2 <= |S| < K"),
    KeyInfo("tagwise_residual", "mean relative residual of the tag-wise average",
            r"\operatorname{mean}_S \frac{\lVert \tilde\mu_S - c_S\,\bar\mu_S\rVert}{\lVert\tilde\mu_S\rVert},\ "
            r"\bar\mu_S = \tfrac{1}{|S|}\textstyle\sum_{k\in S}\tilde\mu_k", ("global_mean",), "Li et al. 2024",
            f"every set's mean is zero; {_MEANS}", True, "multi-label y with a set 2 <= |S| < K"),
    KeyInfo("tagwise_scale_m<m>", "mean least-squares scale c_S of the sets of size m",
            r"\operatorname{mean}_{|S|=m}\ \frac{\langle\tilde\mu_S,\bar\mu_S\rangle}{\lVert\bar\mu_S\rVert^2}",
            ("global_mean",), "Li et al. 2024 (c_m of the M-lab ETF)", f"every tag average is zero; {_MEANS}", None,
            "multi-label y with sets of size m"),
    KeyInfo("tagwise_angle_ratio", "the official multi-label code's angle ratio (uncentred means, pairs)",
            r"\frac{\operatorname{mean}_{\{i,j\}}\angle(\mu_i+\mu_j,\mu_{\{i,j\}})}"
            r"{\operatorname{mean}_{k<l,\,S'}\angle(\mu_k+\mu_l,\mu_{S'})}", (), "Li et al. 2024 (code)",
            f"an uncentred mean is zero; {_MEANS}", True, "multi-label y with pairs"),
)

_BY_KEY = {info.key: info for info in REPORT_KEYS}


def key_info(key: str) -> KeyInfo:
    """The :class:`KeyInfo` of a report key (``tagwise_scale_m3`` maps to ``tagwise_scale_m<m>``).

    Examples
    --------
    >>> from sknc.metrics import key_info
    >>> key_info("tagwise_scale_m3").key
    'tagwise_scale_m<m>'
    >>> print(key_info("nc3").meaning)
    self-duality of classifier and centred means (Gram form)
    """
    if key in _BY_KEY:
        return _BY_KEY[key]
    if re.fullmatch(r"tagwise_scale_m\d+", key):
        return _BY_KEY["tagwise_scale_m<m>"]
    raise KeyError(f"{key!r} is not a key of nc_report.")


def report_options(keys) -> dict:
    """The opt-in options of :func:`sknc.nc_report` that the report keys ``keys`` need, e.g.
    ``{"feature_rank": True}`` for ``features_effective_rank`` (unknown keys need none).

    Examples
    --------
    >>> from sknc.metrics import report_options
    >>> report_options(["nc1", "ncc_accuracy", "features_stable_rank"])
    {'ncc_accuracy': True, 'feature_rank': True}
    """
    options = {}
    for key in keys:
        try:
            needs = key_info(key).needs
        except KeyError:
            continue
        if re.fullmatch(r"\w+=True", needs):
            options[needs[: -len("=True")]] = True
    return options
