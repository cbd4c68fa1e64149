"""U-Net Studio's core: datasets, augmentation, models, training and inference, importable without Streamlit."""

from unet.errors import UserError

__all__ = ["UserError"]
