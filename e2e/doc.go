// Package e2e holds makuo's end-to-end tests: real makuosan daemons in a lab
// of network namespaces (deploy/lab/lab.sh), real multicast, real files.
//
// The tests need root. Outside CI they are skipped with the reason when run
// unprivileged; with CI=true a missing prerequisite fails the run, since a
// skipped network test proves nothing. The one exception is what no
// package can install: the routed lab is skipped, even in CI, on a kernel
// built without multicast routing.
package e2e
