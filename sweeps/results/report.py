"""`sweeps report NAME`: one self-contained HTML file comparing a sweep's trials.

Reads only the sweep's results file (`results.parquet`). Writes, under `<sweep>/report/`:
`learning_curves.png` (every trial; trials stopped early are dashed and end in an x at the rung
where they were cut), `parallel_coordinates.png`, `metric_vs_<param>.png` per parameter,
`importance.png` (fANOVA over the finished trials, Optuna's evaluator), `asha_rungs.png` when
ASHA or Hyperband ran, and `report.html` with every plot embedded and a table of the top trials.
Tune also writes TensorBoard event files per trial beside the trials' results.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from sweeps.results.lineage import exploits
from sweeps.results.results_file import generation_of
from sweeps.results.summaries import TrialSummary, summarize
from sweeps.spec import SchedulerSpec, SearchSpec
from sweeps.spec.space import Param
from sweeps.store.trivial import compare
from trainables.objective import Objective, is_finite_number


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _axis(values: list[Any], param: Param | None) -> tuple[list[float], list[str] | None, bool]:
    """Plot positions for a parameter's values: numbers as they are (log axis for loguniform
    and lognormal), anything else as category indices with their labels."""
    if _numeric(values):
        log = param is not None and param.kind in ("loguniform", "lognormal")
        return [float(v) for v in values], None, log
    labels = sorted({str(v) for v in values})
    return [float(labels.index(str(v))) for v in values], labels, False


def learning_curves(
    rows: list[dict[str, Any]], trials: list[TrialSummary], metric: str, out: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for t in trials:
        points = [
            (r.get("step") or r["training_iteration"], r.get(metric))
            for r in rows
            if r["trial_id"] == t.trial_id and is_finite_number(r.get(metric))
        ]
        if not points:
            continue
        xs, ys = zip(*sorted(points), strict=True)
        style = "--" if t.stopped_early else "-"
        (line,) = ax.plot(xs, ys, style, linewidth=1.2, alpha=0.85, label=t.trial_id)
        if t.stopped_early:
            ax.plot(xs[-1], ys[-1], "x", color=line.get_color(), markersize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (dashed, x: stopped early)")
    if len(trials) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "learning_curves.png")


def parallel_coordinates(
    trials: list[TrialSummary], space: dict[str, Param], metric: str, out: Path
) -> Path | None:
    scored = [t for t in trials if t.best is not None]
    keys = [k for k in space if sum(k in t.params for t in scored) >= 2]
    if not scored or not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * (len(keys) + 1)), 4.5))
    columns = []
    for key in keys:
        present = [t.params.get(key) for t in scored]
        known = [v for v in present if v is not None]
        pos, labels, log = _axis(known, space.get(key))
        values = [math.log10(p) if log else p for p in pos]
        low, high = min(values), max(values)
        it = iter(values)
        columns.append(
            (
                [None if v is None else (next(it) - low) / ((high - low) or 1) for v in present],
                labels,
                log,
            )
        )
    scores = [t.score for t in scored]
    low, high = min(scores), max(scores)
    cmap = plt.get_cmap("viridis")
    for i, t in enumerate(scored):
        ys = [col[0][i] for col in columns] + [(t.score - low) / ((high - low) or 1)]
        xs = list(range(len(ys)))
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        shade = (t.score - low) / ((high - low) or 1)
        ax.plot(*zip(*pts, strict=True), color=cmap(shade), alpha=0.8)
    ax.set_xticks(range(len(keys) + 1))
    ax.set_xticklabels(
        [k + (" (log)" if col[2] else "") for k, col in zip(keys, columns, strict=True)] + [metric],
        rotation=20,
        fontsize=8,
    )
    ax.set_yticks([])
    ax.set_title(f"Parallel coordinates (colour: best {metric})")
    return _save(fig, out / "parallel_coordinates.png")


def metric_vs_params(
    trials: list[TrialSummary], space: dict[str, Param], metric: str, out: Path
) -> list[Path]:
    paths = []
    scored = [t for t in trials if t.best is not None]
    for key in space:
        pairs = [(t.params[key], t.score) for t in scored if key in t.params]
        if len(pairs) < 2:
            continue
        pos, labels, log = _axis([p for p, _ in pairs], space.get(key))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter(pos, [b for _, b in pairs], alpha=0.8)
        if log:
            ax.set_xscale("log")
        if labels:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {metric}")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)
        paths.append(_save(fig, out / f"metric_vs_{safe}.png"))
    return paths


def importance(
    trials: list[TrialSummary], space: dict[str, Param], mode: str, out: Path
) -> tuple[Path | None, dict[str, float]]:
    """fANOVA importance of each parameter for the best target metric (Optuna's evaluator)."""
    import optuna

    scored = [t for t in trials if t.best is not None]
    keys = [k for k in space if all(k in t.params for t in scored)]
    if len(scored) < 3 or not keys:
        return None, {}
    distributions = {}
    for key in keys:
        values = [t.params[key] for t in scored]
        param = space[key]
        if not _numeric(values) or param.is_discrete:
            distributions[key] = optuna.distributions.CategoricalDistribution(
                sorted(set(values), key=str)
            )
        elif all(isinstance(v, int) for v in values):
            distributions[key] = optuna.distributions.IntDistribution(min(values), max(values))
        else:
            log = param.kind in ("loguniform", "lognormal") and min(values) > 0
            lo, hi = float(min(values)), float(max(values))
            distributions[key] = optuna.distributions.FloatDistribution(
                lo, max(hi, lo * 1.0001 + 1e-12), log=log
            )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for t in scored:
        study.add_trial(
            optuna.trial.create_trial(
                params={k: t.params[k] for k in keys}, distributions=distributions, value=t.score
            )
        )
    # fANOVA divides by the metric's variance: when every trial scored the same, no parameter
    # mattered, and the plot says so instead of failing the report.
    flat = len({t.score for t in scored}) == 1
    scores = (
        dict.fromkeys(keys, 0.0)
        if flat
        else optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    )
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(scores) + 1.5))
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names])
    ax.set_xlabel("fANOVA importance")
    ax.set_xlim(0, 1)
    title = f"Hyperparameter importance ({len(scored)} trials)"
    ax.set_title(title + ("\nevery trial scored the same: none" if flat else ""))
    return _save(fig, out / "importance.png"), dict(scores)


