package main

import (
	"fmt"
	"strconv"
	"strings"
)

// size formats a byte count with binary units, as large as fits: 512 B,
// 1.5 KiB, 200.0 MiB, 3.0 GiB.
func size(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, 0
	for v >= 1024 && unit < 4 {
		v /= 1024
		unit++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[unit])
}

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
