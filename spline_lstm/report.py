"""The human report: Markdown with the config, data summary and metrics-vs-baselines
table, plus PNG plots beside it. Rendered to bytes; the caller writes atomically."""
from __future__ import annotations

import io
from typing import Dict, List

import numpy as np


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(timestamps: np.ndarray, raw: np.ndarray, filled: np.ndarray, bounds: np.ndarray,
          history: Dict[str, List[float]], test_times: np.ndarray, actual: np.ndarray,
          forecast: np.ndarray, target: str) -> Dict[str, bytes]:
    """series.png (raw vs spline-filled), loss.png, forecast.png (test, first step)."""
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

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(test_times, actual, lw=0.9, label="actual (observed)")
    ax.plot(test_times, forecast, lw=0.9, label="forecast (step 1)")
    ax.set_title("test split: forecast vs actual, original units")
    ax.legend(fontsize=8)
    out["forecast.png"] = _png(fig)
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.4g}"


def markdown(run_id: str, config: dict, data_summary: dict, metrics: dict, plot_dir: str) -> str:
    m = metrics["metrics"]
    lines = [f"# spline-lstm run `{run_id}`", "",
             "## Configuration", "",
             f"- data: {config['data']['source']} `{config['data'].get('path') or 'synthetic'}` "
             f"(target `{config['data']['target_col']}`)",
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
             f"- splits (train/val/test end rows): {data_summary['split_bounds'][1:]}", "",
             "## Test metrics (original units, observed targets only)", "",
             "| forecaster | mae | rmse | mape % | smape % | mase | r2 | rmse vs model |",
             "|---|---|---|---|---|---|---|---|",
             f"| **model** | {_fmt(m['mae'])} | {_fmt(m['rmse'])} | {_fmt(m['mape'])} | {_fmt(m['smape'])} | "
             f"{_fmt(m['mase'])} | {_fmt(m['r2'])} | |"]
    for name, b in metrics["baselines"].items():
        imp = metrics["improvement_pct"].get(name)
        lines.append(f"| {name} | {_fmt(b['mae'])} | {_fmt(b['rmse'])} | {_fmt(b['mape'])} | "
                     f"{_fmt(b['smape'])} | {_fmt(b['mase'])} | {_fmt(b['r2'])} | "
                     f"model {'better' if (imp or 0) > 0 else 'worse'} by {_fmt(abs(imp or 0))}% |")
    lines += ["", "## Plots", "",
              f"![series]({plot_dir}/series.png)", "",
              f"![loss]({plot_dir}/loss.png)", "",
              f"![forecast]({plot_dir}/forecast.png)", ""]
    return "\n".join(lines)
