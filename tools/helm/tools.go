//go:build tools

// Package tools pins the helm command that `make chart` and the chart's
// integration test run. Built by tools/helm/build.sh.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
