"""xaug: offline augmentation and dataset engineering for hand X-ray bone segmentation.

The public Python API (loaded on first use, so `import xaug` stays light):

    import xaug
    ds = xaug.open("raw")            # a version by name, name_vN or id prefix
    xaug.datasets()                  # every version in the store
    item = ds["image1661130828152_R"]; item.image(); item.annotations(); item.masks(size=512)

`xaug.torch.SegmentationDataset` wraps a version for PyTorch (the only module that imports torch).
"""
__version__ = "0.1.1"

_API = {"open", "datasets", "Dataset", "Item", "Polygon", "FileRef", "VersionInfo", "resolve_home"}
__all__ = sorted(_API | {"__version__", "CLASSES"})


def __getattr__(name: str):
    if name in _API:
        from xaug import api

        return getattr(api, name)
    if name == "torch":  # `xaug.torch.SegmentationDataset` after a plain `import xaug`
        import importlib

        return importlib.import_module("xaug.torch")
    if name == "CLASSES":
        from xaug.classes import CLASSES

        return CLASSES
    raise AttributeError(f"module 'xaug' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
