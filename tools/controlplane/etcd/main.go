// Command etcd is the upstream etcd server, built from its Go module so the
// tests need no downloaded release binary. Built by `make controlplane`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
