package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCopies checks that every destination ends up a copy of the source
// (content, mode, mtime), with no temp file left, whatever the batch size
// and whether a previous copy was there.
func TestCopies(t *testing.T) {
	src := t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	files := map[string]string{"a": "alpha", "d/b": "", "d/e/c": strings.Repeat("x", 70000), "d/e/f": "f"}
	for rel, content := range files {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	dsts := []string{filepath.Join(t.TempDir(), "r1"), filepath.Join(t.TempDir(), "r2")}
	for _, args := range [][]string{{"-batch", "1"}, {"-batch", "3", "-v"}, {"-sync=false"}} {
		var out, errb bytes.Buffer
		if code := run(append(append(args, src), dsts...), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		if !strings.Contains(out.String(), "floor: 2 destinations, 4 files, 70006 bytes") {
			t.Errorf("%v: output %q", args, out.String())
		}
		for _, dst := range dsts {
			sameTree(t, src, dst)
		}
	}
}

func sameTree(t *testing.T, src, dst string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if d.IsDir() {
			return nil
		}
		n++
		want, err := os.Lstat(filepath.Join(src, rel))
		if err != nil {
			t.Errorf("%s: not in the source (a temp left?): %v", p, err)
			return nil
		}
		got, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if got.Mode() != want.Mode() || !got.ModTime().Equal(want.ModTime()) || got.Size() != want.Size() {
			t.Errorf("%s: %v %v %d, want %v %v %d", p, got.Mode(), got.ModTime(), got.Size(), want.Mode(), want.ModTime(), want.Size())
		}
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(src, rel))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: content differs", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("%s: %d files, want 4", dst, n)
	}
}

func TestBadArguments(t *testing.T) {
	src := t.TempDir()
	file := filepath.Join(src, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{src}, 2, "usage"},
		{[]string{"-batch", "0", src, "x"}, 2, "-batch must be at least 1"},
		{[]string{"-nope", src, "x"}, 2, "not defined"},
		{[]string{src, "x", "./x"}, 2, "named twice"},
		{[]string{file, filepath.Join(t.TempDir(), "d")}, 2, "SRC must be a directory"},
		{[]string{filepath.Join(src, "missing"), filepath.Join(t.TempDir(), "d")}, 1, "no such file"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
}
