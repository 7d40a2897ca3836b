"""Tables, claims and figures of the experiment's results.

The experiment's results: the paper's Table 1 and Figures 2 and 3, next to the paper's own
numbers and claims, written as Markdown, CSV and PNG.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .fusion import LINEAR_COUNTERPART, NETWORK_KINDS

TABLE1_COLUMNS = ("mse", "rmse", "mae", "msle", "msle_clipped")
FIGURE2_COLUMNS = ("precision", "recall", "f1", "ndcg", "auc")
FIGURE3_COLUMNS = ("learning_rate", "epoch", "train_loss", "validation_loss")

#: The paper's Table 1 (its private data; only the ordering is expected to carry over).
PAPER_TABLE1 = {
    "autoencoder": {"mse": 1.247, "rmse": 1.104, "mae": 0.528, "msle": 0.142},
    "cnn": {"mse": 1.201, "rmse": 1.096, "mae": 0.513, "msle": 0.135},
    "cnn_lstm": {"mse": 1.066, "rmse": 1.032, "mae": 0.504, "msle": 0.129},
    "embedding": {"mse": 1.415, "rmse": 1.190, "mae": 0.586, "msle": 0.161},
    "fusion": {"mse": 0.917, "rmse": 0.958, "mae": 0.482, "msle": 0.117},
}
#: How the paper names the kinds.
PAPER_NAMES = {
    "autoencoder": "AutoEncoder",
    "cnn": "CNN",
    "cnn_lstm": "CNN+LSTM",
    "embedding": "Embedding",
    "fusion": "Ours (fusion)",
}
#: The linear baselines (closed-form ridge regression on the same inputs as the networks).
LINEAR_NAMES = {
    "ridge": "Ridge (audio stats + metadata)",
    "ridge_audio": "Ridge (audio stats)",
    "ridge_metadata": "Ridge (metadata)",
}
#: The bar a network must clear over its linear counterpart to "beat" it clearly:
#: recall@N at least this ratio and user AUC at least this much higher.
RECALL_RATIO_BAR = 1.2
AUC_MARGIN_BAR = 0.03


def _label(model: str) -> str:
    return PAPER_NAMES.get(model, LINEAR_NAMES.get(model, model))


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class PipelineResult:
    """What :meth:`musrec.Pipeline.run` measured.

    The dataclass's fields are its constructor's arguments, in the order below (``figure3``,
    ``histories`` and ``summary`` may be left out: they default to empty). The rows are
    plain dicts, so a result can also be built by hand, as in the examples.

    Attributes
    ----------
    table1 : list of dict
        One row per model kind: ``model``, ``mse``, ``rmse``, ``mae``, ``msle`` and
        ``msle_clipped`` (how many values MSLE had to clip).
    figure2 : list of dict
        One row per (model, N): ``model``, ``N``, ``precision``, ``recall``, ``f1``, ``ndcg``
        and ``auc`` of ranking the cold-start songs, including the reference rows
        "popularity", "random" and "WMF oracle".
    figure3 : list of dict
        One row per (learning rate, epoch): ``learning_rate``, ``epoch``, ``train_loss`` and
        ``validation_loss``. Default: empty (no learning-rate study).
    histories : dict of str to dict
        Each model kind's training history (:attr:`musrec.FusionModel.history_`). Default: empty.
    summary : dict
        Sizes, counts of what was missing, and the time and peak memory of every stage
        (``summary["stages"]``); :func:`musrec.reproduce` adds ``preset``, ``data`` and
        ``files``. Default: empty.

    See Also
    --------
    musrec.Pipeline.run : Measures one.
    musrec.reproduce : Runs a preset's experiment and writes its result.

    Examples
    --------
    >>> from musrec.report import PipelineResult
    >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
    >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
    >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
    >>> result = PipelineResult(table1, [ours, ridge])
    >>> result.recall("fusion", 10)
    0.4
    >>> result.verdict_lines()
    ['fusion clearly beats ridge: recall@10 0.4000 vs 0.3000 (1.33x), AUC 0.860 vs 0.820 (+0.040)']
    """

    table1: list[dict]
    figure2: list[dict]
    figure3: list[dict] = field(default_factory=list)
    histories: dict[str, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    # ---- lookups ------------------------------------------------------------------------
    def recall(self, model: str, N: int) -> float:
        """Return the recall@N of ``model`` in Figure 2.

        Parameters
        ----------
        model : str
            The Figure 2 row's model, e.g. ``"fusion"`` or ``"random"``.
        N : int
            The list length.

        Returns
        -------
        float
            The row's recall.

        Raises
        ------
        KeyError
            When Figure 2 has no row for ``model`` at ``N``.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> result.recall("ridge", 10)
        0.3
        """
        return self._figure2(model, N)["recall"]

    def _figure2(self, model: str, N: int) -> dict:
        for r in self.figure2:
            if r["model"] == model and r["N"] == N:
                return r
        raise KeyError(f"no Figure 2 row for model {model!r} at N={N}")

    # ---- tables -------------------------------------------------------------------------
    def table1_markdown(self, paper: bool = False) -> str:
        """Format Table 1 as Markdown; with ``paper``, the paper's numbers in a second column per metric.

        Models are named as the paper names them (``"fusion"`` is "Ours (fusion)"); MSE, RMSE,
        MAE and MSLE are given to 4 significant digits, then how many values MSLE clipped.

        Parameters
        ----------
        paper : bool, default False
            Add the paper's value (:data:`PAPER_TABLE1`, 3 decimals; empty for models the paper
            lacks) after each metric.

        Returns
        -------
        str
            A Markdown table, one row per Table 1 row.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> print(result.table1_markdown())
        | model | MSE | RMSE | MAE | MSLE | MSLE clipped values |
        |---|---|---|---|---|---|
        | Ours (fusion) | 0.92 | 0.96 | 0.48 | 0.12 | 0 |
        """
        head = ["model", "MSE", "RMSE", "MAE", "MSLE", "MSLE clipped values"]
        if paper:
            head = ["model", "MSE", "paper", "RMSE", "paper", "MAE", "paper", "MSLE", "paper", "MSLE clipped values"]
        rows = []
        for r in self.table1:
            cells = [_label(r["model"])]
            for c in TABLE1_COLUMNS[:4]:
                cells.append(f"{r[c]:.4g}")
                if paper:
                    theirs = PAPER_TABLE1.get(r["model"], {}).get(c)
                    cells.append("" if theirs is None else f"{theirs:.3f}")
            rows.append([*cells, str(r["msle_clipped"])])
        return _markdown(head, rows)

    def figure2_markdown(self, N: int | None = None) -> str:
        """Format Figure 2's numbers as Markdown, for every N measured or only ``N``.

        Parameters
        ----------
        N : int or None, optional
            Only the rows of this list length; None (the default): every row.

        Returns
        -------
        str
            A Markdown table of model, N, precision, recall, F1, NDCG and AUC (4 decimals).

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> print(result.figure2_markdown(10))
        | model | N | precision | recall | F1 | NDCG | AUC |
        |---|---|---|---|---|---|---|
        | Ours (fusion) | 10 | 0.0400 | 0.4000 | 0.0700 | 0.3000 | 0.8600 |
        | Ridge (audio stats + metadata) | 10 | 0.0300 | 0.3000 | 0.0500 | 0.2000 | 0.8200 |
        """
        rows = [
            [_label(r["model"]), str(r["N"]), *(f"{r[c]:.4f}" for c in FIGURE2_COLUMNS)]
            for r in self.figure2
            if N is None or r["N"] == N
        ]
        return _markdown(["model", "N", "precision", "recall", "F1", "NDCG", "AUC"], rows)

    def summary_markdown(self) -> str:
        """Format the run's summary as Markdown.

        Returns
        -------
        str
            One bullet per integer entry of :attr:`summary` (its name with spaces), then, when
            the summary has ``stages``, a table of each stage's seconds, whether it was read
            from the cache, and the peak memory (MB) after it.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> stage = {"stage": "WMF", "seconds": 1.25, "cached": True, "peak_rss_mb": 93.6}
        >>> result = PipelineResult([], [], summary={"users": 600, "test_songs": 151, "stages": [stage]})
        >>> print(result.summary_markdown())
        - users: 600
        - test songs: 151
        <BLANKLINE>
        | stage | seconds | cached | peak memory (MB) |
        |---|---|---|---|
        | WMF | 1.2 | yes | 94 |
        """
        s = self.summary
        lines = [f"- {k.replace('_', ' ')}: {v:,}" for k, v in s.items() if isinstance(v, int)]
        stages = s.get("stages", [])
        if stages:
            lines.append("")
            rows = [
                [
                    st["stage"],
                    f"{st['seconds']:.1f}",
                    "yes" if st.get("cached") else "",
                    f"{st['peak_rss_mb']:,.0f}",
                ]
                for st in stages
            ]
            lines.append(_markdown(["stage", "seconds", "cached", "peak memory (MB)"], rows))
        return "\n".join(lines)

    # ---- networks against the linear baseline -------------------------------------------
    def verdicts(self, N: int | None = None) -> list[dict]:
        """Judge each network against the ridge model on the same inputs, at recall@N and user AUC.

        The verdict is "clearly beats" (recall@N at least 1.2x and AUC at least 0.03 higher:
        the bar musrec holds its networks to, :data:`RECALL_RATIO_BAR` and
        :data:`AUC_MARGIN_BAR`), "beats" (both higher), "mixed" (one higher) or "loses". Only
        networks whose counterpart (:data:`musrec.fusion.LINEAR_COUNTERPART`) was run are
        listed, in Figure 2's order.

        Parameters
        ----------
        N : int or None, optional
            The list length; None (the default): 10 if measured, else the smallest N measured.

        Returns
        -------
        list of dict
            Rows ``{"model", "baseline", "N", "recall", "baseline_recall", "recall_ratio",
            "auc", "baseline_auc", "auc_margin", "verdict"}``; ``recall_ratio`` is infinite
            when the baseline's recall is 0.

        Raises
        ------
        KeyError
            When a listed network or its baseline has no Figure 2 row at ``N``.

        See Also
        --------
        verdict_lines : The same as one line of text per network.
        verdicts_markdown : The same as a Markdown table.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> [(v["model"], v["baseline"], v["verdict"]) for v in result.verdicts()]
        [('fusion', 'ridge', 'clearly beats')]
        """
        N = self._default_N(N)
        models = {r["model"] for r in self.figure2}
        out = []
        for model in dict.fromkeys(r["model"] for r in self.figure2):
            baseline = LINEAR_COUNTERPART.get(model)
            if model not in NETWORK_KINDS or baseline not in models:
                continue
            ours, theirs = self._figure2(model, N), self._figure2(baseline, N)
            ratio = ours["recall"] / theirs["recall"] if theirs["recall"] > 0 else float("inf")
            margin = ours["auc"] - theirs["auc"]
            if ratio >= RECALL_RATIO_BAR and margin >= AUC_MARGIN_BAR:
                verdict = "clearly beats"
            elif ratio > 1 and margin > 0:
                verdict = "beats"
            elif ratio > 1 or margin > 0:
                verdict = "mixed"
            else:
                verdict = "loses"
            out.append(
                {
                    "model": model,
                    "baseline": baseline,
                    "N": N,
                    "recall": ours["recall"],
                    "baseline_recall": theirs["recall"],
                    "recall_ratio": ratio,
                    "auc": ours["auc"],
                    "baseline_auc": theirs["auc"],
                    "auc_margin": margin,
                    "verdict": verdict,
                }
            )
        return out

    def verdict_lines(self, N: int | None = None) -> list[str]:
        """Describe each network's verdict against its linear counterpart in one line, with the numbers.

        Parameters
        ----------
        N : int or None, optional
            The list length; None (the default): 10 if measured, else the smallest N measured.

        Returns
        -------
        list of str
            One line per row of :meth:`verdicts` (a "loses" verdict in capitals): recall@N of
            both, their ratio, AUC of both and the margin.

        Raises
        ------
        KeyError
            When a listed network or its baseline has no Figure 2 row at ``N``.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> result.verdict_lines(10)
        ['fusion clearly beats ridge: recall@10 0.4000 vs 0.3000 (1.33x), AUC 0.860 vs 0.820 (+0.040)']
        """
        return [
            f"{v['model']} {v['verdict'].upper() if v['verdict'] == 'loses' else v['verdict']} {v['baseline']}: "
            f"recall@{v['N']} {v['recall']:.4f} vs {v['baseline_recall']:.4f} ({v['recall_ratio']:.2f}x), "
            f"AUC {v['auc']:.3f} vs {v['baseline_auc']:.3f} ({v['auc_margin']:+.3f})"
            for v in self.verdicts(N)
        ]

    def verdicts_markdown(self, N: int | None = None) -> str:
        """Format :meth:`verdicts` as a Markdown table (a "loses" verdict in bold).

        Parameters
        ----------
        N : int or None, optional
            The list length; None (the default): 10 if measured, else the smallest N measured.

        Returns
        -------
        str
            A Markdown table of network, linear baseline, recall@N (both and their ratio), user
            AUC (both and the margin) and verdict.

        Raises
        ------
        KeyError
            When a listed network or its baseline has no Figure 2 row at ``N``.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> embedding = {"model": "embedding", "N": 10, "recall": 0.3, "auc": 0.8}
        >>> ridge = {"model": "ridge_metadata", "N": 10, "recall": 0.4, "auc": 0.8}
        >>> print(PipelineResult([], [embedding, ridge]).verdicts_markdown())
        | network | linear baseline | recall@10 | user AUC | verdict |
        |---|---|---|---|---|
        | Embedding | Ridge (metadata) | 0.3000 / 0.4000 (0.75x) | 0.800 / 0.800 (+0.000) | **loses** |
        """
        rows = [
            [
                _label(v["model"]),
                _label(v["baseline"]),
                f"{v['recall']:.4f} / {v['baseline_recall']:.4f} ({v['recall_ratio']:.2f}x)",
                f"{v['auc']:.3f} / {v['baseline_auc']:.3f} ({v['auc_margin']:+.3f})",
                v["verdict"] if v["verdict"] != "loses" else "**loses**",
            ]
            for v in self.verdicts(N)
        ]
        n = self._default_N(N)
        return _markdown(["network", "linear baseline", f"recall@{n}", "user AUC", "verdict"], rows)

    def _default_N(self, N: int | None) -> int:
        if N is not None:
            return N
        ns = sorted({r["N"] for r in self.figure2})
        return 10 if 10 in ns else ns[0]

    # ---- the paper's claims -------------------------------------------------------------
    def claims(self, N: int | None = None) -> list[dict]:
        """Check the paper's qualitative claims on these results.

        The claims, each where the results have what it needs: the fusion model's MSE is below
        that of the training songs' mean vector (with a "training mean" Table 1 row); it has
        the lowest MSE of the paper's kinds in Table 1; it has the best precision, recall and
        F1 @N of them; it beats the "random" and "popularity" rankings on recall@N; each
        network clearly beats its linear counterpart (:meth:`verdicts`); and learning rate
        0.001 reaches the lowest validation loss in Figure 3 (NaN losses left out). The
        fusion model's claims need a "fusion" row in Table 1.

        Parameters
        ----------
        N : int or None, optional
            The list length for the ranking claims; None (the default): 10 if measured, else
            the smallest N measured.

        Returns
        -------
        list of dict
            Rows ``{"claim", "holds", "evidence"}``: the claim's text, whether it holds here
            (bool) and the numbers it was judged on.

        Raises
        ------
        KeyError
            When a model the claims compare has no Figure 2 row at ``N``.

        See Also
        --------
        claims_markdown : The same as a Markdown table.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> for claim in result.claims():
        ...     print(claim["holds"], claim["claim"])
        True Table 1: the fusion model has the lowest MSE
        True Figure 2: the fusion model has the best precision@10
        True Figure 2: the fusion model has the best recall@10
        True Figure 2: the fusion model has the best f1@10
        True (ours) fusion beats ridge, the linear model on the same inputs, by 1.2x recall@10 and +0.03 AUC
        """
        N = self._default_N(N)
        mse = {r["model"]: r["mse"] for r in self.table1 if r["model"] in PAPER_NAMES}
        out = []
        if "fusion" in mse:
            others = {k: v for k, v in mse.items() if k != "fusion"}
            if "training mean" in {r["model"] for r in self.table1}:
                baseline = next(r["mse"] for r in self.table1 if r["model"] == "training mean")
                out.append(
                    {
                        "claim": "(ours) the fusion model's MSE is below that of the training songs' mean vector",
                        "holds": mse["fusion"] < baseline,
                        "evidence": f"{mse['fusion']:.4g} vs {baseline:.4g}",
                    }
                )
            out.append(
                {
                    "claim": "Table 1: the fusion model has the lowest MSE",
                    "holds": all(mse["fusion"] <= v for v in others.values()),
                    "evidence": ", ".join(f"{_label(k)} {v:.4g}" for k, v in mse.items()),
                }
            )
            kinds = [k for k in mse if k != "fusion"]
            for metric in ("precision", "recall", "f1"):
                ours = self._figure2("fusion", N)[metric]
                theirs = {k: self._figure2(k, N)[metric] for k in kinds}
                others = ", ".join(f"{_label(k)} {v:.4f}" for k, v in theirs.items())
                out.append(
                    {
                        "claim": f"Figure 2: the fusion model has the best {metric}@{N}",
                        "holds": all(ours >= v for v in theirs.values()),
                        "evidence": f"fusion {ours:.4f}; {others}",
                    }
                )
            for ref in ("random", "popularity"):
                if any(r["model"] == ref for r in self.figure2):
                    ours, theirs = self.recall("fusion", N), self.recall(ref, N)
                    out.append(
                        {
                            "claim": f"(ours) the fusion model beats the {ref} ranking on recall@{N}",
                            "holds": ours > theirs,
                            "evidence": f"{ours:.4f} vs {theirs:.4f}",
                        }
                    )
        for v in self.verdicts(N):
            out.append(
                {
                    "claim": f"(ours) {v['model']} beats {v['baseline']}, the linear model on the same inputs, "
                    f"by {RECALL_RATIO_BAR:g}x recall@{N} and +{AUC_MARGIN_BAR:g} AUC",
                    "holds": v["verdict"] == "clearly beats",
                    "evidence": f"recall {v['recall']:.4f} vs {v['baseline_recall']:.4f} ({v['recall_ratio']:.2f}x), "
                    f"AUC {v['auc']:.3f} vs {v['baseline_auc']:.3f} ({v['auc_margin']:+.3f}): {v['verdict']}",
                }
            )
        if self.figure3:
            best = {}
            for r in self.figure3:
                v = r["validation_loss"]
                if v == v:  # not NaN
                    best[r["learning_rate"]] = min(best.get(r["learning_rate"], float("inf")), v)
            if best:
                winner = min(best, key=best.get)
                out.append(
                    {
                        "claim": "Figure 3: learning rate 0.001 reaches the lowest validation loss",
                        "holds": winner == 0.001,
                        "evidence": ", ".join(f"lr {lr:g}: {v:.4g}" for lr, v in sorted(best.items(), reverse=True)),
                    }
                )
        return out

    def claims_markdown(self, N: int | None = None) -> str:
        """Format :meth:`claims` as a Markdown table (a claim that does not hold in bold "no").

        Parameters
        ----------
        N : int or None, optional
            The list length for the ranking claims; None (the default): 10 if measured, else
            the smallest N measured.

        Returns
        -------
        str
            A Markdown table of the claim, whether it holds here and the evidence.

        Raises
        ------
        KeyError
            When a model the claims compare has no Figure 2 row at ``N``.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> print(result.claims_markdown().splitlines()[2])
        | Table 1: the fusion model has the lowest MSE | yes | Ours (fusion) 0.92 |
        """
        rows = [[c["claim"], "yes" if c["holds"] else "**no**", c["evidence"]] for c in self.claims(N)]
        return _markdown(["the paper's claim", "holds here", "evidence"], rows)

    # ---- files --------------------------------------------------------------------------
    def write(self, out_dir: str | os.PathLike) -> list[str]:
        """Write the results into ``out_dir`` as CSV, Markdown, JSON and PNG files.

        Writes ``table1.csv``, ``figure2.csv`` and ``figure3.csv`` (each only when it has
        rows), ``table1.md`` (with the paper's numbers) and ``figure2.md``, the tables and
        claims as Markdown (``report.md``, :meth:`report_markdown`), ``summary.json``, and
        ``figure2.png`` / ``figure3.png`` when matplotlib is installed (:meth:`plot`).
        ``out_dir`` is created when missing; existing files are overwritten.

        Parameters
        ----------
        out_dir : str or os.PathLike
            The directory to write into.

        Returns
        -------
        list of str
            The paths written, in the order above.

        See Also
        --------
        report_markdown : The text of ``report.md``.
        plot : Only the PNG figures.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> paths = result.write("musrec-results")  # doctest: +SKIP
        """
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        written = []
        for name, rows, cols in (
            ("table1", self.table1, ("model", *TABLE1_COLUMNS)),
            ("figure2", self.figure2, ("model", "N", *FIGURE2_COLUMNS)),
            ("figure3", self.figure3, FIGURE3_COLUMNS),
        ):
            if not rows:
                continue
            path = os.path.join(out_dir, f"{name}.csv")
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            written.append(path)
        for name, text in (("table1.md", self.table1_markdown(paper=True)), ("figure2.md", self.figure2_markdown())):
            path = os.path.join(out_dir, name)
            with open(path, "w") as f:
                f.write(text + "\n")
            written.append(path)
        path = os.path.join(out_dir, "report.md")
        with open(path, "w") as f:
            f.write(self.report_markdown() + "\n")
        written.append(path)
        path = os.path.join(out_dir, "summary.json")
        with open(path, "w") as f:
            json.dump(self.summary, f, indent=2, default=str)
        written.append(path)
        return written + self.plot(out_dir)

    def report_markdown(self) -> str:
        """Format the whole report as one Markdown document (``report.md`` of :meth:`write`).

        Sections: Table 1 next to the paper's numbers, Figure 2, the networks against their
        linear baselines (:meth:`verdicts_markdown`), the paper's claims (:meth:`claims_markdown`)
        and the run's summary (:meth:`summary_markdown`), at the default N.

        Returns
        -------
        str
            The Markdown text, headed "# musrec reproduce".

        Raises
        ------
        KeyError
            When a model the claims or verdicts compare has no Figure 2 row at the default N.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> print(result.report_markdown().splitlines()[0])
        # musrec reproduce
        """
        parts = [
            "# musrec reproduce",
            "## Table 1: error of the predicted cold-start song vectors (lower is better)",
            self.table1_markdown(paper=True),
            "The paper's numbers come from its private data: the ordering, not the values, is what carries over.",
            "## Figure 2: Top-N recommendation of the cold-start songs",
            self.figure2_markdown(),
            "## The networks against the linear baseline on the same inputs",
            self.verdicts_markdown(),
            "## The paper's claims on these results",
            self.claims_markdown(),
            "## Run",
            self.summary_markdown(),
        ]
        return "\n\n".join(parts)

    def plot(self, out_dir: str | os.PathLike) -> list[str]:
        """Draw Figure 2 and Figure 3 into ``figure2.png`` and ``figure3.png`` in ``out_dir``.

        Switches matplotlib to its non-interactive Agg backend (for the whole process) and
        draws at 120 dpi. ``figure3.png`` is drawn only when there are Figure 3 rows; without
        matplotlib nothing is written.

        Parameters
        ----------
        out_dir : str or os.PathLike
            An existing directory to write into.

        Returns
        -------
        list of str
            The paths written (empty without matplotlib).

        See Also
        --------
        figure2_plot : The Figure 2 figure itself.
        figure3_plot : The Figure 3 figure itself.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> paths = result.plot("musrec-results")  # doctest: +SKIP
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return []
        written = []
        fig = self.figure2_plot(plt)
        path = os.path.join(os.fspath(out_dir), "figure2.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
        if self.figure3:
            fig = self.figure3_plot(plt)
            path = os.path.join(os.fspath(out_dir), "figure3.png")
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
        return written

    def figure2_plot(self, plt: Any = None) -> Any:
        """Draw precision, recall and F1 @N per model as a matplotlib figure.

        Three panels, one line per model over the Ns measured: dashed for the reference
        rankings ("random", "popularity", "WMF oracle"), dotted for the linear baselines, solid
        for the networks.

        Parameters
        ----------
        plt : module or None, optional
            ``matplotlib.pyplot`` (or an object with its ``subplots``); None imports it.

        Returns
        -------
        matplotlib.figure.Figure
            The figure, 13 x 3.6 inches.

        Raises
        ------
        ImportError
            When ``plt`` is None and matplotlib is not installed.

        Examples
        --------
        >>> from musrec.report import PipelineResult
        >>> ours = {"model": "fusion", "N": 10, "precision": 0.04, "recall": 0.4, "f1": 0.07, "ndcg": 0.3, "auc": 0.86}
        >>> ridge = {"model": "ridge", "N": 10, "precision": 0.03, "recall": 0.3, "f1": 0.05, "ndcg": 0.2, "auc": 0.82}
        >>> table1 = [{"model": "fusion", "mse": 0.92, "rmse": 0.96, "mae": 0.48, "msle": 0.12, "msle_clipped": 0}]
        >>> result = PipelineResult(table1, [ours, ridge])
        >>> import matplotlib.pyplot as plt
        >>> fig = result.figure2_plot(plt)
        >>> [ax.get_title() for ax in fig.axes]
        ['precision', 'recall', 'f1']
        >>> plt.close(fig)
        """
        if plt is None:
            import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, metric in zip(axes, ("precision", "recall", "f1")):
            for model in dict.fromkeys(r["model"] for r in self.figure2):
                rows = [r for r in self.figure2 if r["model"] == model]
                baseline = model in ("random", "popularity", "WMF oracle")
                style = "--" if baseline else ":" if model in LINEAR_NAMES else "-"
                ax.plot([r["N"] for r in rows], [r[metric] for r in rows], style, marker="o", label=_label(model))
            ax.set(xlabel="N", ylabel=f"{metric}@N", title=metric)
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        return fig

    def figure3_plot(self, plt: Any = None) -> Any:
        """Draw training and validation loss per learning rate as a matplotlib figure.

        Two panels sharing a logarithmic y axis, one line per learning rate over the epochs.

        Parameters
        ----------
        plt : module or None, optional
            ``matplotlib.pyplot`` (or an object with its ``subplots``); None imports it.

        Returns
        -------
        matplotlib.figure.Figure
            The figure, 10 x 3.6 inches.

        Raises
        ------
        ImportError
            When ``plt`` is None and matplotlib is not installed.

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from musrec.report import PipelineResult
        >>> rows = [
        ...     {"learning_rate": lr, "epoch": e, "train_loss": 1 / e, "validation_loss": 1.1 / e}
        ...     for lr in (0.01, 0.001)
        ...     for e in (1, 2, 3)
        ... ]
        >>> fig = PipelineResult([], [], figure3=rows).figure3_plot(plt)
        >>> [ax.get_title() for ax in fig.axes]
        ['training loss', 'validation loss']
        >>> plt.close(fig)
        """
        if plt is None:
            import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
        for ax, key, title in zip(axes, ("train_loss", "validation_loss"), ("training loss", "validation loss")):
            for lr in dict.fromkeys(r["learning_rate"] for r in self.figure3):
                rows = [r for r in self.figure3 if r["learning_rate"] == lr]
                ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], label=f"lr {lr:g}")
            ax.set(xlabel="epoch", title=title, yscale="log")
        axes[0].set_ylabel("MSE (units of the targets' variance)")
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        return fig
