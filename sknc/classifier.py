"""PALClassifier: a scikit-learn estimator that trains torch networks with the pick-all-labels loss."""

from __future__ import annotations

import copy
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from skorch import NeuralNet
from skorch.callbacks import LRScheduler
from skorch.dataset import ValidSplit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._validation import check_device, check_fit_inputs, check_layer_sizes, group_labels, untensor
from .callbacks import CosineLR, DivergenceGuard, LearningRateRecorder, NCTracker, head_parameters
from .decision import TagWiseAverageClassifier, _check_tagwise_labels, pal_label_marginals
from .exceptions import NCWarning
from .losses import PALLoss
from ._threads import policy_threads, torch_threads
from .nn import (ETFHead, FeatureClassifier, InputScaler, LinearHead, MLP, ResNet18, SmallCNN, count_parameters,
                 forward_macs, infer_out_features)

__all__ = ["PALClassifier"]

_ROUTED = ("module__", "optimizer__", "criterion__", "iterator_train__", "iterator_valid__", "dataset__", "callbacks__")
# per backbone: feature width and training budget when not given
_BACKBONE_DEFAULTS = {"mlp": {"feature_dim": 64, "max_epochs": 200},
                      "cnn": {"feature_dim": 64, "max_epochs": 30},
                      "resnet18": {"feature_dim": 512, "max_epochs": 200},
                      "user": {"feature_dim": None, "max_epochs": 100}}
_FAST_ITERATOR_KEYS = {"shuffle", "drop_last", "batch_size"}


class _BatchIterator:
    """Batches by tensor slicing (one gather per batch, not one Python call per sample).

    skorch accepts any iterable factory as ``iterator_train``/``iterator_valid``;
    this one reproduces ``DataLoader(shuffle=..., drop_last=...)`` on array
    data (a skorch ``Dataset`` or a ``Subset`` of one, as skorch's validation
    split makes), drawing the permutation from torch's (seeded) global
    generator. Other datasets or DataLoader options fall back to a DataLoader.
    """

    def __new__(cls, dataset, batch_size=128, shuffle=False, drop_last=False, **options):
        arrays = _dataset_arrays(dataset)
        if arrays is None or options:
            return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                               **options)
        return super().__new__(cls)

    def __init__(self, dataset, batch_size=128, shuffle=False, drop_last=False, **options):
        self.X, self.y = _dataset_arrays(dataset)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self):
        n = len(self.X)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.X)
        order = torch.randperm(n) if self.shuffle else None
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            yield self.X[idx], (None if self.y is None else self.y[idx])


def _dataset_arrays(dataset):
    """``(X, y)`` tensors of a skorch Dataset or a Subset of one; None for other datasets."""
    indices = None
    if isinstance(dataset, torch.utils.data.Subset):
        indices = torch.as_tensor(np.asarray(dataset.indices))
        dataset = dataset.dataset
    X = getattr(dataset, "X", None)
    if X is None or not isinstance(X, (np.ndarray, torch.Tensor)):
        return None
    X = torch.as_tensor(np.asarray(X) if isinstance(X, np.ndarray) else X)
    y = getattr(dataset, "y", None)
    y = None if y is None else torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if indices is not None:
        X = X[indices]
        y = None if y is None else y[indices]
    return X, y


