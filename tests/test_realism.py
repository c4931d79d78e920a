"""Realism statistics (xaug.report.realism): exact values on drawn images, summaries, report."""
from __future__ import annotations

import numpy as np
import pytest

from xaug.model import Annotation
from xaug.report import realism


def _square(label, x0, y0, x1, y1):
    return Annotation(label, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))


def _image():
    grey = np.full((100, 100), 3, np.uint8)      # background
    grey[10:100, 20:80] = 60                     # soft tissue
    grey[30:100, 40:60] = 140                    # one bone, touching the bottom edge
    return grey


def test_image_stats_exact():
    anns = [_square("Radius", 40, 30, 59, 99), _square("finger-10", 45, 30, 54, 69),
            _square("Scaphoid", 40, 30, 49, 39)]
    s = realism.image_stats(_image(), anns, 100)
    assert s["background"] == 3 and s["median"] == 60
    assert s["bone_mean"] == 140 and s["tissue_mean"] == 60
    assert s["bone_top"] == pytest.approx(30 / 99) and s["bone_bottom"] == 1.0
    assert s["bone_width"] == pytest.approx(19 / 99)
    assert s["bone_share"] == pytest.approx(20 * 70 / 10000)
    assert s["radius_share"] == pytest.approx(19 * 69 / 10000)
    assert s["scaphoid_ratio"] == pytest.approx(9 / 39)        # longest extents
    assert s["finger10_aspect"] == pytest.approx(9 / 39)        # area / length / length
    assert "capitate_share" not in s


def test_image_stats_on_a_reduced_copy_and_without_labels():
    full = realism.image_stats(_image(), [_square("Radius", 40, 30, 59, 99)], 100)
    small = realism.image_stats(_image()[::2, ::2], [_square("Radius", 40, 30, 59, 99)], (100, 100))
    for k in ("background", "median", "bone_mean", "tissue_mean", "bone_top", "bone_width", "radius_share"):
        assert small[k] == pytest.approx(full[k], rel=0.05), k
    tone = realism.image_stats(np.dstack([_image()] * 3), None, 100)
    assert set(tone) == {"background", "median", "tissue_mean"}
    assert tone["tissue_mean"] > 60  # tissue and bone above the Otsu threshold


def test_summary_and_tables():
    rows = [{"background": float(v), "median": 10.0, "bone_mean": float("nan")} for v in range(11)]
    s = realism.summarise(rows)
    assert s["background"] == {"median": 5.0, "p10": 1.0, "p90": 9.0, "images": 11}
    assert "bone_mean" not in s  # NaN is missing, not a value
    md = realism.markdown_table({"mine": s})
    assert md.splitlines()[0] == "| statistic | real X-rays | mine |"
    assert "| background (5th percentile grey) | ~2 | 5 (1-9) |" in md
    rows = realism.table_rows(s)
    assert rows[0] == ["background (5th percentile grey)", "5 [1-9]", "~2", "~39"]
    assert rows[2][1] == "n/a"


def test_eda_records_carry_the_statistics_and_the_section_shows_them(tiny_dataset):
    from xaug.report.eda import collect

    samples = tiny_dataset.samples()[:4]
    recs = collect(samples, jobs=1, progress=False).records
    assert all(r.realism["bone_mean"] > r.realism["tissue_mean"] > r.realism["background"] for r in recs)
    summary = {}
    html = realism.eda_section(recs, summary)
    assert summary["realism"]["background"]["images"] == 4
    assert "Realism statistics" in html and "real X-rays" in html and "legacy synthetic" in html
    assert realism.eda_section([], {}) == ""
