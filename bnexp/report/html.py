"""report.html: the whole sweep report in one self-contained file, to send or show.

The same text and tables as summary.md (converted here: the report writes only a small
Markdown subset -- headings, paragraphs, pipe tables, lists, images, `code`, **bold**),
every figure inline as a base64 PNG, and what a reader elsewhere needs to judge the
numbers: the sweep's configuration (swept and fixed overrides, the settings every job
shared) and the versions and machine. No script, no external file, no network: it reads
the same offline in any browser.

Text in a report comes from job folders, which are data from wherever they came from
(another user's sweep, a copied folder): an error message or a label can hold anything.
So it is HTML-escaped, and an image is embedded only by the bare name of a PNG this
report wrote (`figures`), read as a regular file, never through a link; any other
`![...](...)` stays text. A figure path of `/etc/hostname` or `/dev/zero` is printed, not
read.
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import os
import platform
import re
import stat
import sys
from pathlib import Path

from bnexp.files import write_text_atomic
from bnexp.report.jobs import MAX_YAML, Job, read_job_file

HTML_FILE = "report.html"
PACKAGES = ("bnexp", "mxnet", "mxnet-cu112", "hydra-core", "omegaconf", "numpy", "scipy",
            "matplotlib", "hydra-optuna-sweeper", "optuna")

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.missing { color: #a00; }
"""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE = 64 << 20  # bytes; the report's figures are well below 1 MB
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


def inline(text: str, folder: Path, figures: frozenset[str]) -> str:
    """One line of the Markdown subset as HTML; `![alt](name.png)` becomes the PNG itself
    if `name.png` is one of `figures` (module docstring), else it stays text."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        pieces = IMAGE.split(part)  # text, alt, name, text, alt, name, ..., text
        for i in range(0, len(pieces), 3):
            escaped = html.escape(pieces[i], quote=False)
            out.append(re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped))
            if i + 2 < len(pieces):
                alt, name = pieces[i + 1], pieces[i + 2]
                out.append(image(alt, folder, name) if name in figures
                           else html.escape(f"![{alt}]({name})", quote=False))
    return "".join(out)


def image(alt: str, folder: Path, name: str) -> str:
    """The figure `name` of `folder` inline; a line saying so if it is missing or not a PNG."""
    try:
        data = read_figure(folder / name)
    except (OSError, ValueError) as err:
        return f'<p class="missing">figure {html.escape(name)} is missing ({html.escape(str(err))})</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def read_figure(path: Path) -> bytes:
    """A PNG the report wrote: a regular file, not a link, at most MAX_FIGURE bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_FIGURE + 1)
    if len(data) > MAX_FIGURE or not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG the report wrote")
    return data


def table_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, folder: Path, figures: frozenset[str] = frozenset()) -> str:
    """The report's Markdown (summary.md) as HTML body elements."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip(), folder, figures)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(table_row(lines[i]))
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c, folder, figures)}</th>" for c in rows[0])
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{inline(c, folder, figures)}</td>" for c in r) + "</tr>"
                           for r in body) + "</tbody></table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:], folder, figures)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                paragraph.append(inline(lines[i], folder, figures))
                i += 1
            out.append("<p>" + "\n".join(paragraph) + "</p>")
    return "\n".join(out)


def key_value_table(rows: list[tuple[str, str]]) -> str:
    return ("<table><tbody>" + "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}"
                                       "</code></td></tr>" for k, v in rows) + "</tbody></table>")


def configuration(jobs: list[Job], swept: list[str], sweep_dir: Path) -> str:
    """The settings every job shared (from their records) and what the sweep varied."""
    configs = [j.config for j in jobs if j.config]
    shared = []
    if configs:
        for key, value in configs[0].items():
            if all(c.get(key) == value for c in configs[1:]):
                shared.append((key, str(value)))
    varied = sorted({k for c in configs for k in c if any(c.get(k) != d.get(k) for d in configs)})
    parts = ["<h2>Configuration</h2>"]
    try:
        sweep_text = read_job_file(sweep_dir / "sweep.yaml", MAX_YAML)
        parts.append(f"<p>The sweep (<code>sweep.yaml</code>):</p><pre>{html.escape(sweep_text)}</pre>")
    except (OSError, ValueError):  # none, or not a plain text file
        pass
    parts.append(f"<p>Swept (grouping the jobs): {', '.join(f'<code>{html.escape(k)}</code>' for k in swept) or 'nothing'}; "
                 f"differing between jobs: {', '.join(f'<code>{html.escape(k)}</code>' for k in varied) or 'nothing'}.</p>")
    if shared:
        parts += ["<details><summary>Settings every job shared "
                  f"({len(shared)})</summary>", key_value_table(shared), "</details>"]
    return "\n".join(parts)


def environment(jobs: list[Job]) -> str:
    """Versions and machine of this report's build, and the speed settings the jobs ran with."""
    from bnexp.tuning.machine import this_machine

    versions = []
    for package in PACKAGES:
        try:
            versions.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            continue
    machine = this_machine()
    rows = [("python", sys.version.split()[0]), *versions,
            ("platform", platform.platform()), ("cpu", str(machine.get("cpu"))),
            ("cores available", str(machine.get("cores")))]
    threads = sorted({str(j.record.perf.get("threads")) for j in jobs if j.record and j.record.perf})
    ms = [j.record.perf.get("ms_per_step") for j in jobs if j.record and j.record.perf.get("ms_per_step")]
    if threads:
        rows.append(("threads the jobs used", ", ".join(threads)))
    if ms:
        rows.append(("measured ms/step (speed probe)", f"{min(ms):.1f}..{max(ms):.1f}"))
    return ("<h2>Versions and machine</h2><p>Of the environment that built this report "
            "(where the sweep ran, unless the report was rebuilt elsewhere):</p>" + key_value_table(rows))


def write_html(sweep_dir: Path, markdown_text: str, jobs: list[Job], swept: list[str],
               figures: frozenset[str]) -> Path:
    """report.html beside summary.md, with the `figures` this report wrote; returns its path."""
    title = f"bnexp sweep report: {sweep_dir.name}"
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            markdown_to_html(markdown_text, sweep_dir, figures),
            configuration(jobs, swept, sweep_dir), environment(jobs),
            "<p><small>Also in this folder: summary.csv (one row per configuration), "
            "curves.csv (every curve, long format) and the figures as PNG files.</small></p>",
            "</body></html>"]
    path = sweep_dir / HTML_FILE
    write_text_atomic(path, "\n".join(page))
    return path
