#!/usr/bin/env bash
# Builds (once) the binaries of the e2e control plane from the Go module proxy and caches them under
# $KUBESCIENTIST_CACHE (default ~/.cache/kubescientist). Every step is skipped when its output exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
CACHE=${KUBESCIENTIST_CACHE:-$HOME/.cache/kubescientist}
BIN=$CACHE/bin
mkdir -p "$BIN"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOPATH=${GOPATH:-$CACHE/gopath}
log() { printf '[cluster-build %(%T)T] %s\n' -1 "$*"; }

build_kubernetes() {
  local stamp="$BIN/.k8s-$K8S"
  [[ -f $stamp ]] && { log "kubernetes $K8S cached"; return; }
  local staging="v0.${K8S#v1.}" minor
  minor=$(cut -d. -f2 <<<"$K8S")
  local mod="$CACHE/src/k8s-$K8S"
  mkdir -p "$mod" && cd "$mod"
  [[ -f go.mod ]] || { go mod init local/k8sbins >/dev/null; go mod edit -go=1.26; }
  log "resolving k8s.io/kubernetes@$K8S"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])')
  # Replace every staging module the upstream go.mod maps to ./staging, at the matching published version.
  for m in $(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}'); do
    go mod edit -replace="$m=$m@$staging"
  done
  go mod edit -require="k8s.io/kubernetes@$K8S"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  log "go mod tidy (downloads modules)"
  go mod tidy
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=$K8S -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%FT%TZ)"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler"
  go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  "$BIN/kube-apiserver" --version
  touch "$stamp"
}

build_etcd() {
  local stamp="$BIN/.etcd-$ETCD"
  [[ -f $stamp ]] && { log "etcd $ETCD cached"; return; }
  local mod="$CACHE/src/etcd-$ETCD"
  mkdir -p "$mod" && cd "$mod"
  [[ -f go.mod ]] || { go mod init local/etcdbin >/dev/null; go mod edit -go=1.26; }
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy
  log "building etcd $ETCD"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  touch "$stamp"
}

build_kwok() {
  local stamp="$BIN/.kwok-$KWOK"
  [[ -f $stamp ]] && { log "kwok $KWOK cached"; return; }
  log "building kwok $KWOK"
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  touch "$stamp"
}

build_kubernetes
build_etcd
build_kwok
log "all binaries in $BIN"
