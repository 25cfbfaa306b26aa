// Package version holds the makuo release number and renders the
// --version line of makuosan and msync from it and from the VCS stamp the
// go command writes into every binary it builds from a checkout
// (runtime/debug.ReadBuildInfo: vcs.revision, vcs.time, vcs.modified). So
// the revision and build date are never written by hand nor passed with
// -ldflags, and both commands print the same thing.
package version
