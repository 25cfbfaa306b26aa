// Command msync asks the local makuosan to push files to the other members,
// and reports on the cluster. See `msync -h`.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], sys{
		env: os.Environ(), stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		defaultTargets: defaultTargets(),
	}))
}
