"""Interoperability: export a version as COCO, YOLO-seg or mask rasters, import COCO, compare versions.

    competition.py  the plain competition layout (with --split or --force)
    coco.py    COCO instances JSON: pixel conventions, polygon / RLE conversions, the export
    coco_import.py  import of COCO files (CVAT, labelme2coco, xaug's own export)
    yolo.py    Ultralytics' segment layout (images/, labels/*.txt, data.yaml)
    masks.py   one bit-packed (29, H, W) .npz per image
    export.py  the export driver every format shares (destination checks, atomic publish, progress)
    diff.py    items added / removed / changed / unchanged between two versions, and their lineage

Nothing here imports torch; pycocotools is used only by the tests.
"""
