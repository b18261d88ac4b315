"""An uploaded image, read within the server's limits: the body's size is capped while it is read,
the image's pixels are counted from its header before it is decoded, and only image formats are
tried. The bytes are the request's own: nothing here opens a path."""

from __future__ import annotations

import io
import re

import numpy as np

# PIL's decoders tried on an upload: photo formats only (PIL's others include formats that
# call out to other programs, e.g. EPS through Ghostscript).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
RAW_TYPES = ("image/", "application/octet-stream")


class UploadError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request, max_bytes: int) -> bytes:
    """The request's body, refused with 413 as soon as it passes ``max_bytes`` (or says it will)."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise UploadError(400, "a Content-Length that is not a number")
    if declared is not None and int(declared) > max_bytes:
        raise UploadError(413, _too_large(max_bytes))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise UploadError(413, _too_large(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> str:
    return f"the upload is larger than the server's cap of {max_bytes / 2**20:g} MB (--max_upload_mb)"


async def image_bytes(request, max_bytes: int) -> tuple[bytes, str | None]:
    """``(the image's bytes, its file name if the client gave one)`` from a multipart form with one
    file, or a raw body of type ``image/*`` or ``application/octet-stream``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "multipart/form-data" or kind.startswith(RAW_TYPES)):
        raise UploadError(
            415,
            f"content type {kind or 'missing'}: send the image as multipart/form-data (one file) or as the body "
            "with an image/* or application/octet-stream content type",
        )
    body = await read_body(request, max_bytes)
    if kind != "multipart/form-data":
        return body, None
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body
        yield b""

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as e:
        raise UploadError(400, f"a malformed multipart form ({' '.join(str(e).split())[:120]})") from None
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if len(files) != 1:
            raise UploadError(400, "a multipart form needs exactly one file (e.g. curl -F image=@photo.jpg)")
        return await files[0].read(), _name(files[0].filename)
    finally:
        await form.close()


def _name(filename: str | None) -> str | None:
    """The client's file name as a label for the records (its last part; never a path to open)."""
    name = re.split(r"[\\/]", filename or "")[-1][:255]
    return name or None


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` as ``predict`` reads the same file; 413 over ``max_pixels``, 400 when
    the bytes are not a whole image of a photo format."""
    from amobilenet_jax.predict.media import TooManyPixels, decode_image

    if not data:
        raise UploadError(400, "an empty upload")
    try:
        return decode_image(io.BytesIO(data), max_pixels=max_pixels, formats=FORMATS)
    except TooManyPixels as e:
        raise UploadError(413, f"the image has {e} (--max_pixels)") from None
    except ValueError as e:
        why = re.sub(r" ?<[^>]*>", "", str(e)).replace("not a readable image or video", "not a readable image")
        raise UploadError(400, f"{why}; formats read: {', '.join(FORMATS)}") from None
