"""Inline images (``{% inline_image %}``): ``InlineImage`` and friends.

The code lives in :mod:`post_office.rendering.inline`.
"""

from .rendering.inline import CID_DOMAIN, InlineImage, embed, is_inline_cid, load

__all__ = ["CID_DOMAIN", "InlineImage", "embed", "is_inline_cid", "load"]
