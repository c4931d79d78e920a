"""A static HTML page (no server, no scripts, relative image paths) built from small pieces.

>>> page("t", [section("Counts", table(["a", "b"], [[1, 2]]))]).count("<table")
1
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Sequence

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1320px;
 color:#222;padding:0 16px}
h1{font-size:26px;margin-bottom:4px} h2{font-size:20px;border-bottom:1px solid #ddd;padding-bottom:4px;
 margin-top:32px} h3{font-size:16px;margin:18px 0 6px}
.sub{color:#666;margin-top:0} .note{color:#555;font-size:14px;max-width:1100px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.kpi b{display:block;font-size:22px} .kpi span{color:#666;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:4px;background:#fafafa}
figure img{display:block;max-width:100%} figcaption{font-size:12px;color:#333;max-width:100%;
 word-break:break-all;margin-top:3px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #888;vertical-align:middle;margin-right:4px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], raw_columns: Sequence[int] = ()) -> str:
    """An HTML table; numbers right-aligned; columns in `raw_columns` are inserted unescaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = v if i in raw_columns else esc(fmt(v))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kpis(items: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f'<div class="kpi"><b>{esc(fmt(v))}</b><span>{esc(k)}</span></div>' for k, v in items)
    return f'<div class="kpis">{cells}</div>'


def plot(src: str, alt: str) -> str:
    return f'<img class="plot" src="{esc(src)}" alt="{esc(alt)}">'


def figure(src: str, caption: str, width: int = 260, link: str | None = None) -> str:
    img = f'<img src="{esc(src)}" width="{width}" alt="{esc(caption)}" loading="lazy">'
    if link:
        img = f'<a href="{esc(link)}">{img}</a>'
    return f'<figure style="width:{width}px">{img}<figcaption>{esc(caption)}</figcaption></figure>'


def grid(figures: Iterable[str]) -> str:
    return f'<div class="grid">{"".join(figures)}</div>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def swatch(rgb: Sequence[int], label: str) -> str:
    r, g, b = rgb
    return (f'<span style="white-space:nowrap"><span class="swatch" style="background:rgb({r},{g},{b})">'
            f'</span>{esc(label)}</span>')


def section(title: str, *parts: str, anchor: str | None = None) -> str:
    aid = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{aid}><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def sub(title: str) -> str:
    return f"<h3>{esc(title)}</h3>"


def page(title: str, sections: Iterable[str], subtitle: str = "") -> str:
    subtitle_html = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{subtitle_html}{''.join(sections)}</body></html>\n")


def write_page(path: Path, title: str, sections: Iterable[str], subtitle: str = "") -> Path:
    """Write the page atomically (a report writes its index.html last: see `begin_report`)."""
    from xaug.store import atomic_write

    path = Path(path)
    atomic_write(path, page(title, sections, subtitle).encode("utf-8"))
    return path


def begin_report(out: Path, own: Sequence[str]) -> Path:
    """Before a report writes into `out`: remove its index.html and summary files `own` of an
    earlier report, and what a killed write left (`.<name>.<pid>.tmp`). Every file is then written
    whole (atomically) and index.html last, so a killed report has no index.html (nothing that
    looks complete beside a mix of old and new files), and the same command writes it whole."""
    out = Path(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    for name in ("index.html", *own):
        (out / name).unlink(missing_ok=True)
    for folder in (out, out / "img"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    return out
