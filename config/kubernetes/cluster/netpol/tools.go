//go:build tools

// Pins the NetworkPolicy agent of the test cluster's real node (tests/kubelet_node.py) for
// `make cluster`.
package tools

import _ "sigs.k8s.io/kube-network-policies/cmd"
