package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// treeInfo summarises a tree: its regular files' count, total size, size
// of each (by slash path), subdirectories, and a hash of names and
// contents.
type treeInfo struct {
	files, dirs int
	bytes       int64
	sizes       map[string]int64
	sum         [32]byte
}

func scan(t *testing.T, root string) treeInfo {
	t.Helper()
	ti := treeInfo{sizes: map[string]int64{}}
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if p != root {
				ti.dirs++
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ti.files++
		ti.bytes += int64(len(b))
		ti.sizes[filepath.ToSlash(rel)] = int64(len(b))
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	copy(ti.sum[:], h.Sum(nil))
	return ti
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name   string
		args   []string // "D" stands for the test's directory
		status int
		files  int
		dirs   int
		bytes  int64 // -1: not checked (random sizes)
		each   map[string]int64
		max    int64 // every file at most this long, when > 0
	}{
		{name: "file plain bytes", args: []string{"file", "D/f", "12345"}, files: 1, bytes: 12345},
		{name: "file suffix", args: []string{"file", "D/f", "3M"}, files: 1, bytes: 3 << 20},
		{name: "file empty", args: []string{"file", "D/f", "0"}, files: 1, bytes: 0},
		{name: "mixed powers of two", args: []string{"mixed", "D/m", "40", "4"}, files: 40, dirs: 5,
			bytes: 2 * (1<<20 - 1),
			each:  map[string]int64{"m/d0000/f0000000": 1, "m/d0000/f0000009": 512, "m/d0003/f0000039": 512 << 10}},
		{name: "small uniform", args: []string{"small", "D/s", "200", "7", "8K"}, files: 200, dirs: 8, bytes: -1, max: 8 << 10},
		{name: "small more dirs than files", args: []string{"small", "D/s", "2", "5", "100"}, files: 2, dirs: 6, bytes: -1, max: 100},
		{name: "fixed exact size", args: []string{"fixed", "D/x", "30", "4", "4K"}, files: 30, dirs: 5, bytes: 30 * 4096,
			each: map[string]int64{"x/d0000/f0000000": 4096, "x/d0003/f0000029": 4096}},
		{name: "fixed empty files", args: []string{"fixed", "D/x", "3", "1", "0"}, files: 3, dirs: 2, bytes: 0},
		{name: "fixed without size", args: []string{"fixed", "D/x", "3", "1"}, status: 2},
		{name: "fixed size over 1T", args: []string{"fixed", "D/x", "1", "1", "2T"}, status: 2},
		{name: "patch bad gen", args: []string{"patch", "D/f", "4K", "x"}, status: 2},
		{name: "patch missing file", args: []string{"patch", "D/f", "4K", "1"}, status: 1},
		{name: "modify list without file", args: []string{"modify", "-list"}, status: 2},
		{name: "no arguments", args: nil, status: 2},
		{name: "unknown subcommand", args: []string{"big", "D/x"}, status: 2},
		{name: "missing argument", args: []string{"mixed", "D/m", "10"}, status: 2},
		{name: "bad size suffix", args: []string{"file", "D/f", "1Q"}, status: 2},
		{name: "negative size", args: []string{"file", "D/f", "-1"}, status: 2},
		{name: "size overflows", args: []string{"file", "D/f", "9999999999T"}, status: 2},
		{name: "huge maxsize", args: []string{"small", "D/s", "1", "1", "9223372036854775807"}, status: 2},
		{name: "zero dirs", args: []string{"small", "D/s", "10", "0", "1K"}, status: 2},
		{name: "pct over 100", args: []string{"modify", "D", "101", "1"}, status: 2},
		{name: "negative gen", args: []string{"modify", "D", "1", "-1"}, status: 2},
		{name: "unwritable path", args: []string{"file", "D/no/such/dir/f", "1"}, status: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.Replace(a, "D", dir, 1)
			}
			if got := run(args, &stdout, &stderr); got != tc.status {
				t.Fatalf("run(%q) = %d, want %d; stderr %q", tc.args, got, tc.status, stderr.String())
			}
			if tc.status != 0 {
				if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.HasPrefix(stderr.String(), "benchdata: ") {
					t.Errorf("stderr is not one benchdata: line: %q", stderr.String())
				}
				return
			}
			ti := scan(t, dir)
			if ti.files != tc.files || ti.dirs != tc.dirs {
				t.Errorf("%d files in %d dirs, want %d in %d", ti.files, ti.dirs, tc.files, tc.dirs)
			}
			if tc.bytes >= 0 && ti.bytes != tc.bytes {
				t.Errorf("%d bytes, want %d", ti.bytes, tc.bytes)
			}
			for p, want := range tc.each {
				if got, ok := ti.sizes[p]; !ok || got != want {
					t.Errorf("%s: %d bytes (exists %v), want %d", p, got, ok, want)
				}
			}
			distinct := map[int64]bool{}
			for p, sz := range ti.sizes {
				if tc.max > 0 && sz > tc.max {
					t.Errorf("%s: %d bytes, more than %d", p, sz, tc.max)
				}
				distinct[sz] = true
			}
			if tc.max > 0 && len(ti.sizes) > 20 && len(distinct) < len(ti.sizes)/2 {
				t.Errorf("only %d distinct sizes among %d files: not uniform", len(distinct), len(ti.sizes))
			}
			// Deterministic: the same arguments write the same tree again.
			again := t.TempDir()
			for i, a := range tc.args {
				args[i] = strings.Replace(a, "D", again, 1)
			}
			if run(args, &stdout, &stderr) != 0 || scan(t, again).sum != ti.sum {
				t.Errorf("a second run wrote a different tree")
			}
		})
	}
}

