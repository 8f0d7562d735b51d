"""The OpenAPI 3.1 description of the service (``GET /openapi.json``) and a page that shows it
(``GET /docs``: plain HTML, no script or stylesheet from elsewhere, so it works offline)."""

from __future__ import annotations

import html
import json

from dbcli.serve.options import PARSERS

ERROR = {"$ref": "#/components/schemas/Error"}
OPTION_HELP = {
    "thresh": "binarisation threshold of the probability map, in [0, 1]",
    "box_thresh": "minimum mean probability of a region, in [0, 1]",
    "unclip_ratio": "how far a region's outline is grown", "polygon": "outlines as polygons (else boxes)",
    "sort": "reading order: lines, columns or none", "short_side": "resize the image's short side to this",
    "max_side": "the network input's long side at most this (at most the server's)",
    "max_candidates": "regions considered at most (at most the server's)",
    "dpi": "PDF pages rendered at this resolution, in [18, 1200]", "exif": "apply the EXIF orientation",
    "crops": "each region's crop as a PNG data URL", "images": "each image or page as a JPEG data URL",
    "text": "read the text of each region: its `text` and `text_score`",
}


def _errors(*codes: int) -> dict:
    why = {400: "a bad option or form", 408: "the body did not arrive in time", 413: "over a limit",
           415: "PDF support missing", 422: "the file cannot be used", 503: "busy or shutting down (Retry-After)"}
    return {str(c): {"description": why[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _parameters() -> list[dict]:
    kinds = {"polygon": "boolean", "exif": "boolean", "crops": "boolean", "images": "boolean", "text": "boolean",
             "sort": "string",
             "short_side": "integer", "max_side": "integer", "max_candidates": "integer"}
    return [{"name": name, "in": "query", "required": False, "description": OPTION_HELP.get(name, ""),
             "schema": {"type": kinds.get(name, "number")}} for name in PARSERS]


def _detect() -> dict:
    file = {"type": "string", "format": "binary"}
    json_body = {"type": "object", "properties": {
        "image": {"type": "string", "contentEncoding": "base64"}, "filename": {"type": "string"},
        "images": {"type": "array", "items": {"type": "object", "properties": {
            "image": {"type": "string", "contentEncoding": "base64"}, "filename": {"type": "string"}}}},
        "options": {"type": "object", "description": "the query options, by name"}}}
    return {"post": {
        "summary": "Detect the text regions of images or PDFs",
        "description": "One result entry per image or PDF page, as `dbnet detect` writes them. Options as query "
                       "parameters, form fields or a JSON body's `options`.",
        "parameters": _parameters(),
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": file}}}},
            "application/json": {"schema": json_body},
            "application/octet-stream": {"schema": file}, "application/pdf": {"schema": file}}},
        "responses": {"200": {"description": "dbnet detect's JSON document",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 408, 413, 415, 422, 503)}}}


def _get(summary: str, media: str = "application/json", codes: tuple[int, ...] = ()) -> dict:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK", "content": {media: {}}},
                                                      **_errors(*codes)}}}


def openapi_spec(version: str) -> dict:
    """The OpenAPI document of every route."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "dbnet serve", "version": version,
                 "description": "DBNet scene-text detection over HTTP."},
        "paths": {
            "/detect": _detect(),
            "/livez": _get("Liveness: the process answers"),
            "/readyz": _get("Readiness: model loaded, not draining, queue not full", codes=(503,)),
            "/health": _get("Model, settings, queue and limits", codes=(503,)),
            "/metrics": _get("Prometheus metrics", "text/plain"),
            "/openapi.json": _get("This document"),
            "/docs": _get("This document as a page", "text/html"),
            "/": _get("A page to try the detector", "text/html"),
        },
        "components": {"schemas": {"Error": {"type": "object", "required": ["error", "status"], "properties": {
            "error": {"type": "string", "description": "one line"}, "status": {"type": "integer"}}}}},
    }


def docs_page(spec: dict) -> str:
    """``spec`` as a plain HTML page: each path and method, its summary, parameters and answers."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = "".join(f"<li><code>{html.escape(p['name'])}</code> ({p['schema']['type']}): "
                             f"{html.escape(p['description'])}</li>" for p in op.get("parameters", []))
            codes = ", ".join(op["responses"])
            rows.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(op['summary'])}. "
                        f"{html.escape(op.get('description', ''))}</p>"
                        + (f"<ul>{params}</ul>" if params else "") + f"<p>Answers: {codes}</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbnet serve: API</title></head>"
            f"<body><h1>dbnet serve {html.escape(spec['info']['version'])}: API</h1>"
            "<p>Machine-readable: <a href=\"openapi.json\">openapi.json</a>.</p>" + "".join(rows)
            + f"<details><summary>openapi.json</summary><pre>{html.escape(json.dumps(spec, indent=1))}</pre></details>"
            "</body></html>")
