"""The monitoring report for people: a terminal summary, and one self-contained HTML page with SVG plots.

No plotting library: the page is plain HTML and inline SVG (training-vs-live histograms per feature,
prediction shares, quality and traffic by day), so the scheduled monitor function can write it too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from lambda_forest.drift import ALERT, INSUFFICIENT, MISSING, OK, UNAVAILABLE, UNKNOWN, WARN

STATUS_COLOURS = {OK: "#1a7f37", WARN: "#b35900", ALERT: "#c62828", INSUFFICIENT: "#6e7781", UNAVAILABLE: "#6e7781"}
TRAINING_COLOUR, LIVE_COLOUR = "#9aa4b1", "#1f6feb"


# Text.


def render_text(report: dict[str, Any]) -> str:
    window = report["window"]
    captures, labels = report["read"]["captures"], report["read"]["labels"]
    lines = [
        f"{report['model']}: {window['since']} .. {window['until']}  status {report['status'].upper()}",
        f"read {captures['files']} capture file(s): {captures['records']:,} request(s); "
        f"{labels['files']} label file(s): {labels['records']:,} label(s)",
    ]
    skipped = {
        "malformed line(s)": captures["malformed"] + labels["malformed"],
        "unreadable file(s)": captures["unreadable_files"] + labels["unreadable_files"],
        "capture(s) of other models": captures["other_models"],
    }
    if any(skipped.values()):
        lines.append("skipped " + ", ".join(f"{count} {what}" for what, count in skipped.items() if count))
    if not report["versions"]:
        lines.append("no captured predictions in this window: nothing to judge (set CAPTURE_SAMPLE_RATE above 0)")
        return "\n".join(lines)
    joined = report["labels"]
    lines.append(f"labels: {joined['joined']:,} joined to captured rows, {joined['unmatched']:,} without a capture")
    for version in report["versions"]:
        lines.append("")
        aliases = f" [{', '.join(version['aliases'])}]" if version["aliases"] else ""
        lines.append(
            f"version {version['version']}{aliases}: {version['requests']:,} request(s), "
            f"{version['captured_rows']:,} row(s) captured of {version['request_rows']:,}   {version['status'].upper()}"
        )
        if "error" in version:
            lines.append(f"  {version['error']}")
            continue
        lines.append(
            f"  {'feature':<28} {'type':<11} {'rows':>6} {'PSI':>7} {'noise':>7} {'W1/std':>7} {'JS':>6} "
            f"{'missing':>15} {'unknown':>8}  status"
        )
        for feature in version["features"]:
            missing = feature["missing_rate"]
            unknown = feature.get("unknown_rate", {}).get("live")
            lines.append(
                f"  {feature['name'][:28]:<28} {feature['type']:<11} {feature['rows']:>6} "
                f"{_number(feature.get('psi')):>7} {_number(feature.get('psi_noise')):>7} "
                f"{_number(feature.get('wasserstein_norm')):>7} {_number(feature.get('js_distance'), 3):>6} "
                f"{_percent(missing.get('training')) + ' -> ' + _percent(missing.get('live')):>15} "
                f"{_percent(unknown):>8}  {feature['status']}"
            )
            if feature.get("unknown_values"):
                shown = ", ".join(
                    f"{_cut(item['value'], 30)!r} x{item['count']}" for item in feature["unknown_values"][:5]
                )
                lines.append(f"  {'':<28} unknown categories: {shown}")
        shifts = [
            f"{feature['name']} {feature['mean_shift_in_std']:+.2f}"
            for feature in version["features"]
            if feature.get("mean_shift_in_std") is not None and feature.get("psi") is None
        ]
        if shifts:
            lines.append(f"  no frozen training bins in this manifest; mean shift in training std: {', '.join(shifts)}")
        predictions = version["predictions"]
        lines.append(
            f"  predictions: {predictions['rows']:,} row(s), PSI {_number(predictions.get('psi'))} "
            f"(noise {_number(predictions.get('psi_noise'))})   {predictions['status']}"
        )
        if "buckets" in predictions and version["task"] == "classification":
            shares = [
                f"{bucket} {_percent(training)} -> {_percent(live)}"
                for bucket, training, live in zip(
                    predictions["buckets"], predictions["training_shares"], predictions["live_shares"], strict=True
                )
            ]
            lines.append("    " + ", ".join(shares))
        lines.append("  quality: " + _quality_text(version["quality"]))
    return "\n".join(lines)


def _quality_text(quality: dict[str, Any]) -> str:
    if not quality.get("rows"):
        return f"no labels for these rows   {quality['status']}"
    holdout = quality.get("holdout", {})
    if "accuracy" in quality:
        parts = [
            f"accuracy {_number(quality['accuracy'], 3)} (hold-out {_number(holdout.get('accuracy'), 3)})",
            f"macro F1 {_number(quality['f1_macro'], 3)}",
        ]
        if quality.get("log_loss") is not None:
            parts.append(f"log loss {_number(quality['log_loss'], 3)} over {quality['log_loss_rows']} row(s)")
    else:
        parts = [
            f"RMSE {_number(quality['rmse'], 4)} (hold-out {_number(holdout.get('rmse'), 4)})",
            f"MAE {_number(quality['mae'], 4)}",
        ]
    return f"{quality['rows']:,} labelled row(s): " + ", ".join(parts) + f"   {quality['status']}"


# Beyond this a number is shown in two significant digits (1.5e+32), so it keeps to its column.
FIXED_POINT_UP_TO = 10_000


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if abs(value) >= FIXED_POINT_UP_TO else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


# HTML.


def render_html(report: dict[str, Any]) -> str:
    window = report["window"]
    body = [
        f"<h1>{_e(report['model'])} {_badge(report['status'])}</h1>",
        f"<p class=meta>{_e(window['since'])} to {_e(window['until'])} &middot; store {_e(report['store'])} "
        f"&middot; generated {_e(report['generated_at'])}</p>",
        _read_summary(report),
    ]
    if not report["versions"]:
        body.append("<p>No captured predictions in this window: nothing to judge. Set CAPTURE_SAMPLE_RATE above 0.</p>")
    for version in report["versions"]:
        body.append(_version_section(version))
    body.append(_thresholds(report["thresholds"]))
    return PAGE.format(title=_e(f"{report['model']} monitoring report"), body="\n".join(body))


def _read_summary(report: dict[str, Any]) -> str:
    captures, labels, joined = report["read"]["captures"], report["read"]["labels"], report["labels"]
    rows = [
        ("capture files", captures["files"], "label files", labels["files"]),
        ("captured requests", captures["records"], "labels", labels["records"]),
        ("malformed lines skipped", captures["malformed"] + labels["malformed"], "labels joined", joined["joined"]),
        (
            "unreadable files",
            captures["unreadable_files"] + labels["unreadable_files"],
            "labels without a capture",
            joined["unmatched"],
        ),
    ]
    cells = "".join(f"<tr><th>{a}</th><td>{b:,}</td><th>{c}</th><td>{d:,}</td></tr>" for a, b, c, d in rows)
    return f"<table class=summary>{cells}</table>"


def _version_section(version: dict[str, Any]) -> str:
    aliases = "".join(f"<span class=alias>{_e(alias)}</span>" for alias in version["aliases"])
    parts = [
        f"<section><h2>version {_e(version['version'])} {aliases} {_badge(version['status'])}</h2>",
        f"<p class=meta>{version['requests']:,} requests, {version['captured_rows']:,} rows captured of "
        f"{version['request_rows']:,}, {_e(version['first_seen'])} to {_e(version['last_seen'])}</p>",
    ]
    if "error" in version:
        return "".join(parts) + f"<p>{_e(version['error'])}</p></section>"
    parts.append(_feature_table(version["features"]))
    parts.append("<div class=charts>")
    parts.append(_prediction_chart(version["predictions"], version["task"]))
    parts.append(_quality_chart(version["quality"], version["task"]))
    parts.append(_traffic_chart(version["traffic_over_time"]))
    parts.extend(_feature_chart(feature) for feature in version["features"])
    parts.append("</div></section>")
    return "\n".join(parts)


def _feature_table(features: list[dict[str, Any]]) -> str:
    header = (
        "<tr><th>feature</th><th>type</th><th>rows</th><th>PSI</th><th>noise floor</th><th>W1/std</th>"
        "<th>JS</th><th>missing (training &rarr; live)</th><th>unknown</th><th>status</th></tr>"
    )
    rows = []
    for feature in features:
        missing = feature["missing_rate"]
        unknown = feature.get("unknown_values") or []
        unknown_text = ", ".join(f"{_cut(item['value'], 30)} \u00d7{item['count']}" for item in unknown[:3])
        rows.append(
            f"<tr><td>{_e(feature['name'])}</td><td>{feature['type']}</td><td>{feature['rows']:,}</td>"
            f"<td>{_number(feature.get('psi'))}</td><td>{_number(feature.get('psi_noise'))}</td>"
            f"<td>{_number(feature.get('wasserstein_norm'))}</td><td>{_number(feature.get('js_distance'))}</td>"
            f"<td>{_percent(missing.get('training'))} &rarr; {_percent(missing.get('live'))}</td>"
            f"<td>{_percent(feature.get('unknown_rate', {}).get('live'))} {_e(unknown_text) if unknown else ''}</td>"
            f"<td>{_badge(feature['status'])}</td></tr>"
        )
    return f"<table class=features>{header}{''.join(rows)}</table>"


def _feature_chart(feature: dict[str, Any]) -> str:
    title = f"{feature['name']}: PSI {_number(feature.get('psi'))}"
    if "buckets" not in feature:
        return _figure(title, f"<p class=note>{_e(feature.get('note', 'no training baseline'))}</p>", feature["status"])
    edges = feature.get("edges")
    ends = (f"{edges[0]:.4g}", f"{edges[-1]:.4g}") if edges else None
    chart = _paired_bars(feature["buckets"], feature["training_shares"], feature["live_shares"], ends)
    return _figure(title, chart, feature["status"])


def _prediction_chart(predictions: dict[str, Any], task: str) -> str:
    title = f"predictions: PSI {_number(predictions.get('psi'))}"
    if "buckets" not in predictions:
        live = predictions.get("live_shares")
        if isinstance(live, dict):
            content = _paired_bars(list(live), [0.0] * len(live), list(live.values()))
        else:
            content = f"<p class=note>{_e(predictions.get('note', ''))}</p>"
        return _figure(title, content, predictions["status"])
    return _figure(
        title,
        _paired_bars(predictions["buckets"], predictions["training_shares"], predictions["live_shares"]),
        predictions["status"],
    )


def _quality_chart(quality: dict[str, Any], task: str) -> str:
    days = quality.get("over_time") or []
    metric = "accuracy" if task == "classification" else "rmse"
    if not days:
        return _figure("live quality", "<p class=note>no labels joined to these rows yet</p>", quality["status"])
    reference = (quality.get("holdout") or {}).get(metric)
    title = f"live {metric}: {_number(quality.get(metric))} over {quality['rows']:,} labels"
    chart = _line_chart([day["period"] for day in days], [day[metric] for day in days], reference, metric)
    return _figure(title, chart, quality["status"])


def _figure(title: str, content: str, status: str) -> str:
    return f"<figure><figcaption>{_e(title)} {_badge(status)}</figcaption>{content}</figure>"


WIDTH, HEIGHT, PAD = 360, 150, 24


def _paired_bars(
    buckets: Sequence[str], training: Sequence[float], live: Sequence[float], ends: tuple[str, str] | None = None
) -> str:
    series = [("training", training, TRAINING_COLOUR), ("live", live, LIVE_COLOUR)]
    return _bars(buckets, series, percent=True, ends=ends)


def _bars(
    buckets: Sequence[str],
    series: list[tuple[str, Sequence[float], str]],
    percent: bool,
    ends: tuple[str, str] | None = None,
) -> str:
    """Grouped bars, one group per bucket and one bar per series; hover shows each value.

    Up to 8 buckets are named under their bars; beyond, `ends` (or the first and last bucket) name the ends of
    the bins, and the missing and unknown buckets stand a slot apart, named under their bars.
    """
    top = max([value for _, values, _ in series for value in values] + [1e-9])
    many = len(buckets) > 8
    named = [bucket in (MISSING, UNKNOWN) for bucket in buckets] if many else [True] * len(buckets)
    gap = 1 if many and any(named) else 0
    slot = (WIDTH - 2 * PAD) / max(len(buckets) + gap, 1)
    bar = 0.8 * slot / len(series)
    bins_end = PAD + (len(buckets) - sum(named) if many else len(buckets)) * slot
    parts = []
    for index, bucket in enumerate(buckets):
        x = PAD + (index + (gap if many and named[index] else 0)) * slot + 0.1 * slot
        for number, (name, values, colour) in enumerate(series):
            value = values[index]
            height = (HEIGHT - 2 * PAD) * value / top
            shown = f"{value:.1%}" if percent else f"{value:,.0f}"
            parts.append(
                f'<rect x="{x + number * bar:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{_e(bucket)}: {name} {shown}</title></rect>'
            )
        if named[index]:
            parts.append(
                f'<text x="{x + 0.4 * slot:.1f}" y="{HEIGHT - PAD + 12}" text-anchor="middle">{_e(_cut(bucket))}</text>'
            )
    for number, (name, _, colour) in enumerate(series):
        left = WIDTH - PAD - 70 * (len(series) - number)
        parts.append(f'<rect x="{left}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 14}" y="13">{_e(name)}</text>')
    if many:
        first, last = ends or (buckets[0], buckets[-1])
        parts.append(f'<text x="{PAD}" y="{HEIGHT - PAD + 12}">{_e(first)}</text>')
        parts.append(f'<text x="{bins_end:.1f}" y="{HEIGHT - PAD + 12}" text-anchor="end">{_e(last)}</text>')
    parts.append(f'<text x="2" y="{PAD}">{f"{top:.0%}" if percent else f"{top:,.0f}"}</text>')
    parts.append(f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#57606a"/>')
    return _svg("".join(parts))


def _traffic_chart(days: list[dict[str, Any]]) -> str:
    if not days:
        return ""
    labels = [_period_label(day["period"]) for day in days]
    chart = _bars(labels, [("rows captured", [day["rows"] for day in days], LIVE_COLOUR)], percent=False)
    return f"<figure><figcaption>captured rows over time</figcaption>{chart}</figure>"


def _period_label(period: str) -> str:
    """2026-12-01T10 -> 12-01 10h; 2026-12-01 -> 12-01."""
    day, _, hour = period[5:].partition("T")
    return f"{day} {hour}h" if hour else day


def _line_chart(labels: Sequence[str], values: Sequence[float | None], reference: float | None, name: str) -> str:
    points = [(index, value) for index, value in enumerate(values) if value is not None and math.isfinite(value)]
    everything = [value for _, value in points] + ([reference] if reference is not None else [])
    low, high = min(everything, default=0.0), max(everything, default=1.0)
    low, high = (
        (low - 0.05, high + 0.05) if high - low < 1e-9 else (low - (high - low) * 0.1, high + (high - low) * 0.1)
    )
    step = (WIDTH - 2 * PAD) / max(len(labels) - 1, 1)
    shown = [_period_label(label) for label in labels]

    def x(index: int) -> float:
        return WIDTH / 2 if len(labels) == 1 else PAD + index * step

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / (high - low)

    parts = []
    if reference is not None:
        parts.append(
            f'<line x1="{PAD}" y1="{y(reference):.1f}" x2="{WIDTH - PAD}" y2="{y(reference):.1f}" '
            f'stroke="{TRAINING_COLOUR}" stroke-dasharray="4 3"><title>hold-out {name} {reference:.3f}</title></line>'
            f'<text x="{WIDTH - PAD}" y="{y(reference) - 4:.1f}" text-anchor="end">hold-out {reference:.3g}</text>'
        )
    path = " ".join(f"{x(index):.1f},{y(value):.1f}" for index, value in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{LIVE_COLOUR}" stroke-width="2"/>')
    parts.extend(
        f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="3" fill="{LIVE_COLOUR}">'
        f"<title>{_e(labels[index])}: {value:.4g}</title></circle>"
        for index, value in points
    )
    if len(labels) == 1:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{_e(shown[0])}</text>')
    else:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 6}">{_e(shown[0])}</text>')
        parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" text-anchor="end">{_e(shown[-1])}</text>')
    parts.append(f'<text x="2" y="14">{high:.3g}</text><text x="2" y="{HEIGHT - PAD}">{low:.3g}</text>')
    return _svg("".join(parts))


def _svg(content: str) -> str:
    return f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">{content}</svg>'


def _thresholds(thresholds: dict[str, Any]) -> str:
    return (
        "<footer><h3>How to read this</h3><p>PSI compares live and training shares bucket by bucket (frozen "
        f"training bins, or categories, plus missing and unknown). It warns at {thresholds['psi_warn']} and alerts "
        f"at {thresholds['psi_alert']}, and only above its noise floor: the PSI that two samples of one distribution "
        f"of these sizes exceed by chance (false-alarm rate {thresholds['false_alarm_rate']} per report). Fewer than "
        f"{thresholds['min_rows']} rows are never judged. Jensen-Shannon distance of categories warns at "
        f"{thresholds['js_warn']}. W1/std is the normalised Wasserstein distance (shown, not judged). Live accuracy "
        f"warns {thresholds['accuracy_drop_warn']:.0%} and alerts {thresholds['accuracy_drop_alert']:.0%} below the "
        f"hold-out's, RMSE at {thresholds['rmse_ratio_warn']}x and {thresholds['rmse_ratio_alert']}x, when the labels "
        "make the difference significant.</p></footer>"
    )


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#6e7781")
    return f'<span class=badge style="background:{colour}">{_e(status)}</span>'


def _cut(text: str, limit: int = 10) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1f2328; padding: 0 1em; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }} h2 {{ font-size: 1.2em; margin-top: 2em; }}
.meta {{ color: #57606a; margin-top: 0; }} .note {{ color: #57606a; font-style: italic; }}
.badge {{ color: #fff; border-radius: 1em; padding: 0.1em 0.6em; font-size: 0.75em; vertical-align: middle; }}
.alias {{ background: #ddf4ff; border-radius: 0.3em; padding: 0 0.4em; margin-right: 0.3em; font-size: 0.8em; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 0.25em 0.7em; text-align: left; }}
.features tr:nth-child(even) {{ background: #f6f8fa; }}
.features td:nth-child(n+3) {{ font-variant-numeric: tabular-nums; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1.5em; }} figure {{ margin: 0; }}
figcaption {{ font-weight: 600; margin-bottom: 0.3em; }} svg text {{ font-size: 10px; fill: #57606a; }}
footer {{ margin-top: 3em; color: #57606a; border-top: 1px solid #d0d7de; }}
</style></head><body>
{body}
</body></html>
"""
