// Package netiftest finds network interfaces that tests of the transport
// need, so that each test package does not carry its own copy of the search.
package netiftest
