"""A GCS emulator on a loopback port for the bucket tests: gcp-storage-emulator, with GCS's generation preconditions.

The emulator ignores `ifGenerationMatch` and `ifGenerationNotMatch` and sends no `x-goog-generation` header,
which GCS does. tensorstore's OCDBT (orbax's arrays) reads its manifest back under 'not generation N' right
after writing it and fails on the missing header ('Malformed StorageGeneration', about one save in ten), and
genjax's bucket lock is decided by 'generation 0' (create only while absent). Its object handlers are wrapped
here to answer as GCS does: 412 when a precondition fails, 304 for a read of an unchanged generation, and the
generation header on every read.
"""

import http
import logging
import socket

from gcp_storage_emulator import server as server_lib
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_WRAPPED = "_genjax_preconditions"


def _query(request, key: str) -> str | None:
  values = request.query.get(key)
  return values[0] if values else None


def _object_name(request) -> str | None:
  name = request.params.get("object_id") or _query(request, "name")
  if name is None and _query(request, "uploadType") == "multipart":  # named in its first (JSON) part
    name = (request.data or {}).get("meta", {}).get("name")
  return name


def _with_preconditions(handler):
  if getattr(handler, _WRAPPED, False):
    return handler

  def wrapped(request, response, storage, *args, **kwargs):
    bucket, name = request.params.get("bucket_name"), _object_name(request)
    current = None
    if bucket and name:
      try:
        current = str(storage.get_file_obj(bucket, name)["generation"])
      except NotFound:
        pass
    match, not_match = _query(request, "ifGenerationMatch"), _query(request, "ifGenerationNotMatch")
    if match is not None and match != (current or "0"):
      response.status = http.HTTPStatus.PRECONDITION_FAILED
      response.json({"error": {"code": 412, "message": "conditionNotMet"}})
      return None
    if not_match is not None and current is not None and not_match == current:
      response.status = http.HTTPStatus.NOT_MODIFIED
      return None
    if current is not None:
      response["x-goog-generation"] = current
    return handler(request, response, storage, *args, **kwargs)

  setattr(wrapped, _WRAPPED, True)
  return wrapped


def _patch_handlers() -> None:
  for _, handlers in server_lib.HANDLERS:
    for method, handler in handlers.items():
      if handler in (objects.download, objects.get, objects.insert, objects.delete):
        handlers[method] = _with_preconditions(handler)
  objects.insert = _with_preconditions(objects.insert)  # the server's fallback for uploads without /upload


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(bucket: str):
  """(server, url): an in-memory emulator holding `bucket`, serving on a free loopback port."""
  _patch_handlers()
  logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # each missing object orbax probes
  port = free_port()
  server = server_lib.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
  server.start()
  return server, f"http://127.0.0.1:{port}"
