"""The human report: Markdown with the config, data summary and metrics-vs-baselines
table, plus PNG plots beside it. Rendered to bytes; the caller writes atomically.
``html`` renders the same report as one self-contained page (images inline) for
MLflow's artifact viewer, which shows Markdown as plain text."""
from __future__ import annotations

import base64
import html as html_mod
import io
import re
from typing import Dict, List

import numpy as np

from spline_lstm.core.documents import skill_scores
from spline_lstm.preprocessing.seasonality import Choices


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(timestamps: np.ndarray, raw: np.ndarray, filled: np.ndarray, bounds: np.ndarray,
          history: Dict[str, List[float]], test_times: np.ndarray, actual: np.ndarray,
          forecast: np.ndarray, target: str) -> Dict[str, bytes]:
    """series.png (raw vs spline-filled), loss.png, forecast.png (test split).

    ``test_times``, ``actual``, ``forecast``: [windows] (one step) or [windows, horizon], the
    times being each step's target time; a multi-step forecast gets one panel per step shown
    (``shown_steps``: every step up to 6, else 1, the quarters and the last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(timestamps, filled, lw=0.8, color="tab:orange", label="spline-filled")
    ax.plot(timestamps, raw, lw=0.8, color="tab:blue", label="observed")
    gaps = np.isnan(raw)
    ax.scatter(timestamps[gaps], filled[gaps], s=6, color="tab:red", label="filled points", zorder=3)
    for b in bounds[1:-1]:
        if b < len(timestamps):
            ax.axvline(timestamps[b], color="grey", ls="--", lw=0.7)
    ax.set_title(f"{target}: observed vs spline-filled (dashed: split bounds)")
    ax.legend(loc="upper left", fontsize=8)
    out["series.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mse (scaled)")
    ax.set_title("training curves")
    ax.legend(fontsize=8)
    out["loss.png"] = _png(fig)

    times, actual, forecast = (np.asarray(a) for a in (test_times, actual, forecast))
    if actual.ndim == 1:
        times, actual, forecast = times[:, None], actual[:, None], forecast[:, None]
    steps = shown_steps(actual.shape[1])
    fig, axes = plt.subplots(len(steps), 1, figsize=(10, 2.4 + 1.6 * len(steps)), sharex=True, squeeze=False)
    for ax, step in zip(axes[:, 0], steps):
        j = step - 1
        ax.plot(times[:, j], actual[:, j], lw=0.9, label="actual (observed)")
        ax.plot(times[:, j], forecast[:, j], lw=0.9, label=f"forecast (step {step} of {actual.shape[1]})")
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_title("test split: forecast vs actual at each step's target time, original units")
    out["forecast.png"] = _png(fig)
    return out


def shown_steps(horizon: int, most: int = 6) -> List[int]:
    """The horizon steps the forecast plot shows (1-based): every one up to ``most``, else the
    first, the quarters and the last."""
    if horizon <= most:
        return list(range(1, horizon + 1))
    return sorted({1, *(max(1, round(horizon * q)) for q in (0.25, 0.5, 0.75)), horizon})


def backtest_plot(bt: dict) -> bytes:
    """backtest.png: rmse by horizon step (mean over folds) and by fold, one line per forecaster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_fold) = plt.subplots(1, 2, figsize=(11, 3.4))
    for name, agg in bt["aggregate"].items():
        style = {"lw": 2.0, "color": "black"} if name == "model" else {"lw": 0.9}
        steps = agg["rmse_by_step"]
        by_step.plot(np.arange(1, len(steps) + 1), steps, marker="o", ms=3, label=name, **style)
        folds = [r["rmse"] for r in bt["per_fold"][name]]
        by_fold.plot(np.arange(1, len(folds) + 1), folds, marker="o", ms=3, label=name, **style)
    by_step.set_xlabel("horizon step")
    by_step.set_ylabel("rmse (mean over folds)")
    by_step.set_title("error by horizon step")
    by_fold.set_xlabel("fold (later origins to the right)")
    by_fold.set_ylabel("rmse")
    by_fold.set_title(f"error by fold (refit={str(bt['refit']).lower()})")
    by_fold.legend(fontsize=7, loc="best")
    from matplotlib.ticker import MaxNLocator

    for ax in (by_step, by_fold):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig)


