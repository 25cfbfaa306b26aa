// Command makuosan is the makuo daemon: it keeps a base directory identical
// on every member of a multicast group. See the README and `makuosan -h`.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}