class _PALNet(NeuralNet):
    """skorch net whose module returns ``(logits, features)``; adds the feature decay.

    The training loss is ``mean_batch(PAL) + lambda_H / 2 * mean_batch ||h||^2``
    (weight decay is the optimizer's). ``predict``/``predict_proba`` follow
    scikit-learn's classifier convention on the encoded targets, so that
    skorch's ``EpochScoring('accuracy')`` and friends work during training.
    """

    def __init__(self, *args, feature_decay=0.0, size_prior=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_decay = feature_decay
        self.size_prior = size_prior

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits, features = y_pred
        loss = super().get_loss(logits, y_true, X=X, training=training)
        if training and self.feature_decay:
            loss = loss + 0.5 * self.feature_decay * features.pow(2).sum(dim=1).mean()
        return loss

    def _logits(self, X):
        return self.forward(X, training=False)[0].double().cpu().numpy()

    def predict_proba(self, X):
        logits = self._logits(X)
        if self.size_prior is not None:
            return pal_label_marginals(logits, self.size_prior)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        proba = self.predict_proba(X)
        if self.size_prior is not None:
            return (proba >= 0.5).astype(np.int64)
        return proba.argmax(axis=1)


class PALClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Neural-network classifier trained with the pick-all-labels cross-entropy through skorch.

    Multi-class ``y`` (1-D) trains ordinary cross-entropy; a 0/1 indicator ``y``
    (multi-label) trains the pick-all-labels (PAL) loss. The network is a
    backbone producing features ``h`` and a head producing logits ``W h + b``;
    the head can be a fixed simplex ETF. Training minimises, in expectation
    over batches,

    ``mean_i L(W h_i + b, S_i) + lambda_W/2 ||theta||^2 + lambda_H/2 mean_i ||h_i||^2``

    so ``lambda_H`` is a per-sample strength whatever the number of samples:
    a cross-validation fold and the refit on all data regularise alike. In the
    UFM normalisation of :mod:`sknc.theory` (feature penalty
    ``lambda_H^UFM/2 ||H||_F^2`` on the sum over the ``N`` training samples)
    this is ``lambda_H^UFM = lambda_H / N`` (see
    :func:`sknc.theory.estimator_to_ufm_lambdas`).

    The estimator is a skorch user's estimator too: double-underscore
    parameters (``module__``, ``optimizer__``, ``criterion__``,
    ``iterator_train__``, ``iterator_valid__``, ``dataset__``,
    ``callbacks__NAME__param``) are routed to the inner skorch net in the
    constructor, ``set_params`` and grids; a validation split
    (``train_split`` or ``validation_fraction``) puts ``valid_loss`` in the
    history for skorch's ``EarlyStopping``/``Checkpoint``; a skorch
    ``LRScheduler`` replaces the built-in schedule; ``warm_start``,
    ``partial_fit``, ``initialize`` and ``save_params``/``load_params`` behave
    as in skorch.

    Parameters
    ----------
    module : {'mlp', 'cnn', 'resnet18'} or torch.nn.Module class or instance, default='mlp'
        Backbone. A user module maps a batch to ``(batch, width)`` features; a
        class is instantiated with the ``module__*`` parameters, an instance is
        deep-copied. Built-in backbones take ``module__*`` too, e.g.
        ``module__activation='gelu'``, ``module__batch_norm=True`` ('mlp') or
        ``module__width=32`` ('cnn', channels of the first block; 'resnet18',
        of the first stage).
    hidden_sizes : tuple of int, default=(256, 256)
        Widths of the MLP's hidden layers ('mlp' only); ``()`` leaves the
        linear feature layer alone on the (scaled) inputs.
    feature_dim : int, optional
        Feature width: for 'mlp' a *linear* feature layer of this width on top
        of the hidden layers (sign-unconstrained features), for 'cnn' the
        width of its last (ReLU) layer, for 'resnet18' the channels of its
        last stage. Default per backbone: 64 ('mlp', 'cnn'), 512 ('resnet18',
        the CIFAR ResNet-18 of the neural-collapse papers). A user module has
        its own width: setting ``feature_dim`` then is an error.
    input_shape : tuple, optional
        Shape ``(C, H, W)`` of one sample: flat ``X`` is reshaped for CNNs.
        Image arrays ``(N, H, W)`` or ``(N, C, H, W)`` (numpy or torch) need
        none: the shape is read from ``X`` (``(1, H, W)`` for the first form).
    input_scaling : {'auto', 'minmax', 'standard', 'channel'} or None, default='auto'
        Scaling of the inputs, fixed from the training data at initialisation
        and kept inside the network (so ``predict`` and ``transform`` take raw
        data, like ``fit``): 'minmax' maps every input column onto [0, 1]
        over the training data (scikit-learn's ``MinMaxScaler``), 'standard'
        centres it and divides by its standard deviation (``StandardScaler``),
        'channel' maps every image channel onto [0, 1] by the minimum and
        maximum over its pixels (needs ``input_shape``); constant columns are
        only shifted. 'auto' is 'minmax' for 'mlp', 'channel' for 'cnn' and
        'resnet18', and None (inputs as given) for a user module, which has
        its own conventions. The default learning rate is tuned for inputs in
        [0, 1]: raw pixels (0-16 in ``load_digits``, 0-255 in images) would
        otherwise make the first SGD steps diverge. With the other defaults,
        'minmax' gave the better test accuracy on the bundled digits (raw and
        multi-label), iris and wine; 'standard' converges faster with small
        networks and few epochs.
    fixed_etf : bool, default=False
        Freeze the classifier at a simplex ETF (the bias stays trainable).
    bias : bool, default=True
        Learn a classifier bias.
    loss : {'pal', 'pal_mean'}, default='pal'
        Summed pick-all-labels CE, or the sum divided by ``|S|``.
    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of every picked cross-entropy term (see
        :class:`sknc.PALLoss`).
    focal_gamma : float >= 0, default=0.0
        Focal exponent of every picked term (see :class:`sknc.PALLoss`).
    lambda_W : float, default=5e-4
        Weight decay on every trainable parameter (``(lambda_W/2)||theta||^2``).
        skorch's ``optimizer__weight_decay`` is the same quantity (torch's
        optimizers add ``weight_decay * theta`` to the gradient, the gradient
        of this penalty) and is accepted for it; giving both with different
        values is an error.
    lambda_H : float, default=0.3
        Feature decay per sample (``lambda_H/2 ||h||^2`` averaged over the
        batch, with a real gradient). The default was tuned on the bundled
        single- and multi-label digits, on 28x28 multi-label images with the
        CNN and against ``MLPClassifier`` (``benchmarks/tune_defaults.py``).
    optimizer : {'sgd', 'adam'} or torch optimizer class, default='sgd'
    lr : float, optional
        Learning rate. Default: 0.1 with SGD (tuned for inputs in [0, 1]),
        otherwise the optimizer's own default (Adam and AdamW: 1e-3).
    momentum : float, default=0.9
        SGD momentum (``optimizer__momentum`` overrides it).
    lr_schedule : {'cosine', None}, default='cosine'
        Cosine annealing to ``lr/1000`` over the epochs of each ``fit`` call.
        Replaced by any skorch ``LRScheduler`` in ``callbacks``.
    max_epochs : int, optional
        Default per backbone: 200 ('mlp', 'resnet18'), 30 ('cnn'), 100 (a user module).
    batch_size : int, default=128
    train_split : callable or None, default=None
        skorch's validation split, e.g. ``skorch.dataset.ValidSplit(5)``.
    validation_fraction : float, optional
        scikit-learn style shortcut: hold out this fraction (stratified for
        1-D labels, seeded by ``random_state``). Exclusive with ``train_split``.
    warm_start : bool, default=False
        ``fit`` continues training the fitted network instead of starting over.
    decision_rule : {'auto', 'threshold', 'tagwise', 'topk', 'mean_logit'}, default='auto'
        Multi-label prediction rule. ``'threshold'``: labels whose
        :meth:`predict_proba` reaches ``threshold``, then as many as the
        smallest (and at most the largest) label set seen in training;
        ``'tagwise'``: the most likely tag-wise prototype of the penultimate
        feature (:class:`~sknc.TagWiseAverageClassifier`, fitted on the
        training features, with the training frequency of each set size as a
        prior); ``'topk'``: the ``top_k`` largest logits; ``'mean_logit'``:
        labels whose logit exceeds the sample's mean logit (exact at the UFM
        optimum, weak on networks that are not fully collapsed). ``'auto'``
        holds out ``validation_fraction`` of the training rows (15% when it is
        None), trains on the rest, keeps the rule with the best
        ``rule_scoring`` on the held-out rows (``decision_rule_``,
        ``decision_scores_``) and then, like a search's refit, trains the
        network again on every row: about twice the training time
        (``partial_fit`` chooses without the refit). No fixed rule is best
        everywhere (the tag-wise rule wins 19 points of subset accuracy on
        MNIST-like images and 6 on strips of digits with the CNN, and loses 1-9
        on the bundled digits with the MLP, where the threshold rule leads);
        ``'auto'`` matched the best rule, within half a point, on each (the
        multi-label guide, ``benchmarks/bench_rules.py``).
        Name a rule to skip the choice and its second training.
        Multi-class ``y`` always uses the argmax.
    threshold : float or array-like of shape (K,), default=0.5
        Probability threshold(s) of the ``'threshold'`` rule.
    top_k : int, optional
        Labels predicted by ``'topk'``; default the most common training multiplicity.
    tagwise_metric : {'cosine', 'euclidean'}, default='euclidean'
        Distance of the ``'tagwise'`` rule.
    rule_scoring : None, str or callable, default=None
        What ``decision_rule='auto'`` maximises on the held-out rows: None is
        subset accuracy (this estimator's ``score``); or ``'jaccard_samples'``,
        ``'f1_samples'``, ``'neg_hamming_loss'``, or ``fn(Y_true, Y_pred)``.
    n_threads : int, 'all' or None, default=None
        torch intra-op threads while this estimator trains or predicts (the
        caller's setting is restored after each call). None: one thread for
        networks whose forward pass over a batch takes fewer than 50 M
        multiply-adds (the default MLP on the bundled digits: 19 M), where
        waking other threads costs more than it saves and a busy machine
        makes each wake-up wait (``benchmarks/bench_training.py``); torch's
        own setting for larger ones (the CNN, 0.3 G per batch of 28x28
        images). ``'all'``: every core.
    track_nc : int, default=0
        Record NC metrics every this many epochs (0: off).
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Extra callbacks, after sknc's own (``'lr_schedule'``, ``'nc'``,
        ``'divergence_guard'``, ``'lr_recorder'``).
    device : {'auto', 'cpu', 'cuda', 'cuda:N', ...} or torch.device, default='auto'
        'auto' uses CUDA when available.
    random_state : int, RandomState or None
        Seeds initialisation, shuffling and the validation split (the global
        torch RNG is left untouched).
    verbose : int, default=0
        1 prints skorch's per-epoch log.
    **kwargs
        Routed skorch parameters (see above).

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
        Class labels (multi-class), or label names (multi-label: the columns
        of a DataFrame ``y``, else ``arange(K)``).
    multilabel_ : bool
    n_features_in_ : int
    coef_ : ndarray (K, width)
        Classifier weights ``W`` (the ETF for ``fixed_etf=True``).
    intercept_ : ndarray (K,)
    history_ : pandas.DataFrame
        ``epoch``, ``train_loss``, ``dur``, ``lr`` (the rate used), ``valid_loss``
        with a validation split, and tracked NC metrics.
    n_parameters_ : int
        Trainable parameters of the network.
    decision_ : TagWiseAverageClassifier
        The fitted tag-wise rule (multi-label).
    decision_rule_ : str
        The rule ``predict`` uses (multi-label): ``decision_rule``, or the
        choice of ``'auto'``.
    decision_scores_ : dict or None
        ``'auto'``: each rule's ``rule_scoring`` on the held-out rows.

    Raises
    ------
    sknc.TrainingDivergedError
        When a training loss or output turns non-finite (with the epoch and
        the likely causes).

    Notes
    -----
    ``predict_proba`` returns, for multi-class ``y``, the softmax; for
    multi-label ``y``, one probability per label in scikit-learn's
    convention: the marginals ``P(k in S | x)`` of the posterior over label
    sets that the PAL softmax implies (:func:`sknc.decision.pal_label_marginals`).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknc import PALClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = PALClassifier(hidden_sizes=(64,), max_epochs=10, device="cpu", random_state=0)
    >>> clf = clf.fit(X[:1000] / 16, y[:1000])
    >>> bool(clf.score(X[1000:] / 16, y[1000:]) > 0.85)
    True
    """

    _parameter_constraints = {
        "module": [StrOptions({"mlp", "cnn", "resnet18"}), type, torch.nn.Module],
        "hidden_sizes": [tuple, list],
        "feature_dim": [Interval(Integral, 1, None, closed="left"), None],
        "input_shape": [tuple, list, None],
        "input_scaling": [StrOptions({"auto", "minmax", "standard", "channel"}), None],
        "fixed_etf": ["boolean"],
        "bias": ["boolean"],
        "loss": [StrOptions({"pal", "pal_mean"})],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "focal_gamma": [Interval(Real, 0, None, closed="left")],
        "lambda_W": [Interval(Real, 0, None, closed="left")],
        "lambda_H": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"sgd", "adam"}), type],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [StrOptions({"cosine"}), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "train_split": [callable, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "warm_start": ["boolean"],
        "decision_rule": [StrOptions({"auto", "tagwise", "threshold", "mean_logit", "topk"})],
        "threshold": [Interval(Real, 0, 1, closed="neither"), "array-like"],
        "top_k": [Interval(Integral, 1, None, closed="left"), None],
        "tagwise_metric": [StrOptions({"cosine", "euclidean"})],
        "rule_scoring": [None, str, callable],
        "n_threads": [Interval(Integral, 1, None, closed="left"), StrOptions({"all"}), None],
        "track_nc": [Interval(Integral, 0, None, closed="left")],
        "callbacks": [list, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module="mlp",
        hidden_sizes=(256, 256),
        feature_dim=None,
        input_shape=None,
        input_scaling="auto",
        fixed_etf=False,
        bias=True,
        loss="pal",
        label_smoothing=0.0,
        focal_gamma=0.0,
        lambda_W=5e-4,
        lambda_H=0.3,
        optimizer="sgd",
        lr=None,
        momentum=0.9,
        lr_schedule="cosine",
        max_epochs=None,
        batch_size=128,
        train_split=None,
        validation_fraction=None,
        warm_start=False,
        decision_rule="auto",
        threshold=0.5,
        top_k=None,
        tagwise_metric="euclidean",
        rule_scoring=None,
        n_threads=None,
        track_nc=0,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
        **kwargs,
    ):
        self.module = module
        self.hidden_sizes = hidden_sizes
        self.feature_dim = feature_dim
        self.input_shape = input_shape
        self.input_scaling = input_scaling
        self.fixed_etf = fixed_etf
        self.bias = bias
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.lambda_W = lambda_W
        self.lambda_H = lambda_H
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.train_split = train_split
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.decision_rule = decision_rule
        self.threshold = threshold
        self.top_k = top_k
        self.tagwise_metric = tagwise_metric
        self.rule_scoring = rule_scoring
        self.n_threads = n_threads
        self.track_nc = track_nc
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        for key, value in kwargs.items():  # routed parameters; unknown names are refused by fit
            setattr(self, key, value)

    # ------------------------------------------------------------- parameters
    def _extra_params(self):
        """Keyword arguments beyond the signature (routed skorch parameters, or misspellings fit refuses)."""
        own = set(self._get_param_names())
        return {k: v for k, v in vars(self).items() if k not in own and not k.endswith("_") and not k.startswith("_")}

    def _routed_params(self):
        return {k: v for k, v in self._extra_params().items() if k.startswith(_ROUTED)}

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update(self._extra_params())
        return params

    def set_params(self, **params):
        routed = {k: v for k, v in params.items() if k.startswith(_ROUTED)}
        for key, value in routed.items():
            setattr(self, key, value)
        rest = {k: v for k, v in params.items() if k not in routed}
        return super().set_params(**rest) if rest else self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        # CUDA kernels are not bitwise reproducible; tags must never raise, so no device validation here.
        tags.non_deterministic = str(self.device) not in ("cpu", "auto") or (
            str(self.device) == "auto" and torch.cuda.is_available())
        tags.transformer_tags.preserves_dtype = []
        return tags

    # ------------------------------------------------------------- targets
    def _encode_targets(self, y, columns=None):
        """Validate and encode ``y``; sets the label attributes. Everything about the labels is checked here,
        before any training. ``columns``: label names of a DataFrame ``y``."""
        if y is None:
            raise ValueError("PALClassifier requires y to be passed, but the target y is None.")
        if hasattr(y, "columns"):
            columns = np.asarray(y.columns)
        y = untensor(y)
        if hasattr(y, "to_numpy"):
            y = y.to_numpy()
        if isinstance(y, list) and y and isinstance(y[0], (list, tuple, set)) and len({len(v) for v in y}) > 1:
            group_labels(y)  # raises the clear ragged-labels error
        kind = type_of_target(y, input_name="y")
        for attr in ("decision_", "decision_rule_", "decision_scores_", "_default_top_k", "_size_prior",
                     "_y_dtype"):  # stale state of an earlier fit
            if hasattr(self, attr):
                delattr(self, attr)
        if kind == "multilabel-indicator":
            Y = np.asarray(y.toarray() if hasattr(y, "toarray") else y)
            groups = group_labels(Y)  # 0/1 values, NaN
            if Y.shape[1] < 2:
                raise ValueError("a multi-label y needs at least 2 label columns.")
            if self.decision_rule == "tagwise":
                _check_tagwise_labels(groups)
            self.multilabel_ = True
            self.classes_ = np.arange(Y.shape[1]) if columns is None else columns
            self._y_dtype = Y.dtype
            self._label_statistics(Y)
            return Y.astype(np.float32)
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        group_labels(y, min_classes=1)  # mixed label types, NaN
        self.multilabel_ = False
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(f"y has {len(encoder.classes_)} class; PALClassifier needs at least 2.")
        self.classes_ = encoder.classes_
        return encoder.transform(y).astype(np.int64)

    def _label_statistics(self, Y):
        """The label-set sizes of the training rows: their frequencies (the prior of the set posterior) and
        the most common one (``top_k``'s default)."""
        sizes = np.asarray(Y).astype(bool).sum(axis=1)
        counts = np.bincount(sizes, minlength=Y.shape[1] + 1)
        self._size_prior = {int(m): float(c) / len(sizes) for m, c in enumerate(counts) if c}
        self._default_top_k = int(np.bincount(sizes[sizes > 0]).argmax()) if np.any(sizes) else 1

    def _rule(self):
        """The multi-label rule predict uses: the fitted choice of ``'auto'``, else the parameter."""
        if self.decision_rule == "auto":  # the choice of a fit with 'auto' (not of a fit with another rule)
            return self.decision_rule_ if getattr(self, "decision_scores_", None) else "threshold"
        return self.decision_rule

    def _rule_holdout(self, Xf, target):
        """``decision_rule='auto'`` (multi-label): the rows the network trains on and the held-out rows
        ``(X, Y)`` the rules are scored on (``validation_fraction`` of them, else 15%), or ``(Xf, target,
        None)``."""
        if not (self.multilabel_ and self.decision_rule == "auto"):
            return Xf, target, None
        from .decision import holdout_rows

        fraction = 0.15 if self.validation_fraction is None else float(self.validation_fraction)
        if int(round(fraction * len(Xf))) < 1 or len(Xf) - int(round(fraction * len(Xf))) < 2:
            warnings.warn(f"decision_rule='auto' needs a held-out part of the {len(Xf)} training samples; too few, "
                          "so the rule is 'threshold'.", NCWarning, stacklevel=3)
            return Xf, target, None
        keep, hold = holdout_rows(target, fraction, self._seed())
        self._label_statistics(target[keep])  # the rules are chosen knowing the training rows only
        return Xf[keep], target[keep], (Xf[hold], target[hold])

    # -------------------------------------------------------------- network
    def _kind(self):
        return self.module if isinstance(self.module, str) else "user"

    def _feature_dim(self):
        if self._kind() == "user":
            if self.feature_dim is not None:
                raise ValueError(
                    "feature_dim applies to the built-in backbones; a user module has its own feature width "
                    "(set it in the module, e.g. with module__<param>)."
                )
            return None
        return self.feature_dim or _BACKBONE_DEFAULTS[self._kind()]["feature_dim"]

    def _max_epochs(self):
        return self.max_epochs or _BACKBONE_DEFAULTS[self._kind()]["max_epochs"]

    def _module_kwargs(self):
        return {k[len("module__"):]: v for k, v in self._routed_params().items() if k.startswith("module__")}

    def _backbone(self, n_features):
        module, shape, kwargs = self.module, self._input_shape(), self._module_kwargs()
        if shape is not None:
            shape = check_layer_sizes(shape, "input_shape")
            if int(np.prod(shape)) != n_features:
                raise ValueError(f"input_shape={shape} holds {int(np.prod(shape))} values but X has {n_features} features.")
        if isinstance(module, str):
            if module == "mlp":
                hidden = check_layer_sizes(self.hidden_sizes, "hidden_sizes", allow_empty=True)
                return MLP(n_features, hidden + (self._feature_dim(),), feature_activation=False, **kwargs), None
            if shape is None or len(shape) != 3:
                raise ValueError(f"module={module!r} needs images: X of shape (N, C, H, W) or (N, H, W), or flat X "
                                 f"with input_shape=(channels, height, width); got input_shape={self.input_shape!r}.")
            if module == "cnn":
                # a stride-2 stem would leave images below 24 pixels a few pixels wide after the pools
                kwargs.setdefault("stem_stride", 1 if min(shape[1:]) < 24 else 2)
                return SmallCNN(shape[0], self._feature_dim(), **kwargs), shape
            return ResNet18(shape[0], self._feature_dim(), **kwargs), shape
        self._feature_dim()  # rejects feature_dim for a user module
        if isinstance(module, type):
            backbone = module(**kwargs)
        else:
            if kwargs:
                raise ValueError("module__* parameters need a module class (or a built-in name), not an instance.")
            backbone = copy.deepcopy(module)
        if not isinstance(backbone, torch.nn.Module):
            raise TypeError(f"module must be 'mlp', 'cnn', 'resnet18' or a torch.nn.Module; got {type(backbone).__name__}.")
        return backbone, shape

    def _input_scaling(self):
        """The resolved input scaling ('minmax', 'standard', 'channel' or None), checked against the backbone."""
        kind = self.input_scaling
        if kind == "auto":
            kind = {"mlp": "minmax", "cnn": "channel", "resnet18": "channel"}.get(
                self.module if isinstance(self.module, str) else None)
        if kind == "channel" and (self._input_shape() is None or len(tuple(self._input_shape())) != 3):
            raise ValueError(f"input_scaling='channel' needs images (X of shape (N, C, H, W)) or "
                             f"input_shape=(channels, height, width); got {self.input_shape!r}.")
        return kind

    def _build_network(self, n_features, n_classes, example, X=None):
        backbone, shape = self._backbone(n_features)
        kind = self._input_scaling()
        scaler = None if kind is None or X is None else InputScaler(*_input_statistics(X, kind, self._input_shape()),
                                                                      kind=kind)
        probe = example if scaler is None else scaler(example.reshape(example.shape[0], -1))
        probe = probe if shape is None else probe.reshape(probe.shape[0], *shape)
        width = infer_out_features(backbone, probe)
        head = ETFHead(width, n_classes, bias=self.bias) if self.fixed_etf else LinearHead(width, n_classes, bias=self.bias)
        return FeatureClassifier(backbone, head, input_shape=shape, input_scaler=scaler)

    def _optimizer_args(self):
        if self.optimizer == "sgd":
            opt, args = torch.optim.SGD, {"optimizer__momentum": self.momentum}
        elif self.optimizer == "adam":
            opt, args = torch.optim.Adam, {}
        else:
            opt, args = self.optimizer, {}
        routed = {k: v for k, v in self._routed_params().items() if k.startswith("optimizer__")}
        routed.pop("optimizer__weight_decay", None)  # it is lambda_W (see _weight_decay)
        args.update(routed)
        return opt, args

    def _weight_decay(self):
        """lambda_W, or skorch's ``optimizer__weight_decay`` (the same quantity); both, differing: an error."""
        routed = self._routed_params().get("optimizer__weight_decay")
        if routed is None:
            return self.lambda_W
        default = inspect.signature(type(self).__init__).parameters["lambda_W"].default
        if self.lambda_W != default and not np.isclose(float(routed), self.lambda_W):
            raise ValueError(f"optimizer__weight_decay={routed!r} and lambda_W={self.lambda_W!r} name the same "
                             "penalty with different values; give one of them.")
        return float(routed)

    def _lr(self):
        """The learning rate: ``lr``, else 0.1 for SGD (tuned) or the optimizer's own default."""
        if self.lr is not None:
            return self.lr
        if self.optimizer == "sgd":
            return 0.1
        opt = torch.optim.Adam if self.optimizer == "adam" else self.optimizer
        default = inspect.signature(opt.__init__).parameters.get("lr")
        value = None if default is None else default.default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{getattr(opt, '__name__', opt)} has no default learning rate; give lr=.")

    def _train_split(self):
        if self.train_split is not None and self.validation_fraction is not None:
            raise ValueError("give either train_split or validation_fraction, not both.")
        held = getattr(self, "_held_out", None)
        if held is not None and self.validation_fraction is not None:
            # decision_rule='auto' holds these rows out of training already: they are the validation split too
            from skorch.dataset import Dataset
            from skorch.helper import predefined_split

            return predefined_split(Dataset(*held))
        if self.validation_fraction is not None:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            return ValidSplit(float(self.validation_fraction), stratified=not self.multilabel_, random_state=seed)
        split = self.train_split
        if self.random_state is not None and getattr(split, "random_state", 0) is None and hasattr(split, "cv"):
            # a user's ValidSplit without a seed follows random_state too, so that a seeded fit repeats exactly
            split = copy.copy(split)
            split.random_state = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return split

    def _callbacks(self, input_scale, input_scaling=None):
        user = []
        for i, cb in enumerate(self.callbacks or []):
            if isinstance(cb, tuple):
                user.append(cb)
            else:
                user.append((type(cb).__name__ if not any(type(cb).__name__ == n for n, _ in user) else
                             f"{type(cb).__name__}_{i}", cb))
        user_scheduler = any(isinstance(cb, LRScheduler) for _, cb in user)
        own = []
        if self.lr_schedule == "cosine" and not user_scheduler:  # a user scheduler replaces it, never both
            own.append(("lr_schedule", CosineLR(T_max=self._max_epochs())))
        if self.track_nc:
            own.append(("nc", NCTracker(every=self.track_nc)))
        own.append(("divergence_guard", DivergenceGuard(input_scale=input_scale, input_scaling=input_scaling)))
        # after every scheduler, so that it reads the rate the optimizer uses; before the user's other callbacks
        # (a progress line reads this epoch's rate) unless one of those is a scheduler
        recorder = [("lr_recorder", LearningRateRecorder())]
        callbacks = own + user + recorder if user_scheduler else own + recorder + user
        names = {name for name, _ in callbacks} | {"epoch_timer", "train_loss", "valid_loss", "print_log"}
        for key in self._routed_params():
            if key.startswith("callbacks__") and key.split("__")[1] not in names:
                raise ValueError(f"{key!r} names no callback; the callbacks are {sorted(names)}.")
        return callbacks

    @staticmethod
    def _scaling_of(network):
        scaler = getattr(network, "input_scaler", None)
        return None if scaler is None else scaler.kind

    def _make_net(self, network, n_train, input_scale):
        input_scaling = self._scaling_of(network)
        optimizer, opt_args = self._optimizer_args()
        routed = {k: v for k, v in self._routed_params().items()
                  if not k.startswith(("module__", "optimizer__"))}
        criterion = {"criterion__normalize": self.loss == "pal_mean", "criterion__check_targets": False,
                     "criterion__label_smoothing": float(self.label_smoothing),
                     "criterion__focal_gamma": float(self.focal_gamma)}
        criterion.update({k: v for k, v in routed.items() if k.startswith("criterion__")})
        iterators = {"iterator_train__shuffle": True}
        iterators.update({k: v for k, v in routed.items() if k.startswith(("iterator_", "dataset__", "callbacks__"))})
        return _PALNet(
            module=network,
            criterion=PALLoss,
            optimizer=optimizer,
            lr=self._lr(),
            optimizer__weight_decay=self._weight_decay(),
            max_epochs=self._max_epochs(),
            batch_size=self.batch_size,
            train_split=self._train_split(),
            iterator_train=_BatchIterator,
            iterator_valid=_BatchIterator,
            callbacks=self._callbacks(input_scale, input_scaling),
            device=self._device,
            verbose=self.verbose,
            warm_start=self.warm_start,
            feature_decay=self.lambda_H,
            size_prior=getattr(self, "_size_prior", None) if self.multilabel_ else None,
            **criterion,
            **iterators,
            **opt_args,
        )

    # ------------------------------------------------------------------- fit
    def _input_shape(self):
        """``input_shape``, or the shape of the images ``fit`` was given."""
        return self.input_shape if self.input_shape is not None else getattr(self, "image_shape_", None)

    def _flat(self, X, fitting):
        """Image arrays ``(N, H, W)``/``(N, C, H, W)`` as flat rows (their shape kept for the network)."""
        X = untensor(X)
        ndim = getattr(X, "ndim", None)
        if ndim not in (3, 4):
            if fitting:
                self.__dict__.pop("image_shape_", None)  # a new fit on flat rows: no image shape of an earlier one
            return X
        shape = (1,) + tuple(X.shape[1:]) if ndim == 3 else tuple(X.shape[1:])
        if self.module == "mlp":
            raise ValueError(f"module='mlp' takes flat rows of features, and X has the image shape {tuple(X.shape)}: "
                             "flatten it with X.reshape(len(X), -1), or use module='cnn' (or 'resnet18').")
        expected = self._input_shape() if not fitting or self.input_shape is not None else None
        if expected is not None and tuple(int(v) for v in expected) != shape:
            raise ValueError(f"X holds images of shape {shape}, but the network takes {tuple(expected)}.")
        if fitting and self.input_shape is None:
            self.image_shape_ = shape
        return X.reshape(X.shape[0], -1)

    def _check_configuration(self, n_features, image_shape=None):
        """Every parameter check that needs no data but the number of input features (a study runs it for each
        grid candidate before any fit): parameter types and ranges, routed parameters, device, backbone, input
        scaling, optimizer. ``image_shape``: the shape of one image when X holds images."""
        if image_shape is not None:
            self._flat(np.zeros((1,) + tuple(image_shape), dtype=np.float32), fitting=True)
        self._validate_params()
        _check_routed(self._extra_params())
        check_device(self.device)
        self._backbone(n_features)
        self._input_scaling()
        self._optimizer_args()
        if self.train_split is not None and self.validation_fraction is not None:
            raise ValueError("give either train_split or validation_fraction, not both.")

    def _prepare(self, X, y, reset):
        """Validate everything (parameters, device, data, labels) before any training."""
        self._validate_params()
        _check_routed(self._extra_params())
        self._device = check_device(self.device)
        self._columns = np.asarray(y.columns) if hasattr(y, "columns") and getattr(y, "ndim", 1) == 2 else None
        X = self._flat(X, fitting=reset)
        check_fit_inputs(X, y)  # string X, mixed-type/ragged/non-0-1 labels: named before sklearn's checks
        X, y = validate_data(self, untensor(X), untensor(y) if y is not None else None, reset=reset,
                             multi_output=True, dtype=[np.float32, np.float64], y_numeric=False)
        Xf = np.ascontiguousarray(X, dtype=np.float32)
        if not np.isfinite(Xf).all():
            raise ValueError("X holds values too large for float32 (the network's precision); scale them first.")
        return Xf, y

    def _seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _initialize(self, Xf, target):
        seed = self._seed()
        devices = [torch.device(self._device)] if self._device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            network = self._build_network(Xf.shape[1], len(self.classes_), torch.as_tensor(Xf[:2]), Xf)
            self._macs_per_sample = forward_macs(network, torch.as_tensor(Xf[:2]))
            self.net_ = self._make_net(network, len(Xf), float(np.max(np.abs(Xf))) if Xf.size else 0.0)
            self.net_.initialize()

    def fit(self, X, y):
        """Train the network (continuing a fitted one when ``warm_start=True``).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)
            Flat inputs (reshaped by ``input_shape`` for CNNs), or images for
            the image backbones (their shape is then the network's input shape).
        y : array-like of shape (n_samples,) or (n_samples, K)
            Class labels, or a 0/1 indicator matrix (multi-label; a DataFrame's
            column names become ``classes_``; all-zero rows are label-free
            samples).

        Returns
        -------
        self
        """
        continuing = self.warm_start and hasattr(self, "net_")
        Xf, y = self._prepare(X, y, reset=not continuing)
        classes = getattr(self, "classes_", None)
        target = self._encode_targets(y, self._columns)
        if continuing and (classes is None or not np.array_equal(classes, self.classes_)):
            raise ValueError("warm_start continues a fitted network: y must have the classes of the first fit.")
        X_all, target_all = Xf, target
        Xf, target, self._held_out = self._rule_holdout(Xf, target)
        if continuing:
            self._sync_net(Xf)
        else:
            self._initialize(Xf, target)
        self._train(Xf, target)
        if continuing or not getattr(self, "decision_scores_", None):
            return self
        # decision_rule='auto' chose on rows the network did not see; like a search's refit, the network is
        # then trained again on every row, and keeps the choice and the held-out spread of the features
        choice, scores = self.decision_rule_, self.decision_scores_
        noise = None if getattr(self, "decision_", None) is None else self.decision_.noise_scale_
        self._label_statistics(target_all)
        self._initialize(X_all, target_all)
        self._train(X_all, target_all)
        self.decision_rule_, self.decision_scores_ = choice, scores
        if noise is not None and getattr(self, "decision_", None) is not None:
            self.decision_.noise_scale_ = noise
        return self

    def partial_fit(self, X, y, classes=None):
        """Train for ``max_epochs`` more epochs without re-initialising (skorch's ``partial_fit``).

        The first call builds the network; ``classes`` (1-D labels) must then
        list every class if ``y`` does not hold them all.
        """
        first = not hasattr(self, "net_")
        Xf, y = self._prepare(X, y, reset=first)
        if first:
            target = self._encode_targets(y if classes is None else np.concatenate([np.asarray(classes), y]),
                                          self._columns)
            if classes is not None:
                target = target[len(classes):]
            self._initialize(Xf, target)
        else:
            saved = (self.classes_, self._size_prior, self._default_top_k) if self.multilabel_ else (self.classes_,)
            target = self._encode_targets(y) if self.multilabel_ else None
            if self.multilabel_:  # the label statistics of the first call stay
                self._size_prior, self._default_top_k = saved[1], saved[2]
            saved = saved[0]
            if not self.multilabel_:
                unknown = np.setdiff1d(np.unique(np.asarray(y)), saved)
                if unknown.size:
                    raise ValueError(f"partial_fit got labels never declared in the first call: {unknown[:5].tolist()}.")
                target = np.searchsorted(saved, np.asarray(y).ravel()).astype(np.int64)
            self.classes_ = saved
        stats = (getattr(self, "_size_prior", None), getattr(self, "_default_top_k", None))
        Xf, target, self._held_out = self._rule_holdout(Xf, target)
        if not first:
            if self.multilabel_:  # the label statistics of the first call stay
                self._size_prior, self._default_top_k = stats
            self._sync_net(Xf)
        return self._train(Xf, target)

    def _sync_net(self, Xf):
        """Apply what ``set_params`` changed since the net was built before it trains again.

        A warm-started ``fit`` or a later ``partial_fit`` continues the same
        module and optimizer state, with the current epochs, rate, split,
        callbacks and penalties (as ``set_params`` on a skorch net would).
        """
        input_scale = float(np.max(np.abs(Xf))) if Xf.size else 0.0
        input_scaling = self._scaling_of(self.net_.module_)  # fixed when the network was built
        routed = {"criterion__normalize": self.loss == "pal_mean",
                  "criterion__label_smoothing": float(self.label_smoothing),
                  "criterion__focal_gamma": float(self.focal_gamma)}
        routed.update({k: v for k, v in self._routed_params().items()
                       if k.startswith(("iterator_", "dataset__", "criterion__"))})
        # skorch rebuilds the criterion and the optimizer (losing its state) on any criterion change
        routed = {k: v for k, v in routed.items() if not hasattr(self.net_, k) or getattr(self.net_, k) != v}
        self.net_.set_params(max_epochs=self._max_epochs(), batch_size=self.batch_size,
                             train_split=self._train_split(), feature_decay=self.lambda_H,
                             callbacks=self._callbacks(input_scale, input_scaling), **routed)
        self.net_.initialize_callbacks()  # skorch's set_params builds them from the list it is replacing
        callback_params = {k: v for k, v in self._routed_params().items() if k.startswith("callbacks__")}
        if callback_params:
            self.net_.set_params(**callback_params)
        # initial_lr: the base rate the cosine schedule restarts from (it would otherwise keep the first fit's)
        settings = {"lr": self._lr(), "initial_lr": self._lr(), "weight_decay": self._weight_decay()}
        if self.optimizer == "sgd":
            settings["momentum"] = self.momentum
        settings.update({k[len("optimizer__"):]: v for k, v in self._routed_params().items()
                         if k.startswith("optimizer__")})
        for group in self.net_.optimizer_.param_groups:  # in place: momentum buffers are kept
            group.update({k: v for k, v in settings.items() if k in group})
        self.net_.lr = self._lr()

    def _threads(self):
        """Intra-op threads for this network (see ``n_threads``); None leaves torch's setting."""
        macs = getattr(self, "_macs_per_sample", None)
        return policy_threads(None if macs is None else macs * self.batch_size, self.n_threads)

    def _train(self, Xf, target):
        with torch_threads(self._threads()):
            return self._train_here(Xf, target)

    def _train_here(self, Xf, target):
        devices = [torch.device(self._device)] if self._device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._seed() + len(self.net_.history))
            self.net_.partial_fit(Xf, target)
        self._set_fitted_attributes()
        if self.multilabel_:
            self.fit_rule(Xf, target)
            self._choose_rule()
        self._held_out = None  # no copy of the data is kept
        return self

    def _choose_rule(self):
        """``decision_rule='auto'``: score every rule on the held-out rows, keep the best (``decision_rule_``,
        ``decision_scores_``); the tag-wise rule's noise scale is taken from them first."""
        from .decision import RULES, rule_scorer

        held = getattr(self, "_held_out", None)
        self.decision_scores_ = None
        if self.decision_rule != "auto" or held is None:
            self.decision_rule_ = self._rule()
            return
        _, score = rule_scorer(self.rule_scoring)
        X_held, Y_held = held
        logits, features = self._outputs(X_held)
        Y_true = Y_held.astype(bool)
        if getattr(self, "decision_", None) is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NCWarning)
                self.decision_.fit_noise(features, Y_held)
        scores = {}
        for rule in RULES:
            if rule == "tagwise" and getattr(self, "decision_", None) is None:
                continue  # the label sets do not determine the class means: not a candidate
            scores[rule] = float(score(Y_true, self._multilabel_predict(logits, features, rule)))
        self.decision_scores_ = scores
        self.decision_rule_ = max(scores, key=lambda r: (scores[r], -RULES.index(r)))

    def initialize(self, X, y):
        """Build the (untrained) network for data like ``X``, ``y`` (then e.g. :meth:`load_params`)."""
        Xf, y = self._prepare(X, y, reset=True)
        target = self._encode_targets(y, self._columns)
        self._initialize(Xf, target)
        self._set_fitted_attributes()
        return self

    def fit_rule(self, X, y):
        """Fit the multi-label tag-wise rule on the features of ``X`` (no training), e.g. after :meth:`load_params`."""
        check_is_fitted(self, "net_")
        Y = np.asarray(untensor(y))
        features = self.transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NCWarning)
            try:
                self.decision_ = TagWiseAverageClassifier(metric=self.tagwise_metric).fit(features, Y)
            except ValueError as exc:  # e.g. features that collapsed to zero
                warnings.warn(f"the tag-wise rule could not be fitted ({exc}); decision_rule='tagwise' will raise.",
                              NCWarning, stacklevel=2)
                self.decision_ = None
        return self

    def save_params(self, **kwargs):
        """Save the network's parameters, optimizer, criterion or history (skorch's ``save_params``)."""
        check_is_fitted(self, "net_")
        self.net_.save_params(**kwargs)

    def load_params(self, **kwargs):
        """Load what :meth:`save_params` saved into an initialized or fitted estimator."""
        check_is_fitted(self, "net_")
        self.net_.load_params(**kwargs)
        self._set_fitted_attributes()
        return self

    def _set_fitted_attributes(self):
        W, b = head_parameters(self.net_.module_)
        self.coef_ = W
        self.intercept_ = np.zeros(W.shape[0]) if b is None else b
        self.n_parameters_ = count_parameters(self.net_.module_)
        rows = []
        for entry in self.net_.history:
            rows.append({k: v for k, v in entry.items() if k != "batches" and not isinstance(v, (list, dict))})
        self.history_ = pd.DataFrame(rows)
        self._n_features_out = W.shape[1]

    # ------------------------------------------------------------- inference
    def _forward(self, X):
        check_is_fitted(self, "net_")
        X = validate_data(self, self._flat(X, fitting=False), reset=False, dtype=[np.float32, np.float64])
        return self._outputs(np.ascontiguousarray(X, dtype=np.float32))

    def _outputs(self, Xf):
        """Logits and penultimate features (float64 numpy) of prepared float32 rows."""
        with torch_threads(self._threads()):
            logits, features = self.net_.forward(Xf, training=False)
        logits, features = logits.double().cpu().numpy(), features.double().cpu().numpy()
        bad = ~(np.isfinite(logits).all(axis=1) & np.isfinite(features).all(axis=1))
        if bad.any():
            raise ValueError(
                f"the network's output is not finite for {int(bad.sum())} sample(s) (first at row "
                f"{int(np.flatnonzero(bad)[0])}): their inputs are of a magnitude the network cannot handle "
                f"(largest |X| {float(np.max(np.abs(Xf))):.3g}); scale X as in training."
            )
        return logits, features

    def decision_function(self, X):
        """Logits ``W h + b`` of shape (n_samples, K).

        For a binary (two-class, 1-D ``y``) problem, scikit-learn's convention of
        one score per sample is followed: ``z_1 - z_0`` (positive for ``classes_[1]``).
        """
        logits = self._forward(X)[0]
        if not self.multilabel_ and logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities (n_samples, K).

        Multi-class: the softmax. Multi-label: one probability per label (rows
        do not sum to 1), the marginal ``P(k in S | x)`` of the posterior over
        label sets implied by PAL's softmax and the training frequency of each
        set size (:func:`sknc.decision.pal_label_marginals`).
        """
        logits = self._forward(X)[0]
        if self.multilabel_:
            return pal_label_marginals(logits, self._size_prior)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def transform(self, X):
        """Penultimate features (n_samples, width)."""
        return self._forward(X)[1]

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "net_")
        return np.asarray([f"palclassifier{i}" for i in range(self._n_features_out)], dtype=object)

    def _multilabel_predict(self, logits, features, rule=None):
        rule = self._rule() if rule is None else rule
        allow_empty = self._size_prior.get(0, 0.0) > 0  # label-free training rows make the empty set valid
        if rule == "tagwise":
            if getattr(self, "decision_", None) is None:
                raise ValueError("the tag-wise rule is not fitted (call fit_rule(X, y) after load_params, or use "
                                 "decision_rule='threshold').")
            self.decision_.set_params(metric=self.tagwise_metric)
            return self.decision_.predict(features).astype(bool)
        if rule == "mean_logit":
            chosen = logits > logits.mean(axis=1, keepdims=True)
        elif rule == "topk":
            k = self._default_top_k if self.top_k is None else min(int(self.top_k), logits.shape[1])
            chosen = np.zeros(logits.shape, dtype=bool)
            np.put_along_axis(chosen, np.argsort(-logits, axis=1)[:, :k], True, axis=1)
            return chosen
        else:
            proba = pal_label_marginals(logits, self._size_prior)
            thr = np.asarray(self.threshold, dtype=np.float64)
            if thr.ndim == 1 and thr.shape != (proba.shape[1],):
                raise ValueError(f"threshold has shape {thr.shape}; expected a scalar or ({proba.shape[1]},).")
            chosen = proba >= thr
        return self._within_seen_sizes(chosen, logits, allow_empty)

    def _within_seen_sizes(self, chosen, scores, allow_empty):
        """Sets no smaller than the smallest labelled training set and no larger than the largest: labels are
        added (or dropped) in the order of ``scores``. The empty set stays only if training had label-free
        rows."""
        seen = [m for m, p in self._size_prior.items() if m > 0 and p > 0]
        low, high = (min(seen), max(seen)) if seen else (1, chosen.shape[1])
        sizes = chosen.sum(axis=1)
        fix = (sizes > high) | ((sizes < low) & ((sizes > 0) | (not allow_empty)))
        if fix.any():
            order = np.argsort(-np.where(chosen[fix], np.inf, 0.0) - scores[fix], axis=1, kind="stable")
            # keep the chosen labels first (by score), then the others by score; cut at the nearest seen size
            target = np.clip(sizes[fix], low, high)
            rows = np.zeros((int(fix.sum()), chosen.shape[1]), dtype=bool)
            ranks = np.argsort(order, axis=1)
            rows[ranks < target[:, None]] = True
            chosen = chosen.copy()
            chosen[fix] = rows
        return chosen

    def predict(self, X):
        """Class labels, or an indicator matrix of the fitted ``y``'s dtype (multi-label)."""
        logits, features = self._forward(X)
        if not self.multilabel_:
            return self.classes_[np.argmax(logits, axis=1)]
        return self._multilabel_predict(logits, features).astype(self._y_dtype)


