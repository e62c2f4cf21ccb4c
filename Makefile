# Datalabs: `make demo` runs the embedded hub with the demo catalogue, `make test` runs the tests.
# Every target installs what it needs itself and is safe to run again.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# tigervnc-standalone-server, openbox and topcat (with Java) make the TOPCAT desktop datalab;
# x11-utils gives the desktop test xwininfo; bubblewrap is DatalabsLocalSpawner.sandbox.
# debootstrap builds the images' base (make images); containerd, runc and the CNI plugins run
# them on the test cluster's kubelet node.
APT_PACKAGES := bubblewrap fuse3 chromium chromium-driver tigervnc-standalone-server openbox topcat x11-utils \
	debootstrap containerd runc containernetworking-plugins iptables
PYTEST_ARGS ?=

.PHONY: demo test bench system venv labextension sample-data cluster images calrissian-venv lint clean \
	conformance-cluster

## System packages (Debian) and configurable-http-proxy (npm). Skipped when already present.
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v configurable-http-proxy >/dev/null || npm install -g --no-fund --no-audit configurable-http-proxy

## The Python environment: the package in editable mode with its test extras.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

## The JupyterLab front end (TypeScript in jupyterlab_ext/), rebuilt when its sources change and
## linked into the environment so that the running JupyterLab serves this build.
FRONTEND_SRC := $(shell find jupyterlab_ext/src jupyterlab_ext/style -type f 2>/dev/null) \
	jupyterlab_ext/package.json jupyterlab_ext/tsconfig.json
VENV_BIN := $(abspath $(VENV))/bin
labextension: $(VENV)/.labextension

$(VENV)/.labextension: $(VENV)/.installed $(FRONTEND_SRC)
	cd jupyterlab_ext && PATH=$(VENV_BIN):$$PATH jlpm install && PATH=$(VENV_BIN):$$PATH jlpm build:prod
	PATH=$(VENV_BIN):$$PATH $(VENV_BIN)/jupyter-builder develop --overwrite jupyterlab_ext
	touch $@

## The demo archive (PDS4 products, SPICE kernels, a source catalogue), generated, never committed.
sample-data: venv
	$(PY) config/sample-data/make_sample_data.py .demo/archive

## The test cluster's binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
## kubelet, kube-network-policies, kwok, helm), built from their Go modules at the versions pinned in config/kubernetes/cluster/*/go.mod
## into a cache outside the repository (DATALABS_CLUSTER_BIN, default
## /var/cache/datalabs-cluster/bin); rebuilt only when a go.mod or go.sum changes.
cluster:
	bash config/kubernetes/cluster/build.sh

## The container images (config/images/*/image.toml and the pod sandbox's pause), built without
## Docker from Debian packages (debootstrap) and PyPI into a cache outside the repository
## (DATALABS_IMAGES_DIR, default /var/cache/datalabs-images); rebuilt only when what goes into one
## changes. Needs root (chroot, overlay mounts).
images: system venv labextension
	$(PY) config/images/build.py

## Calrissian from PyPI in a venv of its own (it pins cwltool and kubernetes versions that the
## project's venv does not use): the k8s tests build step pods with its real builders.
calrissian-venv: .venv-calrissian/.installed

.venv-calrissian/.installed:
	test -x .venv-calrissian/bin/python || $(PYTHON) -m venv .venv-calrissian
	.venv-calrissian/bin/pip install -q calrissian==0.18.1
	touch $@

demo: system venv labextension sample-data
	cd config && ../$(PY) -m jupyterhub -f jupyterhub_config.py

test: system venv labextension cluster images calrissian-venv
	cd jupyterlab_ext && PATH=$(VENV_BIN):$$PATH jlpm test
	$(PY) -m pytest $(PYTEST_ARGS)

## The CWL v1.2 conformance tests tagged `required` as cluster runs on the test cluster's real
## kubelet node, each a Calrissian Job of the run broker (tests/k8s/conformance_runs.py):
## prints "N of M required tests pass" and each failure with its reason. Needs root; 412 s
## measured with 3 Jobs at a time (6-23 s a test). CONFORMANCE_ARGS, e.g. `-j 2` (Jobs at a time),
## `-k scatter`, `--limit 10`, `--json results.json`.
CONFORMANCE_ARGS ?=
conformance-cluster: system venv cluster images
	$(PY) -m tests.k8s.conformance_runs $(CONFORMANCE_ARGS)

bench: system venv sample-data
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

MYPY_MODULES := datalabs_volumes/models.py datalabs_volumes/catalogue.py datalabs_volumes/access.py \
	datalabs_volumes/contract.py \
	datalabs_volumes/mount/kubernetes.py datalabs_spawner/options.py datalabs_spawner/catalogue.py \
	datalabs_spawner/sandbox.py datalabs_pipelines/graph.py datalabs_pipelines/crate.py \
	datalabs_pipelines/executors/kubernetes.py

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --ignore-missing-imports $(MYPY_MODULES)
	$(VENV)/bin/hadolint config/images/*/Dockerfile

clean:
	rm -rf $(VENV) .demo tests/artifacts jupyterlab_ext/labextension jupyterlab_ext/lib \
	  jupyterlab_ext/node_modules
