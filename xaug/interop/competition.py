"""The plain competition layout (train/DCM, train/outputs_json, meta_data.xlsx), as `xaug import` reads it.

Images and label files are copied byte for byte (checked against the manifest); importing the
export of a whole version gives the same items again. With `--split`, items keep their layout
paths (the validation fold is part of `train/`) and the sheet keeps the exported persons only.
"""
from __future__ import annotations

from xaug.interop.export import ExportJob, register_format


@register_format("competition")
def write_competition(job: ExportJob) -> dict:
    from xaug.layout import META_SHEET, write_meta

    ds = job.dataset
    files = 0
    persons = set()
    for _, it in job.all_items():
        job.write_bytes(it.path, it.image_bytes())
        files += 1
        if it.label_file is not None:
            job.write_bytes(it.label_file.relpath, it.label_file.read(ds.name))
            files += 1
        persons.add(it.person)
        job.advance()
    sheet = ds.version.sheet
    if sheet is not None:
        if job.all_splits:
            data = ds.version.read_file(sheet)
            job.write_bytes(META_SHEET, data)
        else:
            rows = [m for p, m in sorted(ds.persons.items()) if p in persons]
            path = job.stage / META_SHEET
            write_meta(path, rows)
        files += 1
    return {"images": sum(len(v) for v in job.items.values()), "files": files}