def asha_rungs(
    rows: list[dict[str, Any]],
    trials: list[TrialSummary],
    scheduler: SchedulerSpec,
    metric: str,
    out: Path,
) -> Path | None:
    """The target metric of every trial at each rung, and which trials went past it."""
    if scheduler.name not in ("asha", "hyperband"):
        return None
    eta, grace = scheduler.reduction_factor, scheduler.grace_period
    horizon = max((t.reports for t in trials), default=0)
    rungs = []
    rung = float(grace)
    while rung <= horizon:
        rungs.append(round(rung))
        rung *= eta
    if not rungs:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(rungs):
        for t in trials:
            at = [
                float(x[metric])
                for x in rows
                if x["trial_id"] == t.trial_id
                and x["training_iteration"] == r
                and is_finite_number(x.get(metric))
            ]
            if not at:
                continue
            went_on = t.reports > r
            ax.scatter(
                i,
                at[0],
                marker="o" if went_on else "x",
                color="tab:green" if went_on else "tab:red",
            )
    ax.set_xticks(range(len(rungs)))
    ax.set_xticklabels([f"rung {r}" for r in rungs])
    ax.set_ylabel(metric)
    ax.set_title("ASHA rungs (o: promoted, x: stopped there)")
    return _save(fig, out / "asha_rungs.png")


def pbt_lineage(rows: list[dict[str, Any]], metric: str, out: Path) -> Path | None:
    """Every trial's generations as curves of the target metric, and an arrow for each exploit
    from the donor's checkpoint to where the copy went on."""
    found = exploits(rows)
    if not found:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours: dict[str, Any] = {}
    curves: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in rows:
        if is_finite_number(r.get(metric)) and r.get("step") is not None:
            curves.setdefault((r["trial_id"], generation_of(r)), []).append((r["step"], r[metric]))
    for (trial_id, generation), points in sorted(curves.items()):
        xs, ys = zip(*sorted(points), strict=True)
        (line,) = ax.plot(
            xs, ys, "-o", markersize=3, color=colours.get(trial_id), label=None if generation
            else trial_id,
        )  # fmt: skip
        colours.setdefault(trial_id, line.get_color())
    for e in found:
        donor = {x: y for (t, _), ps in curves.items() if t == e.parent for x, y in ps}
        mine = [p for (t, _), ps in curves.items() if t == e.trial_id for p in ps if p[0] > e.step]
        if e.step in donor and mine:
            to = min(mine)
            ax.annotate(
                "",
                xy=to,
                xytext=(e.step, donor[e.step]),
                arrowprops={"arrowstyle": "->", "linestyle": "--", "color": colours[e.trial_id]},
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.set_title(f"PBT lineage: {len(found)} exploits (dashed arrow: donor -> copy)")
    if len(colours) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "pbt_lineage.png")


def _exploit_table(rows: list[dict[str, Any]]) -> str:
    found = exploits(rows)
    if not found:
        return ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in [
                e.trial_id,
                e.parent,
                e.step,
                ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in e.changes.items())
                or "none",
            ]
        )
        + "</tr>"
        for e in found
    )
    head = "<tr><th>trial</th><th>copied</th><th>at step</th><th>changes</th></tr>"
    return f"<h2>Exploits (PBT)</h2><table>{head}{body}</table>"


