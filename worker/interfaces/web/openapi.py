"""The OpenAPI 3.1 document of ``/api/v1`` (hand-written: it is the contract of SPEC §9, the
code follows it), and a readable page rendered from it (no scripts: the page's CSP holds)."""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from flows import registry

__all__ = ["openapi_document", "DOCS_HTML"]


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_ERRORS = {
    "401": _problem("Falta el token, o no es válido o fue revocado."),
    "403": _problem("El token no tiene el permiso que pide la ruta."),
    "429": _problem("Demasiadas solicitudes con este token (ver Retry-After)."),
}
_NOT_FOUND = {"404": _problem("No existe.")}


def _op(summary: str, scope: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": [{"bearer": [scope]}],
            "responses": {**responses, **_ERRORS}, **more}


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


@cache
def openapi_document() -> dict[str, Any]:
    status_obj = {"$ref": "#/components/schemas/BatchStatus"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Constancias IMSS e ISSSTE", "version": "1.0.0",
                 "description": "API para sistemas de RH: enviar altas (CURPs), seguir el "
                                "avance, descargar reportes y constancias, recibir webhooks."},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/batches": {"post": _op(
                "Crear un lote desde JSON o desde un archivo", "batches:write",
                {"202": {"description": "Lote creado (o el mismo de antes, con la misma "
                                        "Idempotency-Key).",
                         "content": {"application/json": {"schema": {
                             "type": "object", "required": ["batch_id"],
                             "properties": {"batch_id": {"type": "string"}}}}}},
                 "409": _problem("La Idempotency-Key ya se usó con otra solicitud."),
                 "413": _problem("La solicitud es demasiado grande."),
                 "415": _problem("Tipo de contenido no admitido."),
                 "422": _problem("Datos inválidos o sin ninguna CURP válida.")},
                parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                             "schema": {"type": "string", "maxLength": 255}}],
                requestBody={"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}},
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"},
                                       "portals": {"type": "string",
                                                   "examples": ["imss,issste"]}}}}}})},
            "/batches/{batch_id}": {"get": _op(
                "Avance y resultados de un lote (el objeto de status --json)", "batches:read",
                {"200": {"description": "El lote.",
                         "content": {"application/json": {"schema": status_obj}}},
                 **_NOT_FOUND},
                parameters=[_path_param("batch_id", {"type": "string"})])},
            "/batches/{batch_id}/report": {"get": _op(
                "El reporte Excel del lote (parcial mientras corre)", "results:read",
                {"200": {"description": "El reporte.", "content": {
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                        "schema": {"type": "string", "format": "binary"}}}}, **_NOT_FOUND},
                parameters=[_path_param("batch_id", {"type": "string"})])},
            "/people/{curp}": {"get": _op(
                "Último resultado por portal e historial de una CURP", "results:read",
                {"200": {"description": "La persona.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Person"}}}}, **_NOT_FOUND},
                parameters=[_path_param("curp", {"type": "string", "minLength": 18,
                                                 "maxLength": 18})])},
            "/checks/{check_id}/pdf": {"get": _op(
                "La constancia en PDF de una consulta", "results:read",
                {"200": {"description": "El PDF.", "content": {"application/pdf": {
                    "schema": {"type": "string", "format": "binary"}}}}, **_NOT_FOUND},
                parameters=[_path_param("check_id", {"type": "integer"})])},
            "/webhooks": {"post": _op(
                "Registrar un webhook (el secreto se muestra solo aquí)", "webhooks:write",
                {"201": {"description": "Registrado.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/WebhookCreated"}}}},
                 "413": _problem("La solicitud es demasiado grande."),
                 "415": _problem("Tipo de contenido no admitido."),
                 "422": _problem("URL o eventos inválidos.")},
                requestBody={"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/WebhookIn"}}}})},
        },
        "webhooks": {
            "batch.done": {"post": {
                "summary": "Un lote terminó. Firmado: X-Constancias-Timestamp y "
                           "X-Constancias-Signature: sha256=HEX, HMAC-SHA256 de "
                           "timestamp + '.' + cuerpo con el secreto del webhook.",
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Event"}}}},
                "responses": {"200": {"description": "Cualquier 2xx confirma la entrega; "
                                                     "lo demás se reintenta."}}}},
            "check.changed": {"post": {
                "summary": "Una revisión encontró un cambio de estado (misma firma).",
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Event"}}}},
                "responses": {"200": {"description": "Cualquier 2xx confirma la entrega."}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "constancias tokens add NOMBRE "
                                                          "--scopes …"}},
            "schemas": {
                "Problem": {"type": "object", "required": ["title", "status", "detail"],
                            "properties": {"type": {"type": "string"},
                                           "title": {"type": "string"},
                                           "status": {"type": "integer"},
                                           "detail": {"type": "string"}}},
                "BatchIn": {"type": "object", "required": ["people"],
                            "properties": {
                                "people": {"type": "array", "minItems": 1, "items": {
                                    "type": "object", "required": ["curp"],
                                    "properties": {"curp": {"type": "string"},
                                                   "external_id": {"type": "string"}},
                                    "additionalProperties": True}},
                                "portals": {"type": "array", "items": {
                                    "type": "string", "enum": registry.names()}}}},
                "Result": {"type": "object", "properties": {
                    "row": {"type": "integer"}, "curp": {"type": "string"},
                    "portal": {"type": "string"}, "status": {"type": ["string", "null"]},
                    "pdf": {"type": ["string", "null"]}, "detail": {"type": "string"}}},
                "BatchStatus": {"type": "object",
                                "required": ["batch_id", "state", "total", "done", "by_status",
                                             "results"],
                                "properties": {
                                    "batch_id": {"type": "string"},
                                    "state": {"type": "string",
                                              "enum": ["queued", "running", "done"]},
                                    "total": {"type": "integer"}, "done": {"type": "integer"},
                                    "waiting": {"type": "integer", "description":
                                                "IMSS checks waiting for their email"},
                                    "by_status": {"type": "object", "additionalProperties": {
                                        "type": "integer"}},
                                    "report": {"type": ["string", "null"]},
                                    "results": {"type": "array", "items": {
                                        "$ref": "#/components/schemas/Result"}}}},
                "Check": {"type": "object", "properties": {
                    "check_id": {"type": "integer"}, "batch_id": {"type": "string"},
                    "portal": {"type": "string"}, "status": {"type": "string"},
                    "detail": {"type": "string"},
                    "valid_until": {"type": ["string", "null"], "format": "date"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "pdf": {"type": ["string", "null"]}}},
                "Person": {"type": "object", "properties": {
                    "curp": {"type": "string"},
                    "latest": {"type": "object", "additionalProperties": {
                        "$ref": "#/components/schemas/Check"}},
                    "history": {"type": "array", "items": {
                        "$ref": "#/components/schemas/Check"}}}},
                "WebhookIn": {"type": "object", "required": ["url", "events"],
                              "properties": {"url": {"type": "string", "format": "uri"},
                                             "events": {"type": "array", "items": {
                                                 "type": "string",
                                                 "enum": ["batch.done", "check.changed"]}}}},
                "WebhookCreated": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "url": {"type": "string"},
                    "events": {"type": "array", "items": {"type": "string"}},
                    "secret": {"type": "string"}}},
                "Event": {"type": "object", "required": ["event", "data"], "properties": {
                    "event": {"type": "string"}, "data": {"type": "object"}}},
            },
        },
    }


