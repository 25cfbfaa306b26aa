package stage

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newDir opens a fresh base directory for a test.
func newDir(t *testing.T) (*Dir, string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d, base
}

// put stages content for rel and commits it with meta.
func put(t *testing.T, d *Dir, rel string, content string, meta Meta) {
	t.Helper()
	tmp, err := d.CreateTemp(rel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(meta); err != nil {
		t.Fatal(err)
	}
}

// needRoot skips t unless the test runs as root, or fails it in CI.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		cannotRun(t, "needs root (chown to other users, device nodes, mounts)")
	}
}

// cannotRun skips t for the reason given, except in CI, where every test
// must run and it fails t instead.
func cannotRun(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// listNames returns the names in dir, failing the test on error.
func listNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// noTemps fails t if any temp-file name remains under base.
func noTemps(t *testing.T, base string) {
	t.Helper()
	err := filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if IsTempName(e.Name()) {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