func TestModify(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if run([]string{"small", dir, "300", "3", "10K"}, &out, &errb) != 0 {
		t.Fatal(errb.String())
	}
	if run([]string{"file", filepath.Join(dir, "empty"), "0"}, &out, &errb) != 0 {
		t.Fatal(errb.String())
	}
	read := func() map[string]string {
		m := map[string]string{}
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				m[p] = string(b)
			}
			return err
		})
		return m
	}
	tests := []struct {
		pct, gen string
		files    int // files that must differ from the previous state
		wantLine string
	}{
		{pct: "10", gen: "1", files: 30, wantLine: "modified 30 of 301 files, "},
		{pct: "10", gen: "2", files: 30, wantLine: "modified 30 of 301 files, "},
		{pct: "0.01", gen: "3", files: 1, wantLine: "modified 1 of 301 files, "},
		{pct: "0", gen: "4", files: 0, wantLine: "modified 0 of 301 files, 0 bytes"},
		{pct: "100", gen: "5", files: 301, wantLine: "modified 301 of 301 files, "},
	}
	prev := read()
	var firstGen1 []string
	for _, tc := range tests {
		out.Reset()
		if got := run([]string{"modify", dir, tc.pct, tc.gen}, &out, &errb); got != 0 {
			t.Fatalf("modify %s %s: status %d, %s", tc.pct, tc.gen, got, errb.String())
		}
		if !strings.HasPrefix(out.String(), tc.wantLine) {
			t.Errorf("modify %s %s printed %q, want %q...", tc.pct, tc.gen, out.String(), tc.wantLine)
		}
		cur := read()
		var changed []string
		for p, b := range cur {
			if prev[p] != b {
				changed = append(changed, p)
				if len(prev[p]) == 0 && len(b) != 100 || len(prev[p]) > 0 && len(b) != len(prev[p]) {
					t.Errorf("%s: %d bytes became %d", p, len(prev[p]), len(b))
				}
			}
		}
		if len(changed) != tc.files {
			t.Errorf("modify %s %s changed %d files, want %d", tc.pct, tc.gen, len(changed), tc.files)
		}
		if tc.gen == "1" {
			firstGen1 = changed
		}
		prev = cur
	}
	// Generation 1 again picks the same files as the first time.
	out.Reset()
	run([]string{"modify", dir, "10", "1"}, &out, &errb)
	cur := read()
	for _, p := range firstGen1 {
		if cur[p] == prev[p] {
			t.Errorf("modify 10 1 again did not change %s", p)
		}
	}
}

// TestFixedSizes checks that fixed writes every file with exactly the size
// asked for and different contents.
func TestFixedSizes(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"fixed", dir, "50", "3", "4096"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	seen := map[string]string{}
	ti := scan(t, dir)
	for p, sz := range ti.sizes {
		if sz != 4096 {
			t.Errorf("%s: %d bytes, want 4096", p, sz)
		}
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if q, ok := seen[string(b)]; ok {
			t.Errorf("%s repeats %s", p, q)
		}
		seen[string(b)] = p
	}
	if len(ti.sizes) != 50 {
		t.Errorf("%d files, want 50", len(ti.sizes))
	}
}

// TestModifyList checks that -list names exactly the files modify changed,
// relative to DIR, in path order.
func TestModifyList(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if run([]string{"fixed", dir, "200", "4", "4K"}, &out, &errb) != 0 {
		t.Fatal(errb.String())
	}
	before := map[string]string{}
	for p := range scan(t, dir).sizes {
		b, _ := os.ReadFile(filepath.Join(dir, p))
		before[p] = string(b)
	}
	list := filepath.Join(t.TempDir(), "changed")
	out.Reset()
	if code := run([]string{"modify", "-list", list, dir, "5", "7"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "modified 10 of 200 files, ") {
		t.Errorf("printed %q", out.String())
	}
	var changed []string
	for p := range scan(t, dir).sizes {
		b, _ := os.ReadFile(filepath.Join(dir, p))
		if string(b) != before[p] {
			changed = append(changed, p)
		}
	}
	slices.Sort(changed)
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if !slices.Equal(got, changed) {
		t.Errorf("-list wrote %q, the changed files are %q", got, changed)
	}
}

// TestPatch checks that patch changes exactly LEN bytes in the middle of the
// file, every one of them, and that the same patch on the same file writes
// the same bytes.
func TestPatch(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if run([]string{"file", p, "64K"}, &out, &errb) != 0 {
			t.Fatal(errb.String())
		}
	}
	old, _ := os.ReadFile(a)
	for _, p := range []string{a, b} {
		out.Reset()
		if code := run([]string{"patch", p, "4K", "3"}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if want := "patched 4096 bytes at offset 30720 of 65536\n"; out.String() != want {
			t.Errorf("printed %q, want %q", out.String(), want)
		}
	}
	got, _ := os.ReadFile(a)
	if len(got) != len(old) {
		t.Fatalf("%d bytes became %d", len(old), len(got))
	}
	for i := range got {
		in := i >= 30720 && i < 30720+4096
		if in && got[i] == old[i] || !in && got[i] != old[i] {
			t.Fatalf("byte %d: %#x became %#x (inside the patch: %v)", i, old[i], got[i], in)
		}
	}
	if other, _ := os.ReadFile(b); !bytes.Equal(other, got) {
		t.Errorf("the same patch on an identical file wrote other bytes")
	}
	if code := run([]string{"patch", a, "65537", "1"}, &out, &errb); code != 1 {
		t.Errorf("patch longer than the file: exit %d, want 1", code)
	}
}