def series_plot(series: dict) -> bytes:
    """series_mase.png (many series): the model's and naive-last's MASE per series, as
    histograms, and the model's against naive-last's (below the diagonal = model better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = series["per_series"]
    model = np.array([m["model"]["mase"] for m in table.values()], dtype=np.float64)
    naive = np.array([m.get("naive_last", {}).get("mase", np.nan) for m in table.values()], dtype=np.float64)
    fig, (hist, scatter) = plt.subplots(1, 2, figsize=(11, 3.4))
    both = np.isfinite(model) & np.isfinite(naive)
    finite = np.concatenate([model[np.isfinite(model)], naive[np.isfinite(naive)]])
    bins = np.linspace(finite.min(), finite.max(), 30) if finite.size and np.ptp(finite) > 0 else 10
    hist.hist(model[np.isfinite(model)], bins=bins, alpha=0.7, label="model")
    hist.hist(naive[np.isfinite(naive)], bins=bins, alpha=0.5, label="naive_last")
    hist.set_xlabel("MASE per series (test split)")
    hist.set_ylabel("series")
    hist.set_title(f"{len(table)} series")
    hist.legend(fontsize=8)
    scatter.scatter(naive[both], model[both], s=8)
    if both.any():
        top = float(max(model[both].max(), naive[both].max()))
        scatter.plot([0, top], [0, top], color="grey", lw=0.8)
    scatter.set_xlabel("naive_last MASE")
    scatter.set_ylabel("model MASE")
    scatter.set_title(f"model better on {int((model[both] < naive[both]).sum())} of {int(both.sum())}")
    return _png(fig)


def _series_lines(metrics: dict, plot_dir: str) -> List[str]:
    """Many series: the distribution over series and the best and worst series."""
    series = metrics.get("series") or {}
    d = series.get("distribution")
    if not d:
        return []
    q = d["mase_quantiles"]
    lines = ["", f"## Series ({series.get('count')})", "",
             "With many series, mae / rmse / mse / mape / smape / r2 above are pooled over every observed "
             "target of every series (rmse weighs a series by its points); mase is the mean over series, "
             "and the improvement is on it.", "",
             f"- model MASE over series: min {_fmt(q['min'])}, p10 {_fmt(q['p10'])}, p25 {_fmt(q['p25'])}, "
             f"median {_fmt(q['median'])}, p75 {_fmt(q['p75'])}, p90 {_fmt(q['p90'])}, max {_fmt(q['max'])}",
             f"- model beats naive_last on {d['beats_naive_last']} of {d['compared_with_naive_last']} series",
             *([f"- **{len(series['unscored'])} series have no MASE** (no observed test target, or too little "
                f"training history for the MASE scale) and are left out of the mean and the verdict: "
                f"{', '.join(series['unscored'][:10])}{' ...' if len(series['unscored']) > 10 else ''}"]
               if series.get("unscored") else []),
             f"- mase median {_fmt(metrics['metrics'].get('mase_median'))}, smape mean "
             f"{_fmt(metrics['metrics'].get('smape_mean'))} / median {_fmt(metrics['metrics'].get('smape_median'))}",
             "", "| best series | MASE | | worst series | MASE |", "|---|---|---|---|---|"]
    for b, w in zip(d["best"], d["worst"]):
        lines.append(f"| {_cell(b['id'])} | {_fmt(b['mase'])} | | {_cell(w['id'])} | {_fmt(w['mase'])} |")
    lines += ["", f"![series MASE]({plot_dir}/series_mase.png)", "",
              "The plots below show the series whose model MASE is the median."]
    return lines


def _quality_lines(metrics: dict) -> List[str]:
    """The yardsticks' fits and the quality gate's verdict (absent in older runs)."""
    lines = []
    ys = metrics.get("yardsticks") or {}
    if ys:
        lines += ["", "## Classical yardsticks", ""]
        lines += [f"- {name}: {y.get('status')}: {y.get('detail')}" for name, y in ys.items()]
    skill = metrics.get("skill") or {}
    metric, model_score, best_score = skill_scores(skill)
    if skill.get("verdict"):
        imp = skill.get("improvement_pct")
        lines += ["", "## Quality gate", "",
                  f"- verdict: **{skill['verdict']}** (`gate.quality={skill.get('mode')}`, needs > "
                  f"{_fmt(skill.get('min_improvement_pct'))}% {metric} improvement over the best baseline)",
                  f"- on the {skill.get('basis')}: model {metric} {_fmt(model_score)} vs best baseline "
                  f"`{skill.get('best_baseline')}` {_fmt(best_score)} "
                  f"({'n/a' if imp is None else f'{imp:+.2f}%'})"]
    bt = metrics.get("backtest") or {}
    if bt.get("aggregate"):
        lines += ["", f"## Backtest ({bt['folds']} folds of {bt['step']} origins, refit={str(bt['refit']).lower()})",
                  "", "| forecaster | rmse mean | rmse sd | mae mean | mase mean | rmse by fold |",
                  "|---|---|---|---|---|---|"]
        for name, a in bt["aggregate"].items():
            folds = " / ".join(_fmt(r["rmse"]) for r in bt["per_fold"][name])
            label = f"**{name}**" if name == "model" else name
            lines.append(f"| {label} | {_fmt(a['rmse_mean'])} | {_fmt(a['rmse_std'])} | {_fmt(a['mae_mean'])} | "
                         f"{_fmt(a['mase_mean'])} | {folds} |")
    return lines


def _cell(text: str) -> str:
    """Text in a table cell: its pipes escaped (a series id is the user's text)."""
    return str(text).replace("|", "\\|")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.4g}"


