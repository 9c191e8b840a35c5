"""What the media checks and the decoders share: the default cap on a video frame's pixels, an
image turned as its EXIF orientation says, and RGB from any image mode (so that neither imports
the other)."""
from __future__ import annotations

DEFAULT_MAX_VIDEO_PIXELS = 7680 * 4320  # 8K UHD frames


def upright(im):
    """The image turned as its EXIF orientation says, and whether width and height swapped."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (2, 3, 4, 5, 6, 7, 8):  # nothing to turn: the image itself, not
            return im, False                           # exif_transpose's copy of it
        turned = ImageOps.exif_transpose(im)
    except Exception:  # unreadable EXIF: keep the pixels as stored
        return im, False
    return turned, orientation in (5, 6, 7, 8)


def to_rgb(im):
    """An RGB image from any mode; 16- and 32-bit grey is scaled to 8 bits (convert() would clip it to white)."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode == "I" or im.mode.startswith("I;16"):
        import numpy as np

        grey = np.asarray(im).astype(np.int64)
        if im.mode.startswith("I;16") or grey.max(initial=0) > 255:
            grey = grey >> 8
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")
