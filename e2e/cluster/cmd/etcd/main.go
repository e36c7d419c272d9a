// Command etcd is the etcd server at the version the pinned Kubernetes release
// uses. etcd's own main module cannot be `go install`ed (its go.mod has
// replace directives), so this wrapper calls the same entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
