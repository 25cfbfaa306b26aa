package tree

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecheckUnit: the names of a directory that need their content read
// go in units of at most recheckUnitNames names and recheckUnitBytes of
// content, a larger file alone; every name is in exactly one unit.
func TestRecheckUnit(t *testing.T) {
	small := func(n int, size int64) []rechecked {
		out := make([]rechecked, n)
		for i := range out {
			out[i] = rechecked{name: fmt.Sprint(i), size: size}
		}
		return out
	}
	const mib = 1 << 20
	tests := []struct {
		name  string
		names []rechecked
		units []int
	}{
		{"one", small(1, 10), []int{1}},
		{"many small", small(recheckUnitNames+10, 4096), []int{recheckUnitNames, 10}},
		{"bytes bound", small(5, mib/2), []int{2, 2, 1}},
		{"large alone", []rechecked{{"a", 10}, {"big", 3 * mib}, {"b", 10}, {"c", 10}}, []int{1, 1, 2}},
		{"large first", []rechecked{{"big", 3 * mib}, {"b", 10}}, []int{1, 1}},
		{"bad size", []rechecked{{"a", -5}, {"b", 10}}, []int{2}},
	}
	for _, tt := range tests {
		var got []int
		for rest := tt.names; len(rest) > 0; {
			n := recheckUnit(rest)
			if n < 1 || n > len(rest) {
				t.Fatalf("%s: unit of %d of %d names", tt.name, n, len(rest))
			}
			got = append(got, n)
			rest = rest[n:]
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.units) {
			t.Errorf("%s: units %v, want %v", tt.name, got, tt.units)
		}
	}
}

// TestScanNewFilesInUnits: a scan that finds a directory full of new
// files, more than a unit holds and some larger than a unit's bytes,
// records every one of them as the path-based reference sees it.
func TestScanNewFilesInUnits(t *testing.T) {
	dir := t.TempDir()
	var ops []op
	var paths []string
	for i := range recheckUnitNames + 44 {
		p := filepath.Join("d", "e", fmt.Sprintf("f%04d", i))
		size := 100 + i
		if i%97 == 0 {
			size = recheckUnitBytes + i // a unit alone
		}
		ops = append(ops, writeFile(p, strings.Repeat(string(rune('a'+i%26)), size)))
		paths = append(paths, p)
	}
	apply(t, dir, ops...)
	x := newIndex(t, dir, Options{})
	st := scan(t, x)
	if st.FilesHashed != len(paths) {
		t.Fatalf("FilesHashed %d, want %d", st.FilesHashed, len(paths))
	}
	for _, p := range paths {
		got, ok := x.Lookup(p)
		if want := reference(t, dir, p); !ok || !equalEntry(got, want) {
			t.Fatalf("%s: indexed %+v (%v), want %+v", p, got, ok, want)
		}
	}
}
