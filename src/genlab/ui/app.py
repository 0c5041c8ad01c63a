"""The ``genlab serve`` web app: server-rendered pages over :mod:`genlab.service`.

Every workflow is the service layer's (``sample_run``, ``fit_run`` through ``genlab fit`` in
a subprocess, ``evaluate_run``, ``interpolate_run``, ``edit_run``, ``inpaint_run``); this
module parses and bounds requests, calls them, and turns their results and errors into
pages and JSON. Errors are ``{"error": message}`` with 400/404/409/413 (500 for a bug,
logged here, never a traceback to the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import math
import queue
import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..errors import GenlabError
from . import limits as L
from .jobs import JobQueue
from .media import bars_svg, curves_svg, fit_image, mask_from_png, png_bytes, read_curves, read_png_params, svg_json
from .models_cache import ModelCache
from .paths import HTTPError, check_run_name, data_path, inside, run_path
from .runs_index import EVAL_COLUMNS, RunIndex

log = logging.getLogger("genlab.ui")
HERE = Path(__file__).resolve().parent
#: the named datasets offered on the train page
DATASETS = ("digits", "mnist", "fashion-mnist")
#: pictures of a run folder the app serves (nothing else of a run is ever sent)
RUN_PICTURES = ("samples.png",)


# ---------------------------------------------------------------------- request helpers
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def endpoint(fn: Callable) -> Callable:
    """Wrap a route: HTTPError and GenlabError become JSON errors (API) or an error page,
    anything else a logged 500 with a one-line message."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        api = request.url.path.startswith("/api")
        try:
            return await fn(request)
        except HTTPError as exc:
            status, message = exc.status, exc.message
        except GenlabError as exc:
            status, message = 400, str(exc).splitlines()[0] if str(exc) else "bad request"
        except Exception:  # noqa: BLE001 - the last line of defence: logged, never shown
            log.exception("error in %s %s", request.method, request.url.path)
            status, message = 500, "internal error (see the server log)"
        if api:
            return _error(status, message)
        return request.app.state.templates.TemplateResponse(
            request, "error.html", {"message": message, "status": status}, status_code=status
        )

    return wrapper


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPError(413, f"{what}: {int(declared):,} bytes; at most {limit:,}")
        except ValueError:
            raise HTTPError(400, "content-length: not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"{what}: more than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(request: Request) -> dict[str, Any]:
    body = await read_limited(request, L.MAX_JSON_BYTES, "request body")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise HTTPError(400, "body: not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "body: expected a JSON object")
    return data


async def read_form(request: Request, limit: int) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/urlencoded form read within ``limit`` bytes: (fields, files name -> (filename, bytes))."""
    body = await read_limited(request, limit, "upload")

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        form = await replay.form(max_files=4, max_fields=500)
    except Exception as exc:  # noqa: BLE001 - malformed multipart: the parser's message, one line
        raise HTTPError(
            400, f"form: cannot parse it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    fields, files = {}, {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            if data:
                files[key] = (value.filename or "", data)
        else:
            fields[key] = str(value)
    await form.close()
    return fields, files


def get_int(data: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    value = data.get(key, default)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        raise HTTPError(400, f"{key}: {value!r} is not a whole number")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise HTTPError(400, f"{key}: {str(value)[:40]!r} is not a whole number")
    if not low <= number <= high:
        raise HTTPError(400, f"{key}: {number} is out of range [{low}, {high}]")
    return number


def get_float(data: dict, key: str, default: float | None, low: float, high: float) -> float | None:
    value = data.get(key, default)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{key}: {str(value)[:40]!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
        raise HTTPError(400, f"{key}: {value!r} is out of range [{low}, {high}]")
    return number


def get_prompt(data: dict) -> str | None:
    prompt = data.get("prompt")
    if prompt in (None, ""):
        return None
    if not isinstance(prompt, str):
        raise HTTPError(400, "prompt: must be text")
    if len(prompt) > L.MAX_PROMPT_CHARS:
        raise HTTPError(400, f"prompt: {len(prompt)} characters; at most {L.MAX_PROMPT_CHARS}")
    if not prompt.strip():
        return None
    return prompt


# ---------------------------------------------------------------------- the app's state
class Generations:
    """Finished generations (uint8 images + their parameters), bounded, for the downloads."""

    def __init__(self, size: int = L.GENERATION_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, images: np.ndarray, params: dict) -> str:
        key = secrets.token_hex(8)
        with self._lock:
            self._items[key] = {"images": images, "params": params}
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> dict:
        with self._lock:
            item = self._items.get(key)
        if item is None:
            raise HTTPError(404, f"generation {key[:40]!r}: unknown or expired; generate again")
        return item


def model_info(model) -> dict[str, Any]:
    """What the generate and edit pages need to know about a loaded model."""
    cls = type(model)
    classes = getattr(model, "classes_", None)
    n_classes = getattr(model, "n_classes_", None)
    labels: list = []
    if model.conditional and not getattr(model, "text_conditional", False):
        if classes is not None:
            labels = [c.item() if hasattr(c, "item") else c for c in list(classes)]
        elif n_classes:
            labels = list(range(int(n_classes)))
    hidden = ("prompt",) if model.conditional and cls.has_null_branch else ("prompt", "unconditional")
    options = {k: p.to_json() for k, p in cls.sample_options.items() if k not in hidden}
    return {
        "model": model.name,
        "image_shape": [int(s) for s in model.image_shape_],
        "conditional": bool(model.conditional),
        "text": bool(getattr(model, "text_conditional", False)),
        "labels": labels,
        "sample_options": options,
        "capabilities": sorted(cls.capabilities),
        "likelihood": cls.likelihood,
    }


def create_app(
    runs_dir: Path | str,
    *,
    data_root: Path | str | None = None,
    data_roots: list[Path | str] | None = None,
    python: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The web app over RUNS_DIR. ``data_root``/``data_roots``: folders whose ``npz:``/``folder:``
    data the train page may name (none: only the named datasets and uploads). ``python``: the
    interpreter of training subprocesses (default: this one). ``allowed_hosts``: the Host
    header values accepted (default: loopback names only, which defeats DNS rebinding;
    ``["*"]`` accepts any, for a server bound to another interface on purpose)."""
    runs_dir = Path(runs_dir).expanduser().absolute()
    runs_dir.mkdir(parents=True, exist_ok=True)
    roots = [Path(r).expanduser().resolve() for r in ([data_root] if data_root else []) + list(data_roots or [])]
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["limits"] = L.LIMITS
    index = RunIndex(runs_dir)
    cache = ModelCache()
    generations = Generations()
    jobs = JobQueue(runs_dir, python=python, model_cache=cache)

    def run_dir(name: str) -> Path:
        return run_path(runs_dir, name)

    def load(name: str):
        return cache.get(run_dir(name))

    def page(request: Request, template: str, **context: Any) -> Response:
        return templates.TemplateResponse(request, template, context)

    # ------------------------------------------------------------------ pages
    @endpoint
    async def runs_page(request: Request) -> Response:
        return page(request, "runs.html", runs=index.list(), eval_columns=EVAL_COLUMNS)

    @endpoint
    async def run_page(request: Request) -> Response:
        name = request.path_params["name"]
        folder = run_dir(name)
        summary = next((r for r in index.list() if r["name"] == name), None) or {}
        config = _read(folder / "config.json")
        metrics = _read(folder / "metrics.json")
        curves = curves_svg(read_curves(folder / "checkpoints" / "metrics.csv"), css_id="training-curves-svg")
        history = sorted(p.name for p in (folder / "checkpoints" / "samples").glob("epoch-*.png"))
        return page(
            request,
            "run.html",
            name=name,
            summary=summary,
            params=sorted((config.get("params") or {}).items()),
            metrics=metrics,
            curves=curves,
            history=history,
            evaluation=_evaluation_rows(metrics),
            figures=_figures(folder),
        )

    @endpoint
    async def compare_page(request: Request) -> Response:
        names = request.query_params.getlist("runs")
        if not names:
            raise HTTPError(400, "runs: choose at least one run to compare")
        if len(names) > 50:
            raise HTTPError(400, "runs: at most 50 runs at once")
        table = compare_table(runs_dir, names, run_dir)
        return page(request, "compare.html", **table)

    @endpoint
    async def generate_page(request: Request) -> Response:
        name = request.path_params["name"]
        info = await asyncio.to_thread(load, name)
        return page(request, "generate.html", name=name, info=model_info(info), info_json=svg_json(model_info(info)))

    @endpoint
    async def edit_page(request: Request) -> Response:
        name = request.path_params["name"]
        model = await asyncio.to_thread(load, name)
        info = model_info(model)
        caps = set(info["capabilities"])
        classes: list[int] = []
        index_b = 1  # the interpolation's starting pair: a class-conditional model needs one class
        if caps & {"attributes", "interpolate"}:
            data = await asyncio.to_thread(_run_data, run_dir(name))
            if data.labels is not None:
                labels = np.asarray(data.labels)
                classes = sorted({int(v) for v in np.unique(labels)})
                same = np.flatnonzero(labels[1:] == labels[0])
                index_b = int(same[0]) + 1 if same.size else 1
        sections = {
            "interpolate": "interpolate" in caps,
            "inpaint": "inpaint" in caps,
            "sdedit": "edit" in caps,
            "attributes": "attributes" in caps and info["conditional"] is False and len(classes) > 1,
        }
        return page(
            request,
            "edit.html",
            name=name,
            info=info,
            sections=sections,
            classes=classes,
            index_b=index_b,
            info_json=svg_json(info),
        )

    @endpoint
    async def train_page(request: Request) -> Response:
        from ..models.registry import describe_models

        return page(
            request,
            "train.html",
            models=describe_models(),
            datasets=DATASETS,
            roots=[str(r) for r in roots],
        )

    # ------------------------------------------------------------------ API: runs
    @endpoint
    async def api_runs(request: Request) -> Response:
        return JSONResponse({"runs": index.list()})

    @endpoint
    async def api_run(request: Request) -> Response:
        name = request.path_params["name"]
        folder = run_dir(name)
        return JSONResponse(
            {
                "name": name,
                "config": _read(folder / "config.json"),
                "run": _read(folder / "run.json"),
                "metrics": _read(folder / "metrics.json"),
            }
        )

    @endpoint
    async def api_run_file(request: Request) -> Response:
        name, file = request.path_params["name"], request.path_params["file"]
        folder = run_dir(name)
        if file in RUN_PICTURES or file in ("memorisation.png", "baseline.png"):
            path = folder / file if file in RUN_PICTURES else folder / "ui-figures" / file
        elif file.startswith("history-") and file.endswith(".png"):
            path = folder / "checkpoints" / "samples" / file[len("history-") :]
        else:
            raise HTTPError(404, f"{file[:60]!r}: not a picture of the run")
        check_run_name(path.name, "file")
        if not path.is_file() or not inside(path, runs_dir):
            raise HTTPError(404, f"{file}: not found in run {name}")
        return FileResponse(path, media_type="image/png")

    @endpoint
    async def api_curves(request: Request) -> Response:
        folder = run_dir(request.path_params["name"])
        return JSONResponse(read_curves(folder / "checkpoints" / "metrics.csv"))

    @endpoint
    async def api_models(request: Request) -> Response:
        from ..models.registry import describe_models

        return JSONResponse({"models": describe_models(), "datasets": list(DATASETS), "limits": L.LIMITS})

    @endpoint
    async def api_limits(request: Request) -> Response:
        return JSONResponse(L.LIMITS)

    @endpoint
    async def api_model_info(request: Request) -> Response:
        model = await asyncio.to_thread(load, request.path_params["name"])
        return JSONResponse(model_info(model))

    # ------------------------------------------------------------------ API: generate
    @endpoint
    async def api_generate(request: Request) -> Response:
        name = request.path_params["name"]
        data = await read_json_body(request)
        model = await asyncio.to_thread(load, name)
        params, options, y = generation_params(name, model, data)
        events: queue.Queue = queue.Queue()
        chunk = get_int(data, "chunk", L.GENERATE_CHUNK, 1, L.MAX_GENERATE_IMAGES)

        def work() -> None:
            try:
                images = draw(run_dir(name), model, params["n"], params["seed"], y, options, chunk, events.put)
                key = generations.put(images, params)
                events.put({"done": True, "id": key, "n": params["n"], "params": params})
            except (GenlabError, HTTPError) as exc:
                events.put({"error": getattr(exc, "message", None) or str(exc).splitlines()[0]})
            except Exception:  # noqa: BLE001
                log.exception("generate %s", name)
                events.put({"error": "internal error (see the server log)"})

        threading.Thread(target=work, daemon=True, name=f"generate-{name}").start()

        async def stream():
            while True:
                item = await asyncio.to_thread(events.get)
                if isinstance(item, tuple):  # a chunk: (first, images)
                    first, images = item
                    tile = png_bytes(images, ncols=min(len(images), 8))
                    import base64

                    yield (
                        json.dumps(
                            {
                                "first": first,
                                "count": len(images),
                                "tile": "data:image/png;base64," + base64.b64encode(tile).decode(),
                            }
                        )
                        + "\n"
                    )
                    continue
                yield json.dumps(item) + "\n"
                return

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @endpoint
    async def api_generation_file(request: Request) -> Response:
        key, ext = request.path_params["key"], request.path_params["ext"]
        item = generations.get(key)
        images, params = item["images"], item["params"]
        if ext == "png":
            import torch

            body = png_bytes(torch.from_numpy(images), params=params)
            return Response(
                body, media_type="image/png", headers=_attachment(f"{params['run']}-seed{params['seed']}.png")
            )
        if ext == "npy":
            buf = io.BytesIO()
            np.save(buf, images)
            return Response(
                buf.getvalue(),
                media_type="application/octet-stream",
                headers=_attachment(f"{params['run']}-seed{params['seed']}.npy"),
            )
        raise HTTPError(404, f".{ext}: downloads are .png or .npy")

    @endpoint
    async def api_png_params(request: Request) -> Response:
        fields, files = await read_form(request, L.MAX_IMAGE_UPLOAD_BYTES)
        if "png" not in files:
            raise HTTPError(400, "png: upload a PNG written by the generate page")
        return JSONResponse(read_png_params(files["png"][1]))

    # ------------------------------------------------------------------ API: edit
    @endpoint
    async def api_dataset_image(request: Request) -> Response:
        name = request.path_params["name"]
        index_ = get_int(dict(request.query_params), "index", 0, 0, 10**9)
        data = await asyncio.to_thread(_run_data, run_dir(name))
        images = data.images
        if index_ >= len(images):
            raise HTTPError(400, f"index: {index_} is past the last image ({len(images) - 1})")
        headers = {} if data.labels is None else {"X-Genlab-Label": str(int(data.labels[index_]))}
        return Response(png_bytes(images[index_ : index_ + 1]), media_type="image/png", headers=headers)

    @endpoint
    async def api_edit(request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("interpolate", "inpaint", "sdedit", "attribute"):
            raise HTTPError(404, f"{action}: not an edit (interpolate, inpaint, sdedit, attribute)")
        fields, files = await read_form(request, 3 * L.MAX_IMAGE_UPLOAD_BYTES)
        for fname, (_, data) in files.items():
            if len(data) > L.MAX_IMAGE_UPLOAD_BYTES:
                raise HTTPError(413, f"{fname}: {len(data):,} bytes; at most {L.MAX_IMAGE_UPLOAD_BYTES:,}")
        folder = run_dir(name)
        model = await asyncio.to_thread(load, name)
        body = await asyncio.to_thread(run_edit, action, folder, model, fields, files)
        return Response(body, media_type="image/png")

    # ------------------------------------------------------------------ API: jobs
    @endpoint
    async def api_jobs(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(jobs.snapshot())
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            fields, files = {k: v for k, v in (await read_json_body(request)).items()}, {}
        else:
            fields, files = await read_form(request, L.MAX_DATA_UPLOAD_BYTES + 1024 * 1024)
        spec = await asyncio.to_thread(train_spec, runs_dir, roots, fields, files)
        job = jobs.submit_fit(spec)
        return JSONResponse(job.public(), status_code=201)

    @endpoint
    async def api_job(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        return JSONResponse(jobs.progress(job))

    @endpoint
    async def api_job_action(request: Request) -> Response:
        job_id, action = request.path_params["job"], request.path_params["action"]
        if action == "cancel":
            job = jobs.cancel(job_id)
        elif action == "resume":
            job = jobs.resume(job_id)
        else:
            raise HTTPError(404, f"{action}: jobs can be cancelled or resumed")
        return JSONResponse(job.public())

    @endpoint
    async def api_job_events(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])

        async def stream():
            last = None
            while True:
                state = jobs.progress(job)
                text = json.dumps(state)
                if text != last:
                    yield f"data: {text}\n\n"
                    last = text
                if state["status"] in ("done", "failed", "cancelled"):
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @endpoint
    async def api_job_preview(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        path = jobs.preview_path(job)
        if path is None:
            raise HTTPError(404, "preview: no sample grid yet")
        return FileResponse(path, media_type="image/png")

    @endpoint
    async def api_evaluate(request: Request) -> Response:
        name = request.path_params["name"]
        run_dir(name)
        data = await read_json_body(request)
        n = get_int(data, "n", 1000, 21, L.MAX_EVAL_SAMPLES)
        seed = get_int(data, "seed", 0, 0, 2**63 - 1)
        job = jobs.submit_evaluate(name, n, seed)
        return JSONResponse(job.public(), status_code=201)

    routes = [
        Route("/", runs_page),
        Route("/compare", compare_page),
        Route("/train", train_page),
        Route("/runs/{name}", run_page),
        Route("/runs/{name}/generate", generate_page),
        Route("/runs/{name}/edit", edit_page),
        Route("/api/runs", api_runs),
        Route("/api/models", api_models),
        Route("/api/limits", api_limits),
        Route("/api/runs/{name}", api_run),
        Route("/api/runs/{name}/info", api_model_info),
        Route("/api/runs/{name}/curves", api_curves),
        Route("/api/runs/{name}/files/{file}", api_run_file),
        Route("/api/runs/{name}/generate", api_generate, methods=["POST"]),
        Route("/api/runs/{name}/dataset-image", api_dataset_image),
        Route("/api/runs/{name}/edit/{action}", api_edit, methods=["POST"]),
        Route("/api/runs/{name}/evaluate", api_evaluate, methods=["POST"]),
        Route("/api/generations/{key}.{ext}", api_generation_file),
        Route("/api/png-params", api_png_params, methods=["POST"]),
        Route("/api/jobs", api_jobs, methods=["GET", "POST"]),
        Route("/api/jobs/{job}", api_job),
        Route("/api/jobs/{job}/events", api_job_events),
        Route("/api/jobs/{job}/preview.png", api_job_preview),
        Route("/api/jobs/{job}/{action}", api_job_action, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = {404: "not found", 405: "method not allowed"}.get(status, getattr(exc, "detail", "error"))
        if request.url.path.startswith("/api"):
            return _error(status, f"{request.url.path[:200]}: {message}")
        return templates.TemplateResponse(
            request, "error.html", {"message": message, "status": status}, status_code=status
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in %s", request.url.path, exc_info=exc)
        return _error(500, "internal error (see the server log)")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()  # a running training gets SIGINT: its last checkpoint stays

    app = Starlette(
        middleware=[Middleware(LocalOnly, allowed_hosts=allowed_hosts)],
        routes=routes,
        exception_handlers={404: not_found, 405: not_found, 500: server_error},
        lifespan=lifespan,
    )
    app.state.templates = templates
    app.state.index = index
    app.state.cache = cache
    app.state.jobs = jobs
    app.state.runs_dir = runs_dir
    app.state.roots = roots
    return app


# ---------------------------------------------------------------------- request guard
#: Host header names a loopback server answers to
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "testserver")


class LocalOnly:
    """ASGI guard in front of every route: refuses (400) a Host header not in
    ``allowed_hosts`` (a web page that rebinds its own domain name to 127.0.0.1 cannot
    reach the app) and (403) a state-changing request whose Origin is another site (a
    page elsewhere cannot start training or generation through the user's browser)."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts and "*" in allowed_hosts else set(allowed_hosts or LOOPBACK_HOSTS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        name = (
            host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        )
        problem = None
        if self.allowed is not None and name not in self.allowed:
            problem = (400, f"host {host[:100]!r}: this server answers to {', '.join(sorted(self.allowed))} only")
        elif scope.get("method") not in ("GET", "HEAD", "OPTIONS") and "origin" in headers:
            origin = headers["origin"]
            if origin == "null" or origin.split("://", 1)[-1] != host:
                problem = (403, f"origin {origin[:100]!r}: cross-site requests are refused")
        if problem is not None:
            return await _error(*problem)(scope, receive, send)
        return await self.app(scope, receive, send)


# ---------------------------------------------------------------------- workers behind the endpoints
def _read(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _attachment(filename: str) -> dict[str, str]:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)
    return {"Content-Disposition": f'attachment; filename="{safe}"'}


def _evaluation_rows(metrics: dict) -> list[dict]:
    """(metric, model value, 95% interval, real-vs-real reference) rows of a run's evaluation."""
    ev = metrics.get("evaluation") or {}
    rows = []
    for key, value in (ev.get("metrics") or {}).items():
        ci = (ev.get("intervals") or {}).get(key)
        rows.append({"key": key, "value": value, "interval": ci, "real": (ev.get("real_data") or {}).get(key)})
    return rows


def _figures(folder: Path) -> dict[str, bool]:
    return {f: (folder / "ui-figures" / f).is_file() for f in ("memorisation.png", "baseline.png")}


def compare_table(runs_dir: Path, names: list[str], run_dir: Callable[[str], Path]) -> dict[str, Any]:
    """The rows of :data:`genlab.compare.TABLE_COLUMNS` for the chosen runs (the real-data
    reference row from their evaluations) and the ranking flips of :func:`genlab.compare.rankings`."""
    from ..compare import REAL_ROW, TABLE_COLUMNS, rankings

    rows: dict[str, dict] = {}
    real: dict[str, float] = {}
    for name in names:
        metrics = _read(run_dir(name) / "metrics.json")
        ev = metrics.get("evaluation") or {}
        values = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values.update({k: v for k, v in (ev.get("metrics") or {}).items() if isinstance(v, (int, float))})
        half = {
            k: (ci[1] - ci[0]) / 2
            for k, ci in (ev.get("intervals") or {}).items()
            if isinstance(ci, (list, tuple)) and len(ci) == 2
        }
        rows[name] = {
            "metrics": {k: (float(v), 0.0) for k, v in values.items()},
            "n": 1,
            "errors": [],
            "intervals": half,
        }
        for k, v in (ev.get("real_data") or {}).items():
            if isinstance(v, (int, float)):
                real.setdefault(k, float(v))
    summary = {"rows": {REAL_ROW: {"metrics": {k: (v, 0.0) for k, v in real.items()}, "n": 1, "errors": []}, **rows}}
    ranking_lines, flips = rankings(summary)
    columns = [c for c in TABLE_COLUMNS if any(c[0] in r["metrics"] for r in summary["rows"].values())]
    table = []
    for name, row in summary["rows"].items():
        if name == REAL_ROW and not real:
            continue
        table.append(
            {
                "name": name,
                "real": name == REAL_ROW,
                "cells": [fmt.format(row["metrics"][k][0]) if k in row["metrics"] else "—" for k, _, fmt in columns],
            }
        )
    plots = []
    for key, title, _ in columns:
        values = {n: rows[n]["metrics"].get(key, (None,))[0] for n in rows}
        if sum(v is not None for v in values.values()) >= 1 and key not in ("fit_seconds",):
            plots.append(bars_svg(title, values, reference=real.get(key)))
    return {
        "names": names,
        "columns": [title for _, title, _ in columns],
        "table": table,
        "rankings": [line.lstrip("- ") for line in ranking_lines],
        "flips": [line.lstrip("- ").replace("**", "") for line in flips],
        "plots": plots,
    }


def generation_params(name: str, model, data: dict) -> tuple[dict, dict, Any]:
    """Bounded, checked generation parameters: (params recorded in the PNG, sample options, y)."""
    info = model_info(model)
    n = get_int(data, "n", 16, 1, L.MAX_GENERATE_IMAGES)
    seed = get_int(data, "seed", None, 0, 2**63 - 1)
    if seed is None:
        seed = secrets.randbelow(2**31)
    params: dict[str, Any] = {"run": name, "model": info["model"], "n": n, "seed": seed}
    y = None
    label = data.get("label")
    if label not in (None, ""):
        if not info["labels"]:
            raise HTTPError(400, f"label: {name} is not class-conditional")
        matches = [c for c in info["labels"] if str(c) == str(label)]
        if not matches:
            raise HTTPError(
                400, f"label: {str(label)[:40]!r} is not a class of {name} ({', '.join(map(str, info['labels']))})"
            )
        y = matches[0]
        params["label"] = y
    prompt = get_prompt(data)
    if prompt is not None:
        if not info["text"]:
            raise HTTPError(400, f"prompt: {name} is not text-conditional")
        params["prompt"] = prompt
    options: dict[str, Any] = {}
    schema = type(model).sample_options
    for key, spec in info["sample_options"].items():
        value = data.get(key)
        if value in (None, ""):
            continue
        if spec["kind"] == "int":
            high = min(spec.get("high") or L.MAX_SAMPLING_STEPS, L.MAX_SAMPLING_STEPS)
            options[key] = get_int(data, key, None, int(spec.get("low") or 0), int(high))
        elif spec["kind"] == "float":
            cap = L.MAX_GUIDANCE if key == "guidance" else L.MAX_TEMPERATURE
            high = min(spec["high"], cap) if isinstance(spec.get("high"), (int, float)) else cap
            options[key] = get_float(data, key, None, float(spec.get("low") or 0.0), float(high))
        elif spec["kind"] == "bool":
            options[key] = value in (True, "true", "on", "1", 1)
        elif spec["kind"] == "choice":
            if value not in spec["choices"]:
                raise HTTPError(400, f"{key}: {str(value)[:40]!r} is not one of {', '.join(map(str, spec['choices']))}")
            options[key] = value
        else:
            raise HTTPError(400, f"{key}: not settable from the web app")
        schema[key].validate(key, options[key])
    params.update(options)
    if prompt is not None:
        options["prompt"] = prompt
    unknown = sorted(set(data) - set(info["sample_options"]) - {"n", "seed", "label", "prompt", "chunk"})
    if unknown:
        raise HTTPError(
            400,
            f"{unknown[0][:40]}: not an option of {info['model']} (options: {', '.join(info['sample_options']) or 'none'})",
        )
    return params, options, y


def draw(
    folder: Path, model, n: int, seed: int, y, options: dict, chunk: int, emit: Callable[[Any], None]
) -> np.ndarray:
    """``sample_run`` with the loaded model, each chunk handed to ``emit`` as it is drawn;
    returns all the images (uint8 (n, C, H, W), read back from the .npy it streamed)."""
    from ..service import sample_run

    with tempfile.TemporaryDirectory(prefix="genlab-ui-") as tmp:
        npy = Path(tmp) / "images.npy"
        sample_run(
            folder,
            n,
            out_npy=npy,
            seed=seed,
            y=y,
            chunk=chunk,
            model=model,
            on_chunk=lambda images, first: emit((first, images)),
            **options,
        )
        return np.load(npy)


_DATA_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_DATA_LOCK = threading.Lock()


def _run_data(folder: Path):
    """The run's dataset (checked against its fingerprint once; the last few kept in memory,
    keyed by the run and its run.json's mtime, so that browsing images is fast)."""
    from ..runs import RunInfo

    stamp = (str(folder.resolve()), (folder / "run.json").stat().st_mtime_ns)
    with _DATA_LOCK:
        if stamp in _DATA_CACHE:
            _DATA_CACHE.move_to_end(stamp)
            return _DATA_CACHE[stamp]
    data = RunInfo.load(folder).load_data()
    with _DATA_LOCK:
        _DATA_CACHE[stamp] = data
        while len(_DATA_CACHE) > 2:
            _DATA_CACHE.popitem(last=False)
    return data


def _run_images(folder: Path):
    """The images of the run's dataset, uint8 (N, C, H, W)."""
    return _run_data(folder).images


def run_edit(action: str, folder: Path, model, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    """One edit through the service layer; returns the PNG of its result strip/grid."""
    import torch

    from ..service import edit_run, inpaint_run, interpolate_run

    shape = tuple(int(s) for s in model.image_shape_)
    with tempfile.TemporaryDirectory(prefix="genlab-ui-") as tmp:
        tmp = Path(tmp)
        out = tmp / "out.png"
        prompt = get_prompt(fields)
        label = fields.get("label") or None
        label_value = int(label) if label is not None and str(label).lstrip("-").isdigit() else None
        if label is not None and label_value is None:
            raise HTTPError(400, f"label: {label[:40]!r} is not a class label")
        common_steps = get_int(fields, "steps", None, 1, L.MAX_SAMPLING_STEPS)
        guidance = get_float(fields, "guidance", None, 0.0, L.MAX_GUIDANCE)
        seed = get_int(fields, "seed", 0, 0, 2**31 - 1)
        if action == "interpolate":
            mode = fields.get("mode") or "slerp"
            if mode not in ("slerp", "linear"):
                raise HTTPError(400, f"mode: {mode[:20]!r}; slerp or linear")
            frames = get_int(fields, "frames", 8, 3, L.MAX_FRAMES)
            inversion = get_int(fields, "inversion_steps", 20, 1, L.MAX_INVERSION_STEPS)
            data_spec, ia, ib = None, get_int(fields, "index_a", 0, 0, 10**9), get_int(fields, "index_b", 1, 0, 10**9)
            if "upload_a" in files or "upload_b" in files:  # the two ends as a tiny dataset of the model's shape
                images = _run_images(folder)
                a = (
                    fit_image(files["upload_a"][1], shape, "upload_a")
                    if "upload_a" in files
                    else _pick(images, ia, "index_a")
                )
                b = (
                    fit_image(files["upload_b"][1], shape, "upload_b")
                    if "upload_b" in files
                    else _pick(images, ib, "index_b")
                )
                np.savez(tmp / "ends.npz", x=np.stack([a, b]))
                data_spec, ia, ib = f"npz:{tmp / 'ends.npz'}", 0, 1
            result = interpolate_run(
                folder,
                out,
                data_spec=data_spec,
                from_index=ia,
                to_index=ib,
                steps=frames - 2,
                mode=mode,
                inversion_steps=inversion,
                prompt=prompt,
            )
            return png_bytes(result.strip, ncols=len(result.strip))
        index_ = get_int(fields, "index", 0, 0, 10**9)
        if action == "inpaint":
            if "mask" not in files:
                raise HTTPError(400, "mask: paint the region to regenerate (a PNG mask)")
            mask = mask_from_png(files["mask"][1], shape[1], shape[2])
            if not mask.any():
                raise HTTPError(400, "mask: empty; paint the region to regenerate")
            from PIL import Image

            Image.fromarray(mask).save(tmp / "mask.png")
            variants = get_int(fields, "variants", 4, 1, L.MAX_VARIANTS)
            result = inpaint_run(
                folder,
                out,
                mask_file=tmp / "mask.png",
                variants=variants,
                indices=[index_],
                label=label_value,
                prompt=prompt,
                guidance=guidance,
                steps=common_steps,
                seed=seed,
            )
            return png_bytes(result.grid, ncols=2 + variants)
        if action == "sdedit":
            strength = get_float(fields, "strength", 0.5, 0.0, 1.0)
            result = edit_run(
                folder,
                out,
                strengths=[strength],
                indices=[index_],
                label=label_value,
                prompt=prompt,
                guidance=guidance,
                steps=common_steps,
                seed=seed,
            )
            return png_bytes(result.grid, ncols=2)
        # attribute: the direction from the other classes towards class ``attribute``
        from ..manipulate.attributes import apply_attribute, attribute_vector
        from ..runs import RunInfo

        train, _ = RunInfo.load(folder).load_split()
        if train.labels is None:
            raise HTTPError(400, "attribute: the run's data has no labels to define attributes with")
        target = get_int(fields, "attribute", None, 0, 10**6)
        if target is None:
            raise HTTPError(400, "attribute: choose a class")
        scale = get_float(fields, "scale", 1.0, -L.MAX_TEMPERATURE, L.MAX_TEMPERATURE)
        sub = train.images[:2000]
        labels = (train.labels[:2000] == target).to(torch.int64)
        if int(labels.sum()) == 0:
            raise HTTPError(400, f"attribute: no training image has label {target}")
        vector = attribute_vector(model, sub, labels, 1, 0)
        source = _pick(_run_images(folder), index_, "index")[None]
        strengths = [0.0, scale / 2, scale]
        out_images = torch.cat(
            [torch.from_numpy(source)] + [apply_attribute(model, source, vector, s) for s in strengths]
        )
        return png_bytes(out_images, ncols=len(out_images))


def _pick(images, index: int, field: str) -> np.ndarray:
    if index >= len(images):
        raise HTTPError(400, f"{field}: {index} is past the last image ({len(images) - 1})")
    return images[index].numpy()


def train_spec(
    runs_dir: Path, roots: list[Path], fields: dict[str, Any], files: dict[str, tuple[str, bytes]]
) -> dict[str, Any]:
    """A training job's arguments from the train form, every value checked (see
    :func:`genlab.ui.jobs.fit_command` for how they become a ``genlab fit`` command)."""
    from ..models.registry import get_model_class
    from .uploads import save_upload

    model_name = str(fields.get("model") or "")
    try:
        cls = get_model_class(model_name)
    except GenlabError as exc:
        raise HTTPError(400, f"model: {exc}") from None
    name = check_run_name(str(fields.get("run_name") or ""), "run_name")
    target = runs_dir / name
    if target.exists() or target.is_symlink():
        raise HTTPError(409, f"run_name: {name} exists; choose another name")
    data = str(fields.get("data") or "digits")
    if data in DATASETS:
        spec = data
    elif data in ("npz", "folder", "path"):
        text = str(fields.get("data_path") or "")
        kind, sep, rest = text.partition(":")
        if sep and kind in ("npz", "folder"):
            path = data_path(rest, roots, "data_path")
        else:
            path = data_path(text, roots, "data_path")
            kind = "folder" if path.is_dir() else "npz"
        spec = f"{kind}:{path}"
    elif data == "upload":
        if "data_upload" not in files:
            raise HTTPError(400, "data_upload: choose a .npz or .zip file")
        filename, content = files["data_upload"]
        spec = save_upload(runs_dir, filename, content)
    else:
        raise HTTPError(400, f"data: {data[:40]!r}; choose {', '.join(DATASETS)}, path or upload")
    defaults = cls().get_params()
    neural = "checkpoint_every" in defaults
    params: dict[str, Any] = {}
    schema = cls.parameter_schema
    for key, value in fields.items():
        if not key.startswith("param-") or value in (None, ""):
            continue
        pname = key[len("param-") :]
        if pname not in schema:
            raise HTTPError(400, f"{key}: {model_name} has no parameter {pname[:40]!r}")
        if pname in (
            "checkpoint_dir",
            "device",
            "condition",
            "preset",
            "max_steps",
            "epochs",
            "checkpoint_every",
            "sample_every",
        ):
            continue  # set by the form's own fields or by the server
        params[pname] = schema[pname].validate(pname, _parse_field(value, schema[pname]))
    condition = str(fields.get("condition") or "none")
    if condition not in cls.conditionings:
        raise HTTPError(400, f"condition: {model_name} supports {', '.join(cls.conditionings)}")
    preset = str(fields.get("preset") or "") or None
    if preset is not None and (not neural or preset not in ("auto", "quick", "full")):
        raise HTTPError(400, f"preset: {preset[:20]!r}; neural models take auto, quick or full")
    max_steps = get_int(fields, "max_steps", None, 1, L.MAX_TRAIN_STEPS)
    if max_steps is not None and not neural:
        max_steps = None  # classical models are not trained in steps
    checkpoint_every = get_int(fields, "checkpoint_every", None, 1, L.MAX_TRAIN_STEPS) if neural else None
    if neural and checkpoint_every is None:
        checkpoint_every = max(1, min(200, (max_steps or 1000) // 10))
    score_images = get_int(fields, "score_images", None, 0, 100_000)
    n_samples = get_int(fields, "n_samples", 64, 1, L.MAX_GENERATE_IMAGES)
    seed = get_int(fields, "seed", 0, 0, 2**63 - 1)
    return {
        "model": model_name,
        "data": spec,
        "name": name,
        "params": params,
        "condition": None if condition == "none" else condition,
        "preset": preset,
        "max_steps": max_steps,
        "checkpoint_every": checkpoint_every,
        "sample_every": 1 if neural else None,
        "score_images": score_images,
        "n_samples": n_samples,
        "seed": seed,
        "neural": neural,
    }


def _parse_field(text: Any, param) -> Any:
    """A form field (text) as the kind its Param declares."""
    if not isinstance(text, str):
        return text
    text = text.strip()
    if text.lower() in ("none", "null") and param.nullable:
        return None
    kind = param.kind
    try:
        if kind == "int":
            return int(text) if not param.choices or text not in param.choices else text
        if kind == "float":
            return float(text) if not param.choices or text not in param.choices else text
    except ValueError:
        raise GenlabError(f"{text[:40]!r} is not a number ({param.describe()})") from None
    if kind == "bool":
        if text.lower() in ("true", "on", "1", "yes"):
            return True
        if text.lower() in ("false", "off", "0", "no"):
            return False
        raise GenlabError(f"{text[:40]!r}: expected true or false")
    if kind == "int_list":
        try:
            return [int(v) for v in text.strip("[]()").split(",") if v.strip()]
        except ValueError:
            raise GenlabError(f"{text[:40]!r}: expected integers separated by commas") from None
    if kind == "choice":
        for c in param.choices:
            if str(c) == text:
                return c
    if kind == "array":
        raise GenlabError("array-valued parameters cannot be set from the web app")
    return text
