package stage

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// Limits enforced by CheckPath. They are Linux's NAME_MAX and PATH_MAX - 1
// (PATH_MAX counts the terminating NUL).
const (
	MaxNameLen = 255
	MaxPathLen = 4095
)

// Temp-file names are TempPrefix, 16 lower-case hex digits, TempSuffix:
// ".makuo-0123456789abcdef.tmp", 27 bytes, so a temp file fits beside a
// target whose name has the maximum length.
const (
	TempPrefix = ".makuo-"
	TempSuffix = ".tmp"
	tempHexLen = 16
	tempLen    = len(TempPrefix) + tempHexLen + len(TempSuffix)
)

// CheckPath reports whether rel is acceptable as a path relative to the base
// directory, as received from the network. It returns nil or an error
// wrapping ErrBadPath that states the reason.
//
// Rejected: the empty path, absolute paths, paths that are not in clean form
// (empty elements as in "a//b", a trailing or leading slash, "." elements),
// ".." elements, NUL bytes, elements longer than MaxNameLen bytes, paths
// longer than MaxPathLen bytes, and elements matching the stage's temp-file
// name pattern (see IsTempName). The base directory itself cannot be named.
//
// Accepted: any other byte, including spaces, newlines, backslashes and
// bytes that are not valid UTF-8.
//
// An accepted path joined under a base with filepath.Join stays under the
// base lexically. Symbolic links are a separate matter, handled by Dir.
func CheckPath(rel string) error {
	switch {
	case rel == "":
		return badPath(rel, "empty")
	case len(rel) > MaxPathLen:
		return badPath(rel, fmt.Sprintf("longer than %d bytes", MaxPathLen))
	case strings.IndexByte(rel, 0) >= 0:
		return badPath(rel, "contains a NUL byte")
	case rel[0] == '/':
		return badPath(rel, "absolute")
	}
	for elem := range strings.SplitSeq(rel, "/") {
		switch {
		case elem == "":
			return badPath(rel, "empty element (trailing slash or //)")
		case elem == ".":
			return badPath(rel, `"." element`)
		case elem == "..":
			return badPath(rel, `".." element`)
		case len(elem) > MaxNameLen:
			return badPath(rel, fmt.Sprintf("element longer than %d bytes", MaxNameLen))
		case IsTempName(elem):
			return badPath(rel, "element uses the reserved temp-file name pattern")
		}
	}
	return nil
}

// IsTempName reports whether name, a single path element, matches the
// temp-file name pattern ".makuo-<16 lower-case hex digits>.tmp". A watcher
// should ignore such names: they are the stage's work in progress.
func IsTempName(name string) bool {
	if len(name) != tempLen || !strings.HasPrefix(name, TempPrefix) || !strings.HasSuffix(name, TempSuffix) {
		return false
	}
	for _, c := range []byte(name[len(TempPrefix) : len(TempPrefix)+tempHexLen]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newTempName returns a fresh random temp-file name.
func newTempName() string {
	var b [tempHexLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go 1.24+).
	return TempPrefix + hex.EncodeToString(b[:]) + TempSuffix
}

// badPath wraps ErrBadPath with a shortened, quoted rel and the reason.
func badPath(rel, reason string) error {
	const show = 96
	if len(rel) > show {
		rel = rel[:show] + "..."
	}
	return fmt.Errorf("%w: %q: %s", ErrBadPath, rel, reason)
}
