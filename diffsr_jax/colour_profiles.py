"""ICC profiles of user images: which one may travel with the pixels, and CMYK → sRGB with one.

The model sees RGB; an ICC profile read from the input is written back with the output only when
it describes the pixels written: an RGB profile on RGB data, a GRAY one on grayscale data (a CMYK
profile on RGB pixels is an invalid file that colour-managed programs reject or render wrongly).
A CMYK image with an embedded CMYK profile is converted to sRGB through that profile (Little CMS,
via ``PIL.ImageCms``); when that is impossible it falls back to Pillow's plain conversion and the
profile is dropped, with a note.
"""

from __future__ import annotations

import io
from typing import Optional

from PIL import Image

#: The profile colour space (ICC header bytes 16-19) each image mode's pixels need.
_SPACE_FOR_MODE = {"rgb": "RGB", "rgba": "RGB", "gray": "GRAY", "gray_alpha": "GRAY"}


def colour_space(profile: Optional[bytes]) -> Optional[str]:
    """The data colour space an ICC profile describes ("RGB", "GRAY", "CMYK", "Lab", ...), read
    from its header; None for no profile or bytes that are not an ICC profile."""
    if not profile or len(profile) < 128 or profile[36:40] != b"acsp":
        return None
    try:
        return profile[16:20].decode("ascii").strip() or None
    except UnicodeDecodeError:
        return None


def fits(profile: Optional[bytes], mode: str) -> bool:
    """True when ``profile`` may be stored with pixels of ``mode`` (see the module docstring)."""
    return colour_space(profile) == _SPACE_FOR_MODE.get(mode)


def keep_if_fits(profile: Optional[bytes], mode: str, notes: list[str]) -> Optional[bytes]:
    """``profile`` when it fits ``mode``'s pixels, else None with a note (nothing for None)."""
    if not profile or fits(profile, mode):
        return profile or None
    space = colour_space(profile)
    what = f"a {space} ICC profile" if space else "an ICC profile that cannot be read"
    pixels = "grayscale" if _SPACE_FOR_MODE.get(mode) == "GRAY" else "RGB"
    notes.append(f"{what} does not describe {pixels} pixels: dropped (the output is untagged, i.e. sRGB)")
    return None


def cmyk_to_srgb(im: Image.Image, profile: Optional[bytes], notes: list[str]) -> Optional[Image.Image]:
    """A CMYK image converted to sRGB through its embedded CMYK ``profile`` (perceptual intent),
    with a note; None when there is no usable CMYK profile (a note says why when one was there),
    leaving the caller to convert without colour management."""
    if colour_space(profile) != "CMYK":
        if profile:
            notes.append(f"its ICC profile ({colour_space(profile) or 'unreadable'}) is not a CMYK profile: "
                         "ignored")
        return None
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                        renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB")
    except Exception as e:  # ImportError (Pillow without Little CMS), PyCMSError, OSError, ...
        notes.append(f"its CMYK ICC profile could not be applied ({type(e).__name__}): dropped")
        return None
    out.info.pop("icc_profile", None)  # sRGB now: written untagged
    out.info.pop("transparency", None)
    notes.append("CMYK converted to sRGB with its embedded ICC profile")
    return out
