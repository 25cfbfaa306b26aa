package tree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestBadPaths(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("a.txt", "a"))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	for _, p := range []string{"../x", "/etc/passwd", "a/../../b", "a\x00b", ".."} {
		if _, err := x.Update(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("Update(%q): %v, want ErrBadPath", p, err)
		}
		if _, err := x.UpdateTree(context.Background(), p); !errors.Is(err, ErrBadPath) {
			t.Errorf("UpdateTree(%q): %v, want ErrBadPath", p, err)
		}
		if _, err := x.Remove(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("Remove(%q): %v, want ErrBadPath", p, err)
		}
		if _, err := x.Chunks(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("Chunks(%q): %v, want ErrBadPath", p, err)
		}
		if err := x.Walk(p, func(Entry) error { return nil }); !errors.Is(err, ErrBadPath) {
			t.Errorf("Walk(%q): %v, want ErrBadPath", p, err)
		}
		if _, ok := x.Lookup(p); ok {
			t.Errorf("Lookup(%q) succeeded", p)
		}
	}
	for _, p := range []string{"a.txt", "./a.txt", "a.txt/", "x/../a.txt"} {
		if e, ok := x.Lookup(p); !ok || e.Path != "a.txt" {
			t.Errorf("Lookup(%q) = %q, %v", p, e.Path, ok)
		}
	}
	if e, ok := x.Lookup(""); !ok || e.Path != "." || e.Kind != KindDir {
		t.Errorf(`Lookup("") = %+v, %v`, e, ok)
	}
}

func TestExclude(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir,
		writeFile("a.txt", "a"),
		writeFile("app.log", "log"),
		writeFile("cache/big", strings.Repeat("c", 100<<10)),
		writeFile("cache/sub/x", "x"),
		writeFile("dir/.makuo-0123456789abcdef.tmp", "temp"),
		writeFile("dir/keep", "k"),
		writeFile("dir/x.log", "log"),
		writeFile("dir/cache", "a file called cache is not excluded"),
	)
	var mu sync.Mutex
	var asked []string
	opt := Options{
		Exclude: func(rel string, isDir bool) bool {
			mu.Lock()
			asked = append(asked, rel)
			mu.Unlock()
			return (rel == "cache" && isDir) || strings.HasSuffix(rel, ".log")
		},
		SkipName: func(name string) bool { return strings.HasPrefix(name, ".makuo-") },
	}
	x := newIndex(t, dir, opt)
	st := scan(t, x)
	want := []string{".", "a.txt", "dir", "dir/cache", "dir/keep"}
	if got := paths(t, x, ""); !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
	if st.BytesRead != int64(1+1+len("a file called cache is not excluded")) {
		t.Errorf("BytesRead %d: an excluded file was read", st.BytesRead)
	}
	for _, p := range asked {
		if strings.HasPrefix(p, "cache/") || strings.Contains(p, ".makuo-") {
			t.Errorf("Exclude asked about %q below an excluded directory or skipped name", p)
		}
	}
	for _, p := range []string{"cache/big", "cache/sub/x", "app.log", "dir/.makuo-0123456789abcdef.tmp", "cache"} {
		if _, err := x.Update(p); err != nil {
			t.Errorf("Update(%q): %v", p, err)
		}
		if _, err := x.UpdateTree(context.Background(), p); err != nil {
			t.Errorf("UpdateTree(%q): %v", p, err)
		}
		if _, ok := x.Lookup(p); ok {
			t.Errorf("%s indexed after Update", p)
		}
	}
	if got := paths(t, x, ""); !slices.Equal(got, want) {
		t.Errorf("after updates: paths %q, want %q", got, want)
	}
}