def _confirmation_table(confirmation: dict[str, Any] | None) -> str:
    """The confirmation stage: each candidate's search value against its mean over seeds."""
    if not confirmation:
        return ""
    metric = html.escape(confirmation["metric"])
    head = (
        f"<tr><th>search trial</th><th>parameters</th><th>{metric} in the search</th>"
        f"<th>mean over seeds</th><th>std</th><th>per seed</th></tr>"
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in [
                c["search_trial"],
                ", ".join(f"{k}={_short(v)}" for k, v in sorted(c["params"].items())),
                _short(c["search_value"]),
                "-" if c["mean"] is None else _short(c["mean"]),
                "-" if c["std"] is None else _short(c["std"]),
                ", ".join(
                    f"{r['seed']}: {'-' if r['value'] is None else _short(r['value'])}"
                    for r in c["runs"]
                ),
            ]
        )
        + "</tr>"
        for c in confirmation["candidates"]
    )
    return (
        f"<h2>Confirmation over seeds {html.escape(str(confirmation['seeds']))}</h2>"
        f"<p>The winner (first row) has the best mean; promotion takes its best seed.</p>"
        f"<table>{head}{body}</table>"
    )


def _trivial_paragraph(record: dict[str, Any] | None, objective: Objective, best: Any) -> str:
    """The trivial predictor's validation and test figures, and the best trial against it."""
    if record is None:
        return ""
    versus = compare(record, objective, best)
    figures = ", ".join(
        f"{k} {v:.4g}"
        for k, v in {**record.get("validation", {}), **record.get("test", {})}.items()
        if isinstance(v, (int, float))
    )
    verdict = f"<p><b>{html.escape(versus.message())}</b></p>" if versus else ""
    return (
        f"<h2>Trivial predictor</h2><p>{html.escape(str(record.get('predictor', '')))}: "
        f"{html.escape(figures)}.</p>{verdict}"
    )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    name: str,
    search: SearchSpec,
    scheduler: SchedulerSpec,
    rows: list[dict[str, Any]],
    out: Path,
    confirmation: dict[str, Any] | None = None,
    trivial: dict[str, Any] | None = None,
) -> Path:
    """Renders the report of sweep `name` from `rows` (its results) into `out`, with the
    confirmation stage's `summary` when there is one, and the best trial against the sweep's
    trivial predictor (`sweeps.store.trivial`) when it has one.

    Returns:
        The path of `report.html`.
    """
    out.mkdir(parents=True, exist_ok=True)
    objective = Objective(search.metric, search.mode)
    metric, mode = objective.metric, objective.mode
    trials = summarize(rows, objective)
    space = search.space
    plots = [learning_curves(rows, trials, metric, out)]
    plots.append(parallel_coordinates(trials, space, metric, out))  # type: ignore[arg-type]
    plots += metric_vs_params(trials, space, metric, out)
    importance_plot, scores = importance(trials, space, mode, out)
    plots += [importance_plot, asha_rungs(rows, trials, scheduler, metric, out)]  # type: ignore[list-item]
    plots.append(pbt_lineage(rows, metric, out))  # type: ignore[arg-type]

    ranked = objective.ranked((t for t in trials if t.best is not None), lambda t: t.score)
    keys = sorted({k for t in trials for k in t.params})
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["trial", f"best {metric}", "status", "reports", *keys]
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in [
                t.trial_id,
                f"{t.best:.4g}",
                t.status + (" (stopped early)" if t.stopped_early else ""),
                t.reports,
                *[t.params.get(k, "") for k in keys],
            ]
        )
        + "</tr>"
        for t in ranked[:10]
    )
    figures = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.name}</figcaption></figure>'
        for p in plots
        if p is not None
    )
    importance_line = (
        ", ".join(f"{k} {v:.2f}" for k, v in scores.items()) or "needs 3+ scored trials"
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}img{max-width:100%}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
    )
    title = html.escape(name)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Sweep {title}</title>
<style>{style}</style></head><body>
<h1>Sweep {title}</h1>
<p>{len(trials)} trials, method {search.method}, scheduler {scheduler.name},
target {metric} ({mode}). Importance: {html.escape(importance_line)}.</p>
<h2>Top trials</h2><table><tr>{head}</tr>{body}</table>
{_trivial_paragraph(trivial, objective, ranked[0].best if ranked else None)}
{_confirmation_table(confirmation)}
{_exploit_table(rows)}
<h2>Plots</h2>{figures}</body></html>"""
    report = out / "report.html"
    report.write_text(page)
    return report
