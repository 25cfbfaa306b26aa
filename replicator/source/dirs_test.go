package source

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDirs: Dirs resolves each path as its Root would, whatever order the
// paths come in, keeps a symbolic link in the last element unfollowed, and
// refuses a directory that leads out of the root.
func TestDirs(t *testing.T) {
	base, out := t.TempDir(), t.TempDir()
	for _, f := range []string{"top", "a/one", "a/two", "a/b/deep", "c/three"} {
		p := filepath.Join(base, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("one", filepath.Join(base, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(base, "away")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	d := Dirs{Root: root}
	defer d.Close()
	for _, tt := range []struct {
		path    string
		content string // "" for a symbolic link, checked by Lstat
		fails   bool
	}{
		{path: "a/one", content: "a/one"},
		{path: "a/two", content: "a/two"},
		{path: "top", content: "top"},
		{path: "a/b/deep", content: "a/b/deep"},
		{path: "a/one", content: "a/one"},
		{path: "a/link"},
		{path: "c/three", content: "c/three"},
		{path: "away/secret", fails: true},
		{path: "missing/x", fails: true},
		{path: "a/two", content: "a/two"},
	} {
		in, name, err := d.Parent(tt.path)
		if tt.fails {
			if err == nil {
				if _, err = in.Lstat(name); err == nil {
					t.Errorf("%s: resolved out of the root", tt.path)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		if tt.content == "" {
			fi, err := in.Lstat(name)
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: Lstat %v, %v: want the link itself", tt.path, fi, err)
			}
			continue
		}
		b, err := in.ReadFile(name)
		if err != nil || string(b) != tt.content {
			t.Errorf("%s: read %q, %v; want %q", tt.path, b, err, tt.content)
		}
	}
}
