package main

import (
	"strconv"
	"strings"

	"github.com/makuo/makuo/replicator/control"
)

// size formats a byte count as the status page does.
func size(n uint64) string { return control.Bytes(n) }

// count is "1 path", "2 paths": n and the noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// quotePath shows a path on one line even when it holds a newline or
// bytes that are not UTF-8.
func quotePath(p string) string {
	if strconv.CanBackquote(p) && !strings.ContainsAny(p, " \t") {
		return p
	}
	return strconv.Quote(p)
}