// TestExcludeListed: a scan asks ExcludeListed about the names it lists,
// and a rescan with nothing to read asks Exclude about none; a path given to
// Update, whose parents the index did not come through, is asked of
// Exclude.
func TestExcludeListed(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("a/skip/f", "x"), writeFile("a/keep", "k"), writeFile("b", "b"))
	var whole, listed []string
	opt := Options{
		Exclude: func(rel string, isDir bool) bool {
			whole = append(whole, rel)
			return rel == "a/skip" || strings.HasPrefix(rel, "a/skip/")
		},
		ExcludeListed: func(dir, name string, isDir bool) bool {
			rel := joinRel(dir, name)
			listed = append(listed, rel)
			return rel == "a/skip"
		},
	}
	x := newIndex(t, dir, opt)
	scan(t, x)
	whole, listed = nil, nil
	scan(t, x)
	if want := []string{".", "a", "a/keep", "b"}; !slices.Equal(paths(t, x, ""), want) {
		t.Errorf("paths %q, want %q", paths(t, x, ""), want)
	}
	slices.Sort(listed)
	// Exclude is asked about the directories a scan opens on its way, not
	// about the names it lists.
	if want := []string{"a", "a/keep", "a/skip", "b"}; !slices.Equal(listed, want) || slices.Contains(whole, "a/keep") || slices.Contains(whole, "b") {
		t.Errorf("scan asked ExcludeListed %q (want %q) and Exclude %q (want no file)", listed, want, whole)
	}
	if _, err := x.Update("a/skip/f"); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.Lookup("a/skip/f"); ok || !slices.Contains(whole, "a/skip") {
		t.Errorf("Update of an excluded path: indexed %v, Exclude asked %q", ok, whole)
	}
}

func TestSymlinksNotFollowed(t *testing.T) {
	outside := t.TempDir()
	secret := strings.Repeat("s", 1<<20)
	apply(t, outside, writeFile("secret", secret), writeFile("sub/more", secret))
	dir := t.TempDir()
	apply(t, dir,
		writeFile("real/f", "abc"),
		symlink("out", outside),
		symlink("outfile", filepath.Join(outside, "secret")),
		symlink("rel-out", "../../../../../../../.."+outside),
		symlink("loop", "loop"),
		symlink("self", "."),
		symlink("up", ".."),
		symlink("alias", "real"),
	)
	x := newIndex(t, dir, Options{})
	st := scan(t, x)
	if st.BytesRead != 3 {
		t.Errorf("BytesRead %d: read through a link", st.BytesRead)
	}
	want := []string{".", "alias", "loop", "out", "outfile", "real", "real/f", "rel-out", "self", "up"}
	if got := paths(t, x, ""); !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
	if e, _ := x.Lookup("out"); e.Kind != KindSymlink || e.Target != outside {
		t.Errorf("out: %+v", e)
	}
	for _, p := range []string{"out/secret", "out/sub", "out/sub/more", "alias/f", "self/real/f", "up"} {
		st, err := x.Update(p)
		if err != nil {
			t.Errorf("Update(%q): %v", p, err)
		}
		st2, err := x.UpdateTree(context.Background(), p)
		if err != nil {
			t.Errorf("UpdateTree(%q): %v", p, err)
		}
		if st.BytesRead+st2.BytesRead != 0 {
			t.Errorf("%s: read %d bytes", p, st.BytesRead+st2.BytesRead)
		}
	}
	if got := paths(t, x, ""); !slices.Equal(got, want) {
		t.Errorf("after updates: paths %q, want %q", got, want)
	}
	if _, err := x.Chunks("outfile"); !errors.Is(err, ErrNotFile) {
		t.Errorf("Chunks(outfile): %v, want ErrNotFile", err)
	}
	if _, err := x.Chunks("out/secret"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Chunks(out/secret): %v, want fs.ErrNotExist", err)
	}

	// A directory replaced by a link to the outside after being indexed.
	apply(t, dir, removeAll("real"), symlink("real", outside))
	for _, p := range []string{"real/f", "real/secret", "real/sub/more"} {
		if st, err := x.Update(p); err != nil || st.BytesRead != 0 {
			t.Errorf("Update(%q): %+v, %v", p, st, err)
		}
	}
	if e, _ := x.Lookup("real"); e.Kind != KindSymlink {
		t.Errorf("real: %+v", e)
	}
	if _, ok := x.Lookup("real/f"); ok {
		t.Error("real/f still indexed")
	}
	if st := scan(t, x); st.BytesRead != 0 {
		t.Errorf("rescan read %d bytes", st.BytesRead)
	}
	checkInvariants(t, x)
}

func TestBaseRemoved(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	x := newIndex(t, dir, Options{})
	scan(t, x)
	n, root := x.Len(), x.Root()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	st, err := x.Scan(context.Background())
	if !errors.Is(err, ErrBaseGone) || st.Removed != 0 || x.Len() != n || x.Root() != root {
		t.Errorf("Scan of a removed base: %+v, %v; Len %d (was %d)", st, err, x.Len(), n)
	}
	if _, err := x.Update("a.txt"); !errors.Is(err, ErrBaseGone) {
		t.Errorf("Update: %v", err)
	}
}
