"""The bundled trainer (ResUNet by default, U-Net, smp): models, data (through the store API), loop, metrics, inference, submit.

Everything that imports torch lives here; nothing outside `trainer/` imports torch.
"""
