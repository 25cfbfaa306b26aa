package stage

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnixPerm(t *testing.T) {
	tests := []struct {
		in   fs.FileMode
		want uint32
	}{
		{0, 0},
		{0o644, 0o644},
		{fs.ModeDir | 0o755, 0o755},
		{fs.ModeSetuid | 0o755, 0o4755},
		{fs.ModeSetgid | 0o750, 0o2750},
		{fs.ModeSticky | fs.ModeDir | 0o777, 0o1777},
		{fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777, 0o7777},
	}
	for _, tt := range tests {
		if got := unixPerm(tt.in); got != tt.want {
			t.Errorf("unixPerm(%v) = %o, want %o", tt.in, got, tt.want)
		}
	}
}

// TestChmodFallbacks exercises both ways chmodNoFollow changes a mode, so
// the /proc fallback for kernels before 6.6 stays tested on newer ones.
func TestChmodFallbacks(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := chmodProcFd(fd, 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(p); fi.Mode() != 0o640 {
		t.Errorf("after /proc chmod: %v", fi.Mode())
	}
	err = unix.Fchmodat(fd, "", 0o604, unix.AT_EMPTY_PATH)
	if err != nil {
		t.Logf("fchmodat2 unavailable here (%v); the /proc path is the one in use", err)
		return
	}
	if fi, _ := os.Lstat(p); fi.Mode() != 0o604 {
		t.Errorf("after fchmodat2: %v", fi.Mode())
	}
}
