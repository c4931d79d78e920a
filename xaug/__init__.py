"""xaug: offline augmentation and dataset engineering for hand X-ray bone segmentation."""
__version__ = "0.1.0"
