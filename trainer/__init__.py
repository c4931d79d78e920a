"""The bundled U-Net trainer: model, data (through the store API), loop, metrics, inference, submit.

Everything that imports torch lives here; nothing outside `trainer/` imports torch.
"""
