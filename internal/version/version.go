package version

import (
	"runtime/debug"
	"strings"
)

// Release is the makuo release both commands and the Debian package carry.
const Release = "0.1.0"

// Line is the --version output of the command name: "name RELEASE", then
// in parentheses the commit it was built from ("+modified" when the tree
// had uncommitted changes), the commit's time and the Go version, as far
// as the binary knows them (`go test` and `go run` binaries have no VCS
// stamp; `go build -buildvcs=false` neither).
func Line(name string) string {
	bi, _ := debug.ReadBuildInfo() // nil without build information
	return format(name, bi)
}

func format(name string, bi *debug.BuildInfo) string {
	line := name + " " + Release
	if bi == nil {
		return line
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	switch {
	case rev == "":
		parts = append(parts, "no VCS stamp")
	case modified:
		parts = append(parts, rev+"+modified")
	default:
		parts = append(parts, rev)
	}
	if when != "" {
		parts = append(parts, when)
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	return line + " (" + strings.Join(parts, ", ") + ")"
}