def _input_statistics(X, kind, input_shape=None, chunk=8192):
    """Offset and scale per input column, ``(x - offset) / scale``, from the training rows.

    'minmax': each column's minimum and range; 'standard': its mean and
    standard deviation (float64 sums in row chunks, no full float64 copy);
    'channel': each channel's minimum and range over all its pixels, repeated
    over the channel's columns. A constant column or channel keeps scale 1.
    """
    n, d = X.shape
    if kind == "standard":
        total = np.zeros(d)
        for start in range(0, n, chunk):
            total += X[start:start + chunk].sum(axis=0, dtype=np.float64)
        offset = total / n
        sq = np.zeros(d)
        for start in range(0, n, chunk):
            centred = X[start:start + chunk].astype(np.float64) - offset
            sq += np.einsum("ij,ij->j", centred, centred)
        scale = np.sqrt(sq / n)
    else:
        low = X.min(axis=0).astype(np.float64)
        high = X.max(axis=0).astype(np.float64)
        if kind == "channel":
            channels = int(input_shape[0])
            low = np.repeat(low.reshape(channels, -1).min(axis=1), d // channels)
            high = np.repeat(high.reshape(channels, -1).max(axis=1), d // channels)
        offset, scale = low, high - low
    # a spread at the rounding level of the values is no spread (StandardScaler's rule)
    constant = scale <= 10 * np.finfo(np.float32).eps * np.maximum(np.abs(offset), 1.0)
    scale[constant] = 1.0
    return offset, scale


def _check_routed(params):
    unknown = [k for k in params if not k.startswith(_ROUTED)]
    if unknown:
        raise TypeError(
            f"PALClassifier got unexpected parameter(s) {sorted(unknown)}; routed skorch parameters start with "
            f"{', '.join(_ROUTED)}."
        )
    for key in params:
        if key.startswith("callbacks__") and key.count("__") < 2:
            raise TypeError(f"{key!r}: callback parameters are routed as callbacks__NAME__param.")