def _docs_html() -> str:
    doc = openapi_document()
    parts = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            scope = op["security"][0]["bearer"][0]
            codes = ", ".join(sorted(op["responses"]))
            parts.append(f"<tr><td><code>{method.upper()}</code></td>"
                         f"<td><code>/api/v1{escape(path)}</code></td>"
                         f"<td>{escape(op['summary'])}</td><td><code>{scope}</code></td>"
                         f"<td>{codes}</td></tr>")
    hooks = "".join(f"<li><code>{escape(name)}</code>: {escape(h['post']['summary'])}</li>"
                    for name, h in doc["webhooks"].items())
    return ("<!doctype html><html lang=\"es\"><head><meta charset=\"utf-8\">"
            "<title>API · Constancias IMSS e ISSSTE</title>"
            "<link rel=\"stylesheet\" href=\"/static/estilo.css\"></head><body>"
            "<main class=\"wrap\"><h1>API para sistemas de RH</h1>"
            f"<p>{escape(doc['info']['description'])} Cada solicitud lleva "
            "<code>Authorization: Bearer TOKEN</code>; los errores son «problem details» "
            "(RFC 9457) con <code>detail</code> en español. Documento completo: "
            "<a href=\"/api/v1/openapi.json\">openapi.json</a> (OpenAPI 3.1).</p>"
            "<table><thead><tr><th>Método</th><th>Ruta</th><th>Qué hace</th>"
            "<th>Permiso</th><th>Respuestas</th></tr></thead><tbody>"
            + "".join(parts) + "</tbody></table><h2>Webhooks</h2><ul>" + hooks
            + "</ul></main></body></html>")


DOCS_HTML = _docs_html()
