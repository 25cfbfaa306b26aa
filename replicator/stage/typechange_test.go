package stage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRemoveAllNoFollow: RemoveAll empties a tree holding symbolic links
// to directories and files outside the base and inside it, deep and
// shallow, and removes the links themselves: every target survives.
func TestRemoveAllNoFollow(t *testing.T) {
	d, base := newDir(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	must(t, os.WriteFile(secret, []byte("secret"), 0o600))
	put(t, d, "keep/f", "keep", Meta{Mode: 0o644})
	deep := "tree/" + strings.Repeat("d/", 40) + "f"
	for _, rel := range []string{"tree/a/b/f", deep} {
		put(t, d, rel, "x", Meta{Mode: 0o644})
	}
	must(t, d.Mknod("tree/a/fifo", Meta{Mode: fs.ModeNamedPipe | 0o600}, 0))
	for rel, target := range map[string]string{
		"tree/outdir":          outside,
		"tree/outfile":         secret,
		"tree/a/b/deep":        outside,
		"tree/in":              "../keep",
		joinRel(deep, "../up"): "../../../../keep",
	} {
		must(t, d.Symlink(rel, target, Meta{}))
	}
	must(t, d.RemoveAll("tree"))
	if _, err := os.Lstat(filepath.Join(base, "tree")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tree still there: %v", err)
	}
	if got := listNames(t, outside); !slices.Equal(got, []string{"secret"}) {
		t.Errorf("outside holds %q", got)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "secret" {
		t.Errorf("secret: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "keep/f")); err != nil || string(b) != "keep" {
		t.Errorf("keep/f: %q %v", b, err)
	}
	// A symbolic link as rel itself is removed, not entered.
	must(t, d.Symlink("link", outside, Meta{}))
	must(t, d.RemoveAll("link"))
	if got := listNames(t, base); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("base holds %q", got)
	}
	if got := listNames(t, outside); !slices.Equal(got, []string{"secret"}) {
		t.Errorf("outside holds %q", got)
	}
}

// joinRel joins a slash path with a relative one.
func joinRel(p, rel string) string { return filepath.ToSlash(filepath.Join(p, rel)) }

// TestReplaceDir: a directory is never replaced implicitly, but RemoveAll
// then any non-directory operation replaces it, also with a temp staged
// before the directory appeared; Remove then Mkdir goes the other way.
func TestReplaceDir(t *testing.T) {
	d, base := newDir(t)
	outside := t.TempDir()
	fill := func(rel string) {
		t.Helper()
		put(t, d, rel+"/sub/f", "x", Meta{Mode: 0o644})
		must(t, d.Symlink(rel+"/sub/out", outside, Meta{}))
	}
	replace := map[string]func(rel string) error{
		"file": func(rel string) error {
			tmp, err := d.CreateTemp(rel)
			if err != nil {
				return err
			}
			defer tmp.Abort()
			if _, err := tmp.Write([]byte("file")); err != nil {
				return err
			}
			return tmp.Commit(Meta{Mode: 0o644})
		},
		"symlink": func(rel string) error { return d.Symlink(rel, "target", Meta{}) },
		"fifo":    func(rel string) error { return d.Mknod(rel, Meta{Mode: fs.ModeNamedPipe | 0o644}, 0) },
		"link":    func(rel string) error { return d.Link(rel, "keep") },
	}
	put(t, d, "keep", "keep", Meta{Mode: 0o644})
	for name, op := range replace {
		fill(name)
		if err := op(name); !errors.Is(err, ErrIsDir) {
			t.Errorf("%s over a directory = %v, want ErrIsDir", name, err)
		}
		must(t, d.RemoveAll(name))
		if err := op(name); err != nil {
			t.Errorf("%s after RemoveAll: %v", name, err)
		}
		if fi := lstat(t, base, name); fi.IsDir() {
			t.Errorf("%s is still a directory", name)
		}
	}
	// Staged while the target was missing, the directory made meanwhile
	// and removed again before Commit: the temp is in the parent and
	// survives the RemoveAll.
	tmp, err := d.CreateTemp("late")
	must(t, err)
	_, err = tmp.Write([]byte("late"))
	must(t, err)
	fill("late")
	must(t, d.RemoveAll("late"))
	must(t, tmp.Commit(Meta{Mode: 0o644}))
	if b, err := os.ReadFile(filepath.Join(base, "late")); err != nil || string(b) != "late" {
		t.Errorf("late: %q %v", b, err)
	}
	// And back: a file is removed and a directory made in its place.
	if err := d.Mkdir("late", Meta{Mode: 0o755}); !errors.Is(err, ErrNotDir) {
		t.Errorf("Mkdir over a file = %v, want ErrNotDir", err)
	}
	must(t, d.Remove("late"))
	must(t, d.Mkdir("late", Meta{Mode: 0o755}))
	if got := listNames(t, outside); len(got) != 0 {
		t.Errorf("outside holds %q", got)
	}
	noTemps(t, base)
}
