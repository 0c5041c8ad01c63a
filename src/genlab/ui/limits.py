"""Every bound the web app puts on what a request may ask for (one place, documented).

A request beyond a limit is answered ``{"error": ...}`` with status 400 (a value out of
range) or 413 (too many bytes); nothing is truncated silently.
"""

from __future__ import annotations

#: images per generate request (the grid shows all of them; the CLI writes more with --npy)
MAX_GENERATE_IMAGES = 256
#: images per streamed chunk of a generate request (the first tiles appear after one chunk)
GENERATE_CHUNK = 16
#: sampling steps per call (generate, SDEdit, inpaint); the models cap at their own maximum too
MAX_SAMPLING_STEPS = 1_000
#: characters of a prompt
MAX_PROMPT_CHARS = 500
#: classifier-free guidance scale (the range of the slider)
MAX_GUIDANCE = 20.0
#: latent temperature / truncation psi
MAX_TEMPERATURE = 10.0
#: bytes of an uploaded training set (.npz or .zip of images)
MAX_DATA_UPLOAD_BYTES = 64 * 1024 * 1024
#: bytes of an uploaded image (interpolation ends, a PNG to read parameters from, a mask)
MAX_IMAGE_UPLOAD_BYTES = 4 * 1024 * 1024
#: pixels per side of an uploaded image (before it is fitted to the model's image size)
MAX_IMAGE_SIDE = 1_024
#: files in an uploaded zip of images, and their total unpacked bytes
MAX_ZIP_FILES = 20_000
MAX_ZIP_UNPACKED_BYTES = 256 * 1024 * 1024
#: images in an interpolation strip (ends included)
MAX_FRAMES = 32
#: inversion steps of an interpolation (diffusion: DDIM steps each way)
MAX_INVERSION_STEPS = 200
#: inpainting variants per request
MAX_VARIANTS = 8
#: optimiser steps of a training job started from the page
MAX_TRAIN_STEPS = 1_000_000
#: training jobs waiting in the queue (the running one not counted)
MAX_QUEUED_JOBS = 16
#: samples of an evaluation started from the page
MAX_EVAL_SAMPLES = 10_000
#: loaded models kept in memory (least recently used dropped first)
MODEL_CACHE_SIZE = 4
#: finished generations kept for download (least recently made dropped first)
GENERATION_CACHE_SIZE = 32
#: bytes of a JSON request body
MAX_JSON_BYTES = 64 * 1024
#: characters of a run name (``[A-Za-z0-9._-]``, not starting with a dot)
MAX_RUN_NAME = 100
#: rows of a training log drawn as a curve (longer logs are thinned evenly)
MAX_CURVE_POINTS = 500

#: every limit by name, for the report and the API (``GET /api/limits``)
LIMITS = {k: v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, (int, float))}
