//go:build race

package sim

// raceBuild: the race detector slows a run about tenfold; `make race`
// runs a few seeds, `make sim` the thousands.
const raceBuild = true
