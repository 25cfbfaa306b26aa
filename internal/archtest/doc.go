// Package archtest enforces the repository's structure rules as tests:
// every package has a doc.go with a package comment, and imports follow the
// dependency direction of STYLE.md (cmd/msync links only the control API;
// watcher, wire, chunk, stage and metrics stay leaves).
package archtest
