package tree

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// nobodyEnv tells a child test binary started by asNobody that it is the
// child, which does the test's work.
const nobodyEnv = "MAKUO_TEST_AS_NOBODY"

// cannotRun skips t for the reason given, except in CI, where every test
// must run and it fails t instead.
func cannotRun(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// asNobody is called first by a test that needs an unprivileged user
// (root reads every file). Run as root, it runs that test again in a copy
// of the test binary as user nobody, fails t if the child fails or does
// not pass the test, and reports true: the caller then returns. Run
// unprivileged, or in that child, it reports false and the test goes on.
func asNobody(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nobodyEnv) == "1" {
		if os.Geteuid() == 0 {
			t.Fatal("the child meant to run as nobody runs as root")
		}
		return false
	}
	if os.Geteuid() != 0 {
		return false
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("asNobody in subtest %s: only top-level tests are rerun", t.Name())
	}
	uid, gid := nobodyIDs(t)
	// The go command builds the binary in a directory only root can
	// enter: the child gets a copy, and a temp directory of its own.
	dir, err := os.MkdirTemp("", "makuo-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tmp := filepath.Join(dir, "tmp")
	bin := filepath.Join(dir, "test.bin")
	for _, err := range []error{
		os.Chmod(dir, 0o755),
		os.Mkdir(tmp, 0o700),
		os.Chown(tmp, int(uid), int(gid)),
		copyExecutable(bin),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), nobodyEnv+"=1", "TMPDIR="+tmp)
	cmd.Dir = tmp
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s as nobody (uid %d): %v\n%s", t.Name(), uid, err, out)
	}
	return true
}

// nobodyIDs returns the uid and gid of user nobody.
func nobodyIDs(t *testing.T) (uid, gid uint32) {
	t.Helper()
	uid, gid = 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	if uid == 0 {
		t.Fatal("user nobody is root")
	}
	return uid, gid
}

// copyExecutable copies the running test binary to dst, mode 0755.
func copyExecutable(dst string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
