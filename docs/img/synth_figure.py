"""Regenerate docs/img/synth_grid.png (synthetic hands beside their colour overlays, default
appearance) and docs/img/synth_styles.png (the same planned hands in the legacy, realistic and
randomised appearance, with a close-up of the wrist).

    python docs/img/synth_figure.py            # both figures
    python docs/img/synth_figure.py --stats    # the realism table of docs/synthetic.md instead
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xaug.raster import class_masks, overlay
from xaug.synth.generate import render_item
from xaug.synth.plan import appearance_spec, plan_dataset

SIZE, TILE = 1024, 360
WANTED = [("plain (right)", lambda it: not it.edges and not it.rotated and it.side == "R"),
          ("plain (left)", lambda it: not it.edges and not it.rotated and it.side == "L"),
          ("rotated wrist (ulnar)", lambda it: it.rotated and not it.edges and it.pose.wrist_deg > 0),
          ("rotated wrist (radial)", lambda it: it.rotated and it.pose.wrist_deg < 0),
          ("ring", lambda it: "ring" in it.edges),
          ("nail art", lambda it: "nail_art" in it.edges),
          ("wrist implant", lambda it: "implant" in it.edges),
          ("bent fingers", lambda it: "bent_fingers" in it.edges),
          ("hand rotated", lambda it: "hand_rotated" in it.edges),
          ("bright", lambda it: "bright" in it.edges),
          ("dark", lambda it: "dark" in it.edges)]


def tile(img: np.ndarray, text: str) -> np.ndarray:
    t = cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)
    cv2.putText(t, text, (8, TILE - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
    return t


def styles() -> None:
    """Rows: legacy, realistic, randomised; columns: the same planned hands (persons and poses are
    shared by the styles), then a full-resolution crop of the wrist of the first one."""
    picks = [8, 3, 2, 12]  # plain right, plain left, a ring, a rotated wrist
    rows = []
    for mode in ("legacy", "realistic", "randomised"):
        items, _ = plan_dataset(8, 0, seed=0, rotated_train=0.25, appearance=appearance_spec(mode))
        row = []
        for k in picks:
            img, _ = render_item(items[k], SIZE)
            row.append(tile(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), f"{mode} {items[k].person.meta.person} "
                            f"{items[k].side}"))
        img, anns = render_item(items[picks[0]], 2048)
        cap = np.vstack([a.points for a in anns if a.label in ("Capitate", "Lunate")]).mean(axis=0).astype(int)
        x0, y0 = np.clip(cap - 300, 0, 2048 - 600)
        crop = cv2.cvtColor(img[y0:y0 + 600, x0:x0 + 600], cv2.COLOR_BGR2RGB)
        row.append(tile(crop, "wrist at full resolution"))
        rows.append(np.hstack(row))
    grid = np.vstack(rows)
    out = Path(__file__).with_name("synth_styles.png")
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(out, grid.shape)


def stats(persons: int = 12, size: int = 1024) -> str:
    """The realism statistics of each style (2 x `persons` images, train split), as markdown."""
    from xaug.report import realism

    out = {}
    for mode in ("legacy", "realistic", "randomised"):
        items, _ = plan_dataset(persons, 0, seed=11, appearance=appearance_spec(mode))
        rows = []
        for it in items:
            img, anns = render_item(it, size)
            rows.append(realism.image_stats(img[..., 0], anns, size))
        out[f"{mode} (median, p10-p90)"] = realism.summarise(rows)
    return realism.markdown_table(out)


def main() -> None:
    import sys

    if "--stats" in sys.argv:
        print(stats())
        return
    styles()
    items, _ = plan_dataset(60, 60, seed=0, rotated_train=0.12, rotated_test=0.6,
                            appearance=appearance_spec("realistic"))
    tiles = []
    used: set[int] = set()
    for title, pick in WANTED:
        it = next(i for i in items if pick(i) and i.index not in used)
        used.add(it.index)
        img, anns = render_item(it, SIZE)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        ov = overlay(img, class_masks(anns, (SIZE, SIZE)))
        extra = f" {abs(it.pose.wrist_deg):.0f} deg" if it.rotated else ""
        tiles += [tile(rgb, f"{title}{extra}"), tile(ov, f"{it.split} {it.side}")]
    while len(tiles) % 6:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)]
    grid = np.vstack(rows)
    out = Path(__file__).with_name("synth_grid.png")
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(out, grid.shape)


if __name__ == "__main__":
    main()