def _data_line(data: dict) -> str:
    """What was read: the file(s) and columns, or the synthetic series."""
    files = [data.get("path") or "synthetic", *(data.get("paths") or [])]
    shown = ", ".join(f"`{f}`" for f in files)
    if data.get("target_cols"):
        what = f"wide format, {len(data['target_cols'])} target columns `{', '.join(data['target_cols'])}`"
    elif data.get("id_col"):
        what = f"long format, series id `{data['id_col']}`, target `{data['target_col']}`"
    elif (data.get("n_series") or 1) > 1:
        what = f"{data['n_series']} related series"
    else:
        what = f"target `{data['target_col']}`"
    extra = f", shard {data['shard']}" if data.get("shard") else ""
    static = f", static covariates `{', '.join(data['static_covariates'])}`" if data.get("static_covariates") else ""
    return f"- data: {data['source']} {shown} ({what}{static}{extra})"


def markdown(run_id: str, config: dict, data_summary: dict, metrics: dict, plot_dir: str) -> str:
    m = metrics["metrics"]
    many = bool(metrics.get("series"))
    vs = "mean MASE vs model" if many else "rmse vs model"
    lines = [f"# spline-lstm run `{run_id}`", "",
             "## Configuration", "",
             _data_line(config["data"]),
             f"- preprocess: interpolation `{config['preprocess']['interpolation']}`, smoothing "
             f"`{config['preprocess']['smoothing']}`, scaling `{config['preprocess']['scaling']}`, "
             f"lookback {config['preprocess']['lookback']}, horizon {config['preprocess']['horizon']}",
             f"- model: {config['model']['cell']} x{config['model']['layers']}, {config['model']['units']} "
             f"units, dropout {config['model']['dropout']}",
             f"- training: {config['training']['epochs']} epochs max, batch {config['training']['batch_size']}, "
             f"lr {config['training']['learning_rate']}, patience {config['training']['patience']}, "
             f"seed {config['seed']}", "",
             "## Data", "",
             f"- rows read: {data_summary['rows']}; frequency `{data_summary['freq']}`; grid points "
             f"{data_summary['points']}",
             f"- missing points: {data_summary['missing']} (absent timestamps "
             f"{data_summary['absent_timestamps']}), spline-filled: {data_summary['interpolated']}, "
             f"longest gap: {data_summary['longest_gap']}",
             f"- splits (train/val/test end {'grid points, the same for every series' if many else 'rows'}): "
             f"{data_summary['split_bounds'][1:]}", "",
             *_choice_lines(data_summary.get("choices")),
             "## Test metrics (original units, observed targets only)", "",
             f"| forecaster | mae | rmse | mape % | smape % | mase | r2 | {vs} |",
             "|---|---|---|---|---|---|---|---|",
             f"| **model** | {_fmt(m['mae'])} | {_fmt(m['rmse'])} | {_fmt(m['mape'])} | {_fmt(m['smape'])} | "
             f"{_fmt(m['mase'])} | {_fmt(m['r2'])} | |"]
    for name, b in metrics["baselines"].items():
        imp = metrics["improvement_pct"].get(name)
        lines.append(f"| {name} | {_fmt(b['mae'])} | {_fmt(b['rmse'])} | {_fmt(b['mape'])} | "
                     f"{_fmt(b['smape'])} | {_fmt(b['mase'])} | {_fmt(b['r2'])} | "
                     f"model {'better' if (imp or 0) > 0 else 'worse'} by {_fmt(abs(imp or 0))}% |")
    lines += _quality_lines(metrics)
    lines += _series_lines(metrics, plot_dir)
    lines += ["", "## Plots", "",
              f"![series]({plot_dir}/series.png)", "",
              f"![loss]({plot_dir}/loss.png)", "",
              f"![forecast]({plot_dir}/forecast.png)", ""]
    if (metrics.get("backtest") or {}).get("aggregate"):
        lines += [f"![backtest]({plot_dir}/backtest.png)", ""]
    return "\n".join(lines)



