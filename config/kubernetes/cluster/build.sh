#!/usr/bin/env bash
# Build the test cluster's binaries from their Go modules (`make cluster`): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet (the real node), kube-network-policies (the
# NetworkPolicy agent beside that kubelet), kwok and helm, at the versions pinned in the go.mod
# files beside this script. Output goes to a cache outside the repository
# ($DATALABS_CLUSTER_BIN, default /var/cache/datalabs-cluster/bin); a binary is rebuilt only when
# its go.mod or go.sum changed. Needs `go` on the PATH and the Go module proxy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Go may be installed without being on a non-login PATH
PATH=$PATH:/usr/local/go/bin
bin=${DATALABS_CLUSTER_BIN:-/var/cache/datalabs-cluster/bin}
if ! command -v go >/dev/null; then
  echo "make cluster: 'go' is not on the PATH; the test cluster is built from Go modules" >&2
  exit 1
fi
mkdir -p "$bin"

# build MODULE_DIR NAME PACKAGE: one binary, skipped when its stamp matches go.mod + go.sum.
build() {
  local dir=$here/$1 name=$2 package=$3
  local stamp
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  echo "make cluster: building $name ($package)"
  local start=$SECONDS
  (cd "$dir" && go build -o "$bin/$name.new" "$package")
  mv "$bin/$name.new" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
  echo "make cluster: $name built in $((SECONDS - start)) s"
}

build etcd etcd go.etcd.io/etcd/server/v3
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build k8s kubelet k8s.io/kubernetes/cmd/kubelet
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build netpol kube-network-policies sigs.k8s.io/kube-network-policies/cmd
build helm helm helm.sh/helm/v4/cmd/helm
echo "make cluster: binaries in $bin"
