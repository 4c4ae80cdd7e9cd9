"""/view and /upload/image of the ComfyUI test double (see comfy_double.py)."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image


class FilesMixin:
    double: Any

    # ------------------------------------------------------------------ files
    def dir_for(self, type_: str) -> Path | None:
        d = self.double
        return {"output": d.output_dir, "input": d.input_dir, "temp": d.temp_dir}.get(type_)

    async def get_view(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        filename = q.get("filename")
        if not filename:
            return web.Response(status=404)
        type_ = q.get("type", "output")
        for tag in ("output", "input", "temp"):
            if filename.endswith(f" [{tag}]"):
                filename, type_ = filename[: -len(tag) - 3], tag
        base = self.dir_for(type_)
        if base is None:
            return web.Response(status=400)
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        folder = (base / q["subfolder"]) if q.get("subfolder") else base
        path = (folder / filename).resolve()
        try:
            path.relative_to(base.resolve())
        except ValueError:
            return web.Response(status=403)
        if not path.is_file():
            return web.Response(status=404)
        headers = {"Content-Disposition": f'filename="{filename}"'}
        preview = q.get("preview")
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") else "webp"
            with Image.open(path) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format=fmt.upper(),
                                        quality=int(quality) if quality.isdigit() else 90)
            return web.Response(body=buf.getvalue(), content_type=f"image/{fmt}", headers=headers)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        headers["Content-Type"] = ctype
        return web.FileResponse(path, headers=headers)

    async def post_upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or not hasattr(image, "file"):
            return web.Response(status=400)
        type_ = str(post.get("type") or "input")
        base = self.dir_for(type_)
        if base is None:
            base, type_ = self.double.input_dir, "input"
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", "") or "")
        folder = Path(os.path.join(base, os.path.normpath(subfolder))) if subfolder else base
        path = Path(os.path.abspath(folder / filename))
        if os.path.commonpath((str(base.resolve()), str(path))) != str(base.resolve()):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        overwrite = str(post.get("overwrite", "")) in ("true", "1")
        duplicate = False
        if not overwrite:
            stem, ext = os.path.splitext(filename)
            i = 1
            while path.exists():
                if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
                    duplicate = True
                    break
                filename = f"{stem} ({i}){ext}"
                path = folder / filename
                i += 1
        if not duplicate:
            path.write_bytes(data)
        self.double._record_upload(filename, subfolder, type_)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": type_})
