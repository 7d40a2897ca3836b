"""Stage 2: predict a song's WMF vector from its content, so new songs can be recommended.

:class:`FusionModel` is the paper's network (audio CNN + LSTM fused with tag, artist and
year embeddings) and, by ``kind``, its four baselines. Training and inference run in the
Rust core (candle) with the GIL released.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

from . import _compat, _musrec, _progress
from ._musrec import NotFittedError
from ._sparse import csr_tuple, to_csr

_KIND_TABLE = _musrec.model_kinds()
#: Every model kind, the networks first (the Rust core's list).
KINDS = tuple(k[0] for k in _KIND_TABLE)
#: The closed-form linear baselines (ridge regression).
LINEAR_KINDS = tuple(k[0] for k in _KIND_TABLE if k[3])
#: The networks (the paper's Table 1).
NETWORK_KINDS = tuple(k for k in KINDS if k not in LINEAR_KINDS)
#: For each kind, the linear model on the same inputs: what it has to beat.
LINEAR_COUNTERPART = {k[0]: k[4] for k in _KIND_TABLE}
_AUDIO_KINDS = {k[0] for k in _KIND_TABLE if k[1]}
_METADATA_KINDS = {k[0] for k in _KIND_TABLE if k[2]}

#: Metadata: a pandas DataFrame or a mapping of columns ``tags``, ``artist``, ``year``, or a
#: sequence of per-song mappings with those keys. ``tags`` is a list of tag names or a
#: ``{tag: weight}`` mapping (e.g. Last.fm strengths); missing values (None/NaN, year 0) are
#: allowed everywhere.
MetadataLike = Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]], Any]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _tags(value: Any, song: int) -> list[tuple[str, float]]:
    if _missing(value):
        return []
    if isinstance(value, str):
        raise TypeError(f"song {song}: tags must be a list of tag names or a {{tag: weight}} mapping, not a string")
    if isinstance(value, Mapping):
        return [(str(tag), float(weight)) for tag, weight in value.items()]
    out = []
    for tag in value:
        if isinstance(tag, (tuple, list)) and len(tag) == 2:
            out.append((str(tag[0]), float(tag[1])))
        else:
            out.append((str(tag), 1.0))
    return out


def _year(value: Any, song: int) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or float(value) != int(value):
        raise TypeError(f"song {song}: year must be an integer or None, got {value!r}")
    return int(value) or None  # the MSD writes 0 for an unknown year


def metadata_columns(metadata: MetadataLike) -> tuple[list, list, list]:
    """Normalise metadata to (tags with weights, artists, years) lists, one entry per song.

    Parameters
    ----------
    metadata : pandas.DataFrame, mapping of str to sequence, or sequence of mapping
        A DataFrame or a mapping of columns ``tags``, ``artist``, ``year``, or a sequence of
        per-song mappings with those keys; any of them may be left out. ``tags`` is a list of
        tag names (weight 1 each) or of ``(tag, weight)`` pairs, or a ``{tag: weight}``
        mapping (e.g. Last.fm strengths). Missing values (None/NaN, year 0) are allowed
        everywhere. A DataFrame's other columns are ignored.

    Returns
    -------
    tags : list of list of (str, float)
        Each song's ``(tag, weight)`` pairs (empty when missing).
    artists : list of str or None
        Each song's artist (None when missing).
    years : list of int or None
        Each song's release year (None when missing or 0).

    Raises
    ------
    TypeError
        If ``metadata`` is none of the types above, a per-song entry is not a mapping, a
        song's ``tags`` is a string, or a year is not an integer (or an integral number).
    ValueError
        If a mapping of columns has columns other than ``tags``, ``artist`` and ``year``, or
        its columns differ in length.

    Examples
    --------
    >>> from musrec.fusion import metadata_columns
    >>> metadata_columns([{"tags": {"rock": 80, "pop": 20}, "artist": "Queen", "year": 1975}, {}])
    ([[('rock', 80.0), ('pop', 20.0)], []], ['Queen', None], [1975, None])
    >>> metadata_columns({"tags": [["jazz"]], "artist": ["Miles Davis"], "year": [0]})
    ([[('jazz', 1.0)]], ['Miles Davis'], [None])
    """
    if hasattr(metadata, "to_dict") and hasattr(metadata, "columns"):  # pandas DataFrame
        metadata = {c: list(metadata[c]) for c in metadata.columns if c in ("tags", "artist", "year")}
    if isinstance(metadata, Mapping):
        unknown = set(metadata) - {"tags", "artist", "year"}
        if unknown:
            raise ValueError(f"unknown metadata columns {sorted(unknown)}; expected tags, artist, year")
        lengths = {k: len(v) for k, v in metadata.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"metadata columns differ in length: {lengths}")
        n = next(iter(lengths.values()), 0)
        rows = [{k: metadata[k][i] for k in metadata} for i in range(n)]
    elif isinstance(metadata, Sequence) and not isinstance(metadata, str):
        rows = list(metadata)
    else:
        raise TypeError("metadata must be a DataFrame, a mapping of columns or a sequence of per-song mappings")
    tags, artists, years = [], [], []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"song {i}: metadata entries must be mappings with tags/artist/year keys")
        tags.append(_tags(row.get("tags"), i))
        artist = row.get("artist")
        artists.append(None if _missing(artist) else str(artist))
        years.append(_year(row.get("year"), i))
    return tags, artists, years


def _spectrograms(x: Any) -> np.ndarray | None:
    # the shape, (songs, n_mels, frames) or (songs, excerpts, n_mels, frames), is checked in Rust
    return None if x is None else np.ascontiguousarray(x, dtype=np.float32)


#: The constructor's settings that go to the Rust core (the rest are Python's own); the
#: names come from the core's config types (``seed`` is given as ``random_state``).
_SETTINGS = tuple(name for name in _musrec.FusionCore.SETTINGS if name != "seed")


def _targets(y: Any, name: str = "targets") -> np.ndarray:
    a = np.ascontiguousarray(y, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (songs, n_factors); got shape {a.shape}")
    return a


class FusionModel:
    """Predict WMF song vectors from log-Mel spectrograms and/or metadata.

    ``kind`` picks the model (:data:`KINDS`):

    * ``"fusion"`` (the paper's model): audio branch — three 1-D convolutions over time with
      the Mel bands as channels, each followed by non-overlapping max-pooling and ReLU, an
      LSTM over the pooled frames, a fully connected layer of ``d`` units — and metadata
      branch — embeddings of the tags (weighted mean over the song's tags), the artist and
      the release year (``year_bucket``-year buckets; unknown is its own value), an MLP of
      ``mlp_hidden`` and ``d`` units — concatenated, then a linear layer to the ``d``-dim
      song vector (``d`` = the targets' width, 100 in the paper).
    * ``"cnn_lstm"``: the audio branch alone. ``"cnn"``: convolutions averaged over time, no
      LSTM. ``"embedding"``: the metadata branch alone. ``"autoencoder"``: the convolutional
      encoder's ``d``-unit code is decoded back to the spectrogram (averaged over
      ``reconstruction_segments`` stretches of time, loss weight ``reconstruction_weight``)
      while a linear layer regresses the code to the song vector; both losses train jointly.
    * ``"ridge"``, ``"ridge_audio"``, ``"ridge_metadata"``: the linear baselines. Ridge
      regression, solved in closed form, on each Mel band's mean and standard deviation over
      the excerpt (standardised) and/or the one-hot metadata (tag weights, artist, year
      bucket). The audio and metadata penalties are picked on the validation songs from a
      grid of 0.1 to 10^4 (``config_["ridge"]`` has the path). ``"ridge_audio"`` is the
      counterpart of the audio networks, ``"ridge_metadata"`` of ``"embedding"``, ``"ridge"``
      of ``"fusion"`` (:data:`LINEAR_COUNTERPART`).

    Settings left as None take musrec's defaults (given below; with ``architecture="paper"``
    the paper's where they differ). Training and inference run in the Rust core (candle) with
    the GIL released.

    Parameters
    ----------
    kind : str, default "fusion"
        The model, one of :data:`KINDS` (see above).
    architecture : {"musrec", "paper"}, default "musrec"
        ``"paper"`` gives the paper's network as it describes it instead (no linear part,
        ReLU on every fully connected layer, no forget bias, no clipping unless given). This
        and every later parameter are keyword-only.
    conv_channels : sequence of int or None, optional
        Output channels of each 1-D convolution over time (positive); None: three of 256.
    kernel_size : int or None, optional
        Width of the convolutions in frames, odd ("same" padding); None: 3.
    pool_sizes : sequence of int or None, optional
        Non-overlapping max-pooling after each convolution, one (positive) per convolution;
        None: 4, 2, 2.
    lstm_hidden : int or None, optional
        Units of the LSTM; None: 256.
    tag_dim : int or None, optional
        Size of the tag embeddings; None: 64.
    artist_dim : int or None, optional
        Size of the artist embeddings; None: 64.
    year_dim : int or None, optional
        Size of the year embeddings; None: 16.
    mlp_hidden : int or None, optional
        Hidden units of the metadata branch's MLP; None: 512.
    dropout : float or None, optional
        Dropout on the hidden fully connected layers while training, in [0, 1); None: 0.2.
    reconstruction_weight : float or None, optional
        ``"autoencoder"``: weight of the reconstruction loss next to the regression loss
        (>= 0); None: 1.
    reconstruction_segments : int or None, optional
        ``"autoencoder"``: how many stretches of time the decoder reconstructs the
        spectrogram averaged over (1 to the number of frames); None: 8.
    wide : bool or None, optional
        Wide & deep: fit the kind's linear counterpart first, freeze it and add it to the
        output (see Notes). None: True (``architecture="paper"``: False). Always on for the
        linear kinds.
    branch_relu : bool or None, optional
        ReLU on the branches' ``d``-unit outputs; None: False (``architecture="paper"``:
        True).
    forget_bias : float or None, optional
        Initial bias of the LSTM's forget gate (finite); None: 1 (``architecture="paper"``:
        0).
    pool_max : bool or None, optional
        Summarise the last convolution by its maximum over time as well as its mean; None:
        False.
    audio_hidden : int or None, optional
        Units of a hidden ReLU layer after the audio summary (0: none); None: 0.
    deep_metadata : bool or None, optional
        Give fusion its deep metadata branch (embeddings and MLP); None: False
        (``architecture="paper"``: True). Without it fusion needs ``wide=True``.
    wide_audio : bool or None, optional
        Whether a network's linear part reads the audio statistics (each Mel band's mean and
        standard deviation) as well as the metadata. With False, fusion's linear part is
        ridge on the metadata alone and the deep audio branch carries all of the sound; the
        linear kinds always read what their kind says. None: True.
    stacked : bool or None, optional
        Fusion only: late fusion by stacking (see Notes). None: True for ``"fusion"`` (False
        for the other kinds and with ``architecture="paper"``). It applies to a fusion model
        whose linear part reads audio and metadata and which has no deep metadata branch
        (the defaults), and is ignored otherwise; ``stacked=True`` for another kind is a
        ValueError in :meth:`fit`.
    tag_task : float or None, optional
        Multi-task learning for the audio networks (``"cnn"``, ``"cnn_lstm"``,
        ``"autoencoder"``, and ``"fusion"`` without its deep metadata branch): the weight
        of a second training loss, a linear head on the audio branch that predicts each
        training song's tag strengths, beside the loss on the song vectors (each relative
        to its targets' variance, so 1 weighs them alike). Tags are denser evidence of how
        a song sounds than the WMF vector of its few listeners. :meth:`fit` then needs the
        metadata for every kind; :meth:`predict` does not. None: 0 (off).
    random_features : int or None, optional
        Random Fourier features of the audio statistics in the linear part: this many
        features ``sqrt(2) cos(z W + b)`` of the standardised statistics ``z`` (``W`` and
        ``b`` drawn from the seed; the random features of an RBF kernel), with a ridge
        penalty of their own chosen on the validation songs. The linear model becomes a
        kernel machine, still fitted in closed form, and a wide & deep network starts from
        it. For kinds whose linear part reads audio (``"ridge"``, ``"ridge_audio"``, and the
        audio networks with ``wide`` and ``wide_audio``; no effect elsewhere); at most 16,384,
        and at most one per training song. Fitting costs about the cube of (statistics +
        features + vocabulary). None: 2,000 for fusion (in its audio network's linear part and
        its stacked ridge), 0 (off) for the other kinds.
    rff_scale : float or None, optional
        The RBF kernel's ``gamma`` times the number of statistics (``3 n_mels``), > 0; at
        0.5 ``exp(-gamma |z - z'|^2)`` is about ``e^-1`` for two typical songs. None: 0.5.
    wide_flux : bool or None, optional
        Each Mel band's spectral flux (the mean absolute change of the standardised log-Mel
        from one frame to the next) beside its mean and spread in the linear part's audio
        statistics. None: on for every kind that reads audio; no effect where the linear part
        reads no audio.
    stacked_ridge_audio : bool or None, optional
        With ``stacked``: the ridge combined with the audio network reads the audio statistics
        and their random features as well as the metadata (the ``ridge`` kind's model)
        instead of the metadata alone. None: on for fusion.
    learning_rate : float or None, optional
        Adam's learning rate (> 0); None: 1e-3.
    weight_decay : float or None, optional
        AdamW's weight decay (>= 0); None: 0, which is Adam.
    batch_size : int or None, optional
        Songs per mini-batch (positive); None: 64.
    max_epochs : int or None, optional
        The maximum number of epochs (positive); None: 100.
    patience : int or None, optional
        Stop after this many epochs without a better validation error (0: never stop early);
        None: 10.
    clip_norm : float or None, optional
        Global norm gradients are clipped to (0: no clipping); None: 5
        (``architecture="paper"``: 0).
    stop_metric : {"mse", "recall"} or None, optional
        The validation error of early stopping: the MSE of the predicted vectors, or one
        minus their recall@``recall_k`` (see Notes); None: ``"mse"``.
    recall_k : int or None, optional
        The k of the validation recall (positive); None: 10.
    freq_mask : int or None, optional
        SpecAugment-style masking: each training excerpt gets one stretch of at most this
        many Mel bands set to the bands' mean (0: off); None: 0.
    time_mask : int or None, optional
        SpecAugment-style masking: each training excerpt gets one stretch of at most this
        many frames set to the bands' mean (0: off); None: 0.
    objective : {"mse", "wpe"} or None, optional
        What training minimises: the mean squared error to the WMF vectors, or WMF's own
        loss around them (see Notes); None: ``"mse"``.
    lr_patience : int or None, optional
        Epochs without a better validation error before the learning rate decays (0: off);
        None: 0.
    lr_decay : float or None, optional
        Factor of each learning-rate decay, in (0, 1] (1: off); None: 1.
    min_count : int or None, optional
        Tags and artists seen fewer times in training map to the out-of-vocabulary value;
        None: 2.
    max_tags : int or None, optional
        Cap on the tag vocabulary; None: 5,000.
    max_artists : int or None, optional
        Cap on the artist vocabulary; None: 100,000.
    year_bucket : int or None, optional
        Width in years of the release-year buckets; None: 5.
    tag_weighting : {"strength", "share"} or None, optional
        What a song's tag weights become (see Notes); None: ``"strength"``.
    random_state : int or None, optional
        Seed of training (validation split, initial weights, shuffling, dropout); None: 0.
    num_threads : int, default 0
        Threads of the Rust core (0 = one per core).
    checkpoint : str or os.PathLike or None, optional
        File the full training state is written to, atomically, after every epoch;
        ``fit(..., resume=True)`` continues from it.
    seed : int or None, optional
        Deprecated old name of ``random_state``.

    Attributes
    ----------
    kind : str
        The model kind.
    num_threads : int
        Threads of the Rust core (0 = one per core).
    checkpoint : str or None
        The checkpoint path.
    history_ : dict of str to list of float
        Per-epoch training history (see the property).
    best_epoch_ : int or None
        0-based epoch whose weights the model holds.
    stopped_early_ : bool
        Whether early stopping ended training.
    ridge_ : dict or None
        How the linear part's penalties were chosen.
    stacking_ : dict or None
        The stacked fusion model's combination.
    n_parameters_ : int
        Number of parameters of the fitted model.
    config_ : dict
        Network, training and metadata settings.

    Raises
    ------
    ValueError
        If ``kind`` or ``architecture`` is unknown, or a setting has an unknown value or is
        out of range (the network's settings, such as the layer sizes, are checked by
        :meth:`fit`).
    TypeError
        If a setting has the wrong type, or both ``random_state`` and ``seed`` are given.

    Warns
    -----
    DeprecationWarning
        If ``seed`` is given.

    See Also
    --------
    musrec.WMF : The model whose song vectors are the targets.
    metadata_columns : How the metadata is read.

    Notes
    -----
    Layers: convolutions of 256 channels, width 3 ("same" padding), pooling 4, 2, 2 (a 3 s
    clip at 22,050 Hz is 130 frames, 8 LSTM steps); LSTM 256 with forget-gate bias
    ``forget_bias`` 1; tag and artist embeddings 64, year 16; MLP 512; dropout 0.2 on the
    hidden fully connected layers.

    Where musrec departs from the paper (measured on real sound, see the README):
    ``wide=True`` fits the kind's linear counterpart first, freezes it and adds it to the
    output, so the deep branches learn only its residual and training starts from its
    predictions (wide & deep); ``branch_relu=False`` leaves the branches' ``d``-unit outputs
    linear (a ReLU there can silence a whole branch); ``deep_metadata=False``: fusion's
    metadata goes through the linear part only, and its deep part is the audio branch (with a
    deep metadata branch the artist embeddings overfit within a few epochs and early stopping
    ends training before the audio branch has learned: on real sound with new artists
    recall@10 was 0.187 with it and 0.212 without); ``stacked=True`` (fusion): late fusion by
    stacking, where the audio network (ridge on the audio statistics plus the deep audio
    branch learning its residual, trained as ``"cnn_lstm"`` is) and ridge on every input
    (``stacked_ridge_audio``; on the metadata alone before) are fitted apart and combined as
    ``a * audio + m * ridge + c``, the two weights and the per-dimension intercept fitted by
    least squares on the validation songs (:attr:`stacking_`; jointly trained, the audio
    branch learns only what ridge on everything misses and stops within a few epochs); both
    linear parts read each band's flux beside its mean and spread (``wide_flux``) and 2,000
    random Fourier features of those statistics (``random_features``), which make them kernel
    machines fitted in closed form; gradients are clipped to a global norm
    of ``clip_norm`` 5. ``architecture="paper"`` gives the paper's network as it describes it
    instead (no linear part, ReLU on every fully connected layer, no forget bias, no clipping
    unless given).

    Two more options, off by default because they measured within noise on real sound:
    ``pool_max=True`` summarises the last convolution by its maximum over time as well as its
    mean (beside the LSTM's state for the LSTM kinds), and ``audio_hidden`` > 0 puts a hidden
    ReLU layer of that many units after the summary (without one, everything after the time
    pooling is linear). ``freq_mask`` and ``time_mask`` > 0 turn on SpecAugment-style
    masking of the audio branch's training input (Park et al. 2019): each training excerpt
    gets one stretch of at most ``freq_mask`` Mel bands and one of at most ``time_mask``
    frames set to the bands' mean (prediction never masks); off by default, since with 16
    bands and 8 frames it moved cnn_lstm's recall@10 for new artists on real sound from
    0.201 to 0.175-0.199 (3 seeds, patience 8 to 20; see the README).

    Tags and artists seen fewer than ``min_count`` (2) times in training, unseen ones, songs
    without tags and unknown years all map to an out-of-vocabulary value, so cold-start songs
    always predict (``max_tags`` 5,000 and ``max_artists`` 100,000 cap the vocabularies).
    ``tag_weighting="strength"`` (the default) divides every tag weight by the largest one
    in training, so Last.fm's 0-100 says how strongly a tag applies; ``"share"`` divides
    each song's weights by their sum, the design before December 2026 (for new artists on
    real sound ridge reached 0.217 recall@10 with shares, 0.248 with strengths; for new
    songs of known artists 0.273 and 0.265: see the README).

    Training: mean squared error to the WMF vectors (divided by their spread), or with
    ``objective="wpe"`` WMF's own loss for each song around its vector (the weighted
    prediction error of van den Oord et al. 2013: errors in the directions the song's
    listeners pin down count more; :meth:`fit` then needs ``plays`` and ``users``), Adam (AdamW
    with ``weight_decay`` 0) at ``learning_rate`` 1e-3, mini-batches of ``batch_size`` 64
    shuffled by ``random_state`` (0; ``seed`` is its deprecated old name), early stopping
    when the validation error has not improved for ``patience`` (10) epochs (the best weights
    are kept), at most ``max_epochs`` (100); with ``lr_patience`` > 0 and ``lr_decay`` < 1
    the learning rate is multiplied by ``lr_decay`` after every ``lr_patience`` epochs
    without a better validation error (ReduceLROnPlateau; off by default,
    ``history_["learning_rate"]`` has each epoch's). The validation error is the MSE of the
    predicted vectors, or with ``stop_metric="recall"`` one minus their recall@``recall_k``
    (10): for each user (the WMF user vectors given to :meth:`fit` as ``users``), the share
    of their top-k validation songs by true vector that are also their top-k by predicted
    vector, the ranking a cold-start model is judged by. Spectrograms are standardised per
    Mel band with statistics of the training songs. With ``checkpoint`` set, the full
    training state is written there atomically after every epoch and
    ``fit(..., resume=True)`` continues from it.

    Deterministic for a fixed ``random_state`` and ``num_threads`` (0 = one per core).
    Fitted attributes end in ``_`` and raise :class:`musrec.NotFittedError` before
    :meth:`fit`; a model pickles (a fitted one as the bytes of its safetensors file).

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import FusionModel
    >>> rng = np.random.default_rng(0)
    >>> metadata = [{"tags": {"rock": 80.0}, "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
    >>> targets = rng.normal(size=(60, 4)).astype(np.float32)  # the songs' WMF vectors
    >>> model = FusionModel("ridge_metadata", random_state=0)
    >>> model
    FusionModel(kind='ridge_metadata', not fitted)
    >>> model.fit(None, metadata, targets, show_progress=False)
    FusionModel(kind='ridge_metadata', fitted)
    >>> model.predict(metadata=metadata).shape
    (60, 4)
    """

    def __init__(
        self,
        kind: str = "fusion",
        *,
        architecture: str = "musrec",
        conv_channels: Sequence[int] | None = None,
        kernel_size: int | None = None,
        pool_sizes: Sequence[int] | None = None,
        lstm_hidden: int | None = None,
        tag_dim: int | None = None,
        artist_dim: int | None = None,
        year_dim: int | None = None,
        mlp_hidden: int | None = None,
        dropout: float | None = None,
        reconstruction_weight: float | None = None,
        reconstruction_segments: int | None = None,
        wide: bool | None = None,
        branch_relu: bool | None = None,
        forget_bias: float | None = None,
        pool_max: bool | None = None,
        audio_hidden: int | None = None,
        deep_metadata: bool | None = None,
        wide_audio: bool | None = None,
        stacked: bool | None = None,
        tag_task: float | None = None,
        random_features: int | None = None,
        rff_scale: float | None = None,
        wide_flux: bool | None = None,
        stacked_ridge_audio: bool | None = None,
        learning_rate: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        max_epochs: int | None = None,
        patience: int | None = None,
        clip_norm: float | None = None,
        stop_metric: str | None = None,
        recall_k: int | None = None,
        freq_mask: int | None = None,
        time_mask: int | None = None,
        objective: str | None = None,
        lr_patience: int | None = None,
        lr_decay: float | None = None,
        min_count: int | None = None,
        max_tags: int | None = None,
        max_artists: int | None = None,
        year_bucket: int | None = None,
        tag_weighting: str | None = None,
        random_state: int | None = None,
        num_threads: int = 0,
        checkpoint: str | os.PathLike | None = None,
        seed: int | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        if architecture not in ("musrec", "paper"):
            raise ValueError(f"architecture must be 'musrec' or 'paper', got {architecture!r}")
        self.kind = kind
        self.num_threads = int(num_threads)
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        given = {k: v for k, v in locals().items() if k in _SETTINGS and v is not None}
        settings = dict(given)
        settings["seed"] = _compat.random_state(random_state, seed, "FusionModel")
        self._core = _musrec.FusionCore(kind, architecture == "paper", **settings)

    # ---- inputs -------------------------------------------------------------------------
    def _inputs(
        self, spectrograms: Any, metadata: MetadataLike | None, training: bool = False
    ) -> tuple[np.ndarray | None, tuple | None]:
        spec = _spectrograms(spectrograms) if self.kind in _AUDIO_KINDS else None
        if self.kind in _AUDIO_KINDS and spec is None:
            raise ValueError(f"kind {self.kind!r} needs spectrograms")
        meta = None
        if self.kind in _METADATA_KINDS:
            if metadata is None:
                raise ValueError(f"kind {self.kind!r} needs metadata")
            meta = metadata_columns(metadata)
        elif training and metadata is not None and self._core.config["net"]["tag_task"] > 0:
            meta = metadata_columns(metadata)  # the tag task's targets
        return spec, meta

    # ---- training -----------------------------------------------------------------------
    def fit(
        self,
        spectrograms: Any,
        metadata: MetadataLike | None,
        targets: Any,
        validation: float | tuple | None = 0.1,
        *,
        users: Any = None,
        plays: Any = None,
        wmf_params: Any = None,
        resume: bool = False,
        show_progress: bool = True,
        callback: Callable[[int, int, float | None], None] | None = None,
    ) -> FusionModel:
        """Train on songs' spectrograms, metadata and WMF vectors.

        Parameters
        ----------
        spectrograms : array_like of float32 or None
            Log-Mel spectrograms, (songs, n_mels, frames), one excerpt of each song, or (songs,
            excerpts, n_mels, frames): then every epoch shows the network a fresh random excerpt
            of each song, the linear part reads statistics over all of them, and validation and
            :meth:`predict` average the predictions over them. Needed by the kinds that read
            audio, ignored by the others (pass None).
        metadata : MetadataLike or None
            The songs' tags, artists and years, as :func:`metadata_columns` reads them. Needed by
            the kinds that read metadata, ignored by the others (pass None).
        targets : array_like of shape (songs, n_factors)
            The songs' WMF vectors.
        validation : float or tuple or None, default 0.1
            A fraction of the songs held out at random (seeded by ``random_state``), strictly
            between 0 and 1; a tuple ``(spectrograms, metadata, targets)`` of separate songs; or
            None (no early stopping).
        users : numpy.ndarray of shape (users, n_factors), musrec.WMF or None, optional
            The WMF user vectors the targets came from: adds the validation songs' recall to
            :attr:`history_` and is required by ``stop_metric="recall"`` and ``objective="wpe"``.
            A fitted :class:`musrec.WMF` gives its user vectors and its settings
            (``wmf_params``) at once.
        plays : scipy.sparse matrix of shape (users, songs) or None, optional
            The training songs' play counts (columns in the order of ``targets``), what
            ``objective="wpe"`` trains by: each song's error is weighted by WMF's own
            confidences. Needs ``users``.
        wmf_params : musrec.WMFParams or None, optional
            Turns the counts of ``plays`` into confidences (the defaults if None); used only with
            ``plays``.
        resume : bool, default False
            Continue from the checkpoint file (``FusionModel(checkpoint=...)``) if it exists;
            without the file, training starts afresh.
        show_progress : bool, default True
            Show a progress bar of the mini-batches (not for the linear kinds, which are one
            closed-form solve).
        callback : callable or None, optional
            ``callback(batches_done, total, running_loss)`` is called after every mini-batch.

        Returns
        -------
        FusionModel
            The model itself, fitted.

        Raises
        ------
        ValueError
            If the kind's spectrograms or metadata are missing; the inputs disagree on the number
            of songs or have the wrong shape (spectrograms neither 3-D nor 4-D, targets not 2-D,
            ``users`` of another width than ``targets``); ``validation`` is a fraction outside
            (0, 1) or a tuple not of three; ``plays`` come without ``users`` or with another
            number of songs than ``targets``; ``stop_metric="recall"`` has no ``users`` to
            validate with, or ``objective="wpe"`` no ``plays`` and ``users``; ``resume=True``
            has no checkpoint path, or the checkpoint was written by a different model or with
            other settings; a setting is out of range; or training diverged (try a smaller
            ``learning_rate``).
        TypeError
            If ``validation`` is of another type, ``wmf_params`` is not a
            :class:`musrec.WMFParams`, ``plays`` is not a scipy.sparse matrix, or the metadata
            is malformed (see :func:`metadata_columns`).
        KeyboardInterrupt
            On Ctrl-C, which stops training with the best weights so far before it is re-raised.

        See Also
        --------
        predict : Predict song vectors.
        score : Mean squared error on other songs.

        Notes
        -----
        An exception raised by ``callback`` stops training the same way as Ctrl-C: the model
        keeps the best weights so far, and the exception propagates.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import WMF, FusionModel
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=100, n_songs=80, mean_songs_per_user=10, seed=0).plays
        >>> wmf = WMF(factors=4, iterations=3, random_state=0).fit(plays, show_progress=False)
        >>> metadata = {
        ...     "tags": [["rock"] if i % 2 else ["jazz"] for i in range(80)],
        ...     "artist": [f"artist{i % 5}" for i in range(80)],
        ...     "year": [1990 + i % 7 for i in range(80)],
        ... }
        >>> model = FusionModel("embedding", max_epochs=3, random_state=0)
        >>> model.fit(None, metadata, wmf.item_factors, users=wmf, show_progress=False)
        FusionModel(kind='embedding', fitted)
        >>> sorted(model.history_)
        ['learning_rate', 'train_loss', 'validation_loss', 'validation_recall']

        An audio model, on (songs, n_mels, frames) spectrograms:

        >>> spectrograms = np.random.default_rng(0).normal(size=(80, 16, 24)).astype(np.float32)
        >>> audio = FusionModel("cnn_lstm", conv_channels=(8, 8, 8), pool_sizes=(2, 2, 2), lstm_hidden=8, max_epochs=2)
        >>> audio.fit(spectrograms, None, wmf.item_factors, show_progress=False)
        FusionModel(kind='cnn_lstm', fitted)
        """
        spec, meta = self._inputs(spectrograms, metadata, training=True)
        y = _targets(targets)
        kwargs: dict[str, Any] = {}
        if hasattr(users, "user_factors"):  # a fitted musrec.WMF
            wmf_params = users.params if wmf_params is None else wmf_params
            users = users.user_factors
        if users is not None:
            kwargs["users"] = _targets(users, "users")
        if plays is not None:
            by_song = to_csr(plays, "plays").T.tocsr()
            if by_song.shape[0] != y.shape[0]:
                raise ValueError(f"plays has {by_song.shape[0]} song columns but {y.shape[0]} targets were given")
            kwargs["plays"] = csr_tuple(to_csr(by_song, "plays"))
            if wmf_params is not None:
                if not isinstance(wmf_params, _musrec.WMFParams):
                    raise TypeError(f"wmf_params must be a musrec.WMFParams, got {type(wmf_params).__name__}")
                kwargs["wmf_params"] = wmf_params
        if isinstance(validation, tuple):
            if len(validation) != 3:
                raise ValueError("validation must be (spectrograms, metadata, targets)")
            v_spec, v_meta = self._inputs(*validation[:2])
            kwargs.update(val_spectrograms=v_spec, val_metadata=v_meta, val_targets=_targets(validation[2]))
        elif validation is not None:
            if isinstance(validation, bool) or not isinstance(validation, numbers.Real):
                raise TypeError("validation must be a fraction, a (spectrograms, metadata, targets) tuple or None")
            kwargs["val_fraction"] = float(validation)
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path (FusionModel(checkpoint=...))")
        n = y.shape[0]
        train = self._core.config["train"]
        batch_size, max_epochs = train["batch_size"], train["max_epochs"]
        fraction = kwargs.get("val_fraction", 0.0)
        per_epoch = -(-max(1, n - int(round(n * fraction))) // batch_size)
        # The linear kinds are one closed-form solve: no batches to show.
        bar = _progress.bar(max_epochs * per_epoch, f"train {self.kind}", show_progress and self.kind in NETWORK_KINDS)
        try:
            self._core.fit(
                spec,
                meta,
                y,
                checkpoint=self.checkpoint,
                resume=resume,
                num_threads=self.num_threads,
                callback=_progress.callback(bar, callback),
                **kwargs,
            )
        finally:
            bar.close()
        return self

    # ---- inference ----------------------------------------------------------------------
    def predict(
        self, spectrograms: Any = None, metadata: MetadataLike | None = None, batch_size: int = 256
    ) -> np.ndarray:
        """Predict song vectors from spectrograms and/or metadata.

        With several excerpts per song ((songs, excerpts, n_mels, frames)) the prediction is the
        average over them.

        Parameters
        ----------
        spectrograms : array_like of float32 or None, optional
            Log-Mel spectrograms, (songs, n_mels, frames) or (songs, excerpts, n_mels, frames),
            with the n_mels and frames of training. Needed by the kinds that read audio, ignored
            by the others.
        metadata : MetadataLike or None, optional
            The songs' tags, artists and years (see :func:`metadata_columns`). Needed by the kinds
            that read metadata, ignored by the others.
        batch_size : int, default 256
            Songs per inference batch.

        Returns
        -------
        numpy.ndarray of float32, shape (songs, n_factors)
            The predicted song vectors.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        ValueError
            If the kind's spectrograms or metadata are missing, the spectrograms have another
            shape than in training, or the inputs disagree on the number of songs.
        TypeError
            If the metadata is malformed (see :func:`metadata_columns`).

        See Also
        --------
        fit : Train the model.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> rng = np.random.default_rng(0)
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = rng.normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("ridge_metadata").fit(None, metadata, targets, show_progress=False)
        >>> new_songs = [{"tags": ["rock"], "artist": "someone new"}, {}]
        >>> vectors = model.predict(metadata=new_songs)
        >>> vectors.shape, vectors.dtype
        ((2, 4), dtype('float32'))
        """
        spec, meta = self._inputs(spectrograms, metadata)
        return self._core.predict(spec, meta, batch_size=int(batch_size), num_threads=self.num_threads)

    def score(self, spectrograms: Any, metadata: MetadataLike | None, targets: Any, batch_size: int = 256) -> float:
        """Compute the mean squared error of the predicted vectors against ``targets``.

        Parameters
        ----------
        spectrograms : array_like of float32 or None
            Log-Mel spectrograms, as :meth:`predict` takes them (None for the kinds that read
            no audio).
        metadata : MetadataLike or None
            The songs' tags, artists and years, as :meth:`predict` takes them (None for the
            kinds that read no metadata).
        targets : array_like of shape (songs, n_factors)
            The songs' true (WMF) vectors.
        batch_size : int, default 256
            Songs per inference batch.

        Returns
        -------
        float
            The mean squared error, in the units of ``targets``.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        ValueError
            If the kind's spectrograms or metadata are missing, ``targets`` is not 2-D, or the
            inputs do not match the model or each other in shape.
        TypeError
            If the metadata is malformed (see :func:`metadata_columns`).

        See Also
        --------
        musrec.metrics.vector_errors : MSE, RMSE, MAE and MSLE of predicted vectors.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> rng = np.random.default_rng(0)
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = rng.normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("ridge_metadata").fit(None, metadata[:40], targets[:40], show_progress=False)
        >>> mse = model.score(None, metadata[40:], targets[40:])
        >>> bool(mse > 0)
        True
        """
        spec, meta = self._inputs(spectrograms, metadata)
        return self._core.score(spec, meta, _targets(targets), batch_size=int(batch_size), num_threads=self.num_threads)

    # ---- state --------------------------------------------------------------------------
    def _state(self) -> tuple:
        if not self._core.is_fitted():
            raise NotFittedError(f"this FusionModel({self.kind!r}) is not fitted yet: call fit() or load() first")
        return self._core.training_state()

    @property
    def history_(self) -> dict[str, list[float]]:
        """Per-epoch training history.

        Returns
        -------
        dict of str to list of float
            ``train_loss``, the mean training loss of each epoch, and ``validation_loss``, the
            validation MSE (in units of the targets divided by their spread); with epochs run
            (the networks), ``learning_rate``; and when :meth:`fit` had the users' vectors,
            ``validation_recall``. The lists are empty for the linear kinds (no epochs).

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("embedding", max_epochs=3).fit(None, metadata, targets, show_progress=False)
        >>> history = model.history_
        >>> sorted(history), len(history["train_loss"])
        (['learning_rate', 'train_loss', 'validation_loss'], 3)
        """
        train, val, *_, recall, rates = self._state()
        history = {"train_loss": list(train), "validation_loss": list(val)}
        if recall:
            history["validation_recall"] = list(recall)
        if rates:
            history["learning_rate"] = list(rates)
        return history

    @property
    def best_epoch_(self) -> int | None:
        """0-based epoch whose weights the model holds (by the validation criterion).

        Returns
        -------
        int or None
            The epoch, if validated; None without validation, for the linear kinds, and when the
            wide & deep model's linear start was never beaten.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("embedding", max_epochs=3).fit(None, metadata, targets, show_progress=False)
        >>> model.best_epoch_ in (None, 0, 1, 2)
        True
        """
        return self._state()[3]

    @property
    def stopped_early_(self) -> bool:
        """Whether early stopping ended training.

        Returns
        -------
        bool
            True when ``patience`` epochs passed without a better validation error before
            ``max_epochs`` was reached.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("embedding", max_epochs=2, patience=5).fit(None, metadata, targets, show_progress=False)
        >>> model.stopped_early_
        False
        """
        return self._state()[4]

    @property
    def ridge_(self) -> dict[str, Any] | None:
        """How the linear part's penalties were chosen.

        Returns
        -------
        dict or None
            For a model with a linear part: the chosen penalties ``lambda_audio`` and
            ``lambda_metadata``, their ``validation_mse`` (None without validation songs) and the
            ``path`` of every pair tried, as ``(lambda_audio, lambda_metadata, validation MSE)``;
            also the artists' own penalty ``lambda_artist`` and its ``artist_path``. None for a
            model without a linear part.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("ridge_metadata").fit(None, metadata, targets, show_progress=False)
        >>> sorted(model.ridge_)
        ['artist_path', 'lambda_artist', 'lambda_audio', 'lambda_metadata', 'path', 'validation_mse']
        """
        self._state()
        return self.config_.get("ridge")

    @property
    def stacking_(self) -> dict[str, Any] | None:
        """The stacked fusion model's combination of audio network and metadata ridge.

        Returns
        -------
        dict or None
            For a stacked fusion model: the ``audio_weight`` and ``metadata_weight`` of the
            combination, its per-dimension ``intercept`` (in units of the targets divided by
            their spread), the metadata ridge's ``lambda_metadata``, and the validation MSE of
            the audio network, of the metadata ridge and of the combination
            (``validation_mse_audio``, ``validation_mse_metadata``, ``validation_mse``; None
            without validation songs, when the two are averaged). None for other models.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> rng = np.random.default_rng(0)
        >>> spectrograms = rng.normal(size=(60, 16, 24)).astype(np.float32)
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = rng.normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("fusion", conv_channels=(8, 8, 8), pool_sizes=(2, 2, 2), lstm_hidden=8, max_epochs=2)
        >>> model = model.fit(spectrograms, metadata, targets, show_progress=False)
        >>> sorted(model.stacking_)  # doctest: +NORMALIZE_WHITESPACE
        ['audio_weight', 'intercept', 'lambda_metadata', 'metadata_weight', 'validation_mse',
         'validation_mse_audio', 'validation_mse_metadata']
        """
        self._state()
        return self.config_.get("stacking")

    @property
    def n_parameters_(self) -> int:
        """Number of parameters of the fitted model.

        Returns
        -------
        int
            How many parameters (weights) the fitted network holds.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("embedding", max_epochs=2).fit(None, metadata, targets, show_progress=False)
        >>> model.n_parameters_ > 0
        True
        """
        self._state()
        return self._core.n_parameters()

    @property
    def config_(self) -> dict[str, Any]:
        """Network, training and metadata settings (with the fitted vocabularies).

        Returns
        -------
        dict
            ``net``, ``train`` and ``metadata_options``; once fitted also the vocabularies
            (``encoder``), the input statistics (``standardizer``), ``ridge`` and ``stacking``.
            Unlike the other attributes ending in ``_`` it is available before :meth:`fit` (the
            sizes taken from the data, such as ``net["n_factors"]``, are then placeholders).

        Examples
        --------
        >>> from musrec import FusionModel
        >>> config = FusionModel("cnn_lstm", learning_rate=3e-4).config_
        >>> sorted(config)
        ['metadata_options', 'net', 'train']
        >>> config["train"]["learning_rate"], config["net"]["conv_channels"]
        (0.0003, [256, 256, 256])
        """
        return self._core.config

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (weights, settings, vocabularies) as one safetensors file, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        OSError
            If the file cannot be written (FileNotFoundError for a missing directory).

        See Also
        --------
        load : Read the file back.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import FusionModel
        >>> metadata = [{"tags": ["rock"], "artist": f"artist{i % 5}", "year": 1990 + i % 7} for i in range(60)]
        >>> targets = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
        >>> model = FusionModel("ridge_metadata").fit(None, metadata, targets, show_progress=False)
        >>> model.save("content.safetensors")  # doctest: +SKIP
        """
        self._core.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike, num_threads: int = 0) -> FusionModel:
        """Read a model written by :meth:`save`, or a training checkpoint (its best weights).

        Parameters
        ----------
        path : str or os.PathLike
            The safetensors file.
        num_threads : int, default 0
            Threads of the Rust core (0 = one per core).

        Returns
        -------
        FusionModel
            The fitted model, of the saved kind and settings, without a ``checkpoint`` path.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        musrec.FormatError
            If the file is not a valid model file.

        See Also
        --------
        save : Write a model.

        Examples
        --------
        >>> from musrec import FusionModel
        >>> model = FusionModel.load("content.safetensors")  # doctest: +SKIP
        >>> model.kind  # doctest: +SKIP
        'ridge_metadata'
        """
        return cls._from_core(_musrec.FusionCore.load(os.fspath(path)), num_threads)

    @classmethod
    def _from_core(cls, core: _musrec.FusionCore, num_threads: int = 0) -> FusionModel:
        """Wrap a Rust ``FusionCore`` (fitted or not) without a ``checkpoint`` path."""
        model = cls.__new__(cls)
        model._core = core
        model.kind = core.config["net"]["kind"]
        model.num_threads = int(num_threads)
        model.checkpoint = None
        return model

    def _settings(self) -> dict[str, Any]:
        """Every setting the core was built with, resolved (the seed included)."""
        spec = self._core.config
        given = {**spec["net"], **spec["train"], **spec["metadata_options"]}
        return {k: v for k, v in given.items() if k in _musrec.FusionCore.SETTINGS}

    def clone(self, num_threads: int | None = None) -> FusionModel:
        """Return a new, unfitted model of the same kind and settings (seed included).

        Fitting the clone on the same inputs gives the same model, so a model can be
        retrained on new targets (for example WMF vectors after a refit) as it was first
        trained.

        Parameters
        ----------
        num_threads : int or None, optional
            Threads of the clone's Rust core (0 = one per core); None keeps this model's.

        Returns
        -------
        FusionModel
            The unfitted model, without a ``checkpoint`` path.

        Examples
        --------
        >>> from musrec import FusionModel
        >>> model = FusionModel("cnn_lstm", learning_rate=3e-4, random_state=7)
        >>> copy = model.clone()
        >>> copy.config_["train"] == model.config_["train"]
        True
        """
        core = _musrec.FusionCore(self.kind, False, **self._settings())
        return self._from_core(core, self.num_threads if num_threads is None else num_threads)

    # ---- pickling: a fitted model travels as the bytes of its safetensors file ------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "_core"}
        if self._core.is_fitted():
            state["_model_bytes"] = self._core.to_bytes()
        else:
            state["_settings"] = self._settings()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        model_bytes, settings = state.pop("_model_bytes", None), state.pop("_settings", None)
        self.__dict__.update(state)
        if model_bytes is not None:
            self._core = _musrec.FusionCore.from_bytes(model_bytes)
        else:
            self._core = _musrec.FusionCore(self.kind, False, **settings)

    def __repr__(self) -> str:
        state = "fitted" if self._core.is_fitted() else "not fitted"
        return f"FusionModel(kind={self.kind!r}, {state})"