def _choice_lines(choices) -> List[str]:
    """"## Choices": how season, interpolation, difference and lookback were resolved."""
    if not choices:
        return []

    return ["## Choices (from the training and validation splits)", "",
            *[f"- {line}" for line in Choices(**choices).lines()], ""]


_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]*)\)$")


def _inline(text: str) -> str:
    """Escape, then the two inline marks the report uses: `code` and **bold**."""
    text = html_mod.escape(text, quote=False)
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", text)


def markdown_to_html(md: str, images: Dict[str, bytes]) -> str:
    """The report's own Markdown subset (headings, lists, one table, image lines) as HTML;
    an image whose file name is in ``images`` is embedded as a base64 data URI."""
    out: List[str] = []
    block = None  # "ul" or "table" while one is open

    def close():
        nonlocal block
        if block:
            out.append(f"</{block}>")
        block = None

    for line in md.splitlines():
        if line.startswith("|"):
            inner = re.sub(r"(?<!\\)\|$", "", line.strip()[1:])  # the row's outer pipes
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]
            if all(set(c) <= set("-: ") for c in cells):
                continue  # the header separator row
            tag = "th" if block != "table" else "td"
            if block != "table":
                close()
                out.append("<table>")
                block = "table"
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if line.startswith("- "):
            if block != "ul":
                close()
                out.append("<ul>")
                block = "ul"
            out.append(f"<li>{_inline(line[2:])}</li>")
            continue
        close()
        image = _IMAGE.match(line.strip())
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif image:
            alt, src = image.groups()
            png = images.get(src.rsplit("/", 1)[-1])
            src = f"data:image/png;base64,{base64.b64encode(png).decode()}" if png else html_mod.escape(src)
            out.append(f'<p><img alt="{html_mod.escape(alt)}" src="{src}" style="max-width:100%"></p>')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    close()
    return "\n".join(out)


def html(run_id: str, config: dict, data_summary: dict, metrics: dict, pngs: Dict[str, bytes]) -> str:
    """The Markdown report as one HTML page with its plots embedded."""
    body = markdown_to_html(markdown(run_id, config, data_summary, metrics, "plots"), pngs)
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:70em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>spline-lstm run "
            f"{html_mod.escape(run_id)}</title><style>{style}</style></head>\n<body>\n{body}\n</body></html>\n")
