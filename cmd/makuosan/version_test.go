package main

import (
	"testing"

	"github.com/makuo/makuo/internal/version"
	"github.com/makuo/makuo/replicator"
)

// The node announces replicator.Version to the group and the commands print
// version.Release: they must be one number.
func TestReleaseIsTheNodeVersion(t *testing.T) {
	if version.Release != replicator.Version {
		t.Fatalf("internal/version.Release %q != replicator.Version %q", version.Release, replicator.Version)
	}
}
