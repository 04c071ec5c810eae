//go:build tools

// Package tools pins the Kubernetes commands the tests run: kube-apiserver
// and a kubectl of the same version. Built by `make controlplane`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
