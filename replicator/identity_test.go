package replicator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/transport"
)

func noJitter() uint64 { return 0 }

// TestStateDirLocked: a second daemon on the same state directory fails
// at start, naming the directory and the holder's pid; once the first is
// gone the directory is free again.
func TestStateDirLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	first, err := openIdentity(dir, time.Now(), noJitter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openIdentity(dir, time.Now(), noJitter)
	if !errors.Is(err, ErrStateDirLocked) {
		t.Fatalf("second daemon on %s: %v, want ErrStateDirLocked", dir, err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("error %q does not name the directory and the holder", msg)
	}
	first.close()
	first.close()
	again, err := openIdentity(dir, time.Now(), noJitter)
	if err != nil {
		t.Fatalf("after the first daemon closed: %v", err)
	}
	defer again.close()
	if again.ID() != first.ID() {
		t.Fatalf("node id changed across restarts: %v then %v", first.ID(), again.ID())
	}
}

// TestIncarnationMonotonic: every start's incarnation is above the
// previous one, also when the clock went back, and is durable.
func TestIncarnationMonotonic(t *testing.T) {
	dir := t.TempDir()
	clock := []time.Time{
		time.Unix(1_700_000_000, 0),
		time.Unix(1_600_000_000, 0), // clock behind: boot before NTP
		time.Unix(1_600_000_000, 0),
		time.Unix(0, 0),
		time.Unix(1_800_000_000, 0), // clock ahead again
	}
	var prev uint64
	for i, now := range clock {
		id, err := openIdentity(dir, now, noJitter)
		if err != nil {
			t.Fatal(err)
		}
		if id.incarnation <= prev {
			t.Fatalf("start %d at %v: incarnation %d not above %d", i, now, id.incarnation, prev)
		}
		if want := uint64(now.UnixNano()); id.incarnation < want {
			t.Fatalf("start %d: incarnation %d behind the clock %d", i, id.incarnation, want)
		}
		b, err := os.ReadFile(filepath.Join(dir, incarnationFile))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(id.incarnation) {
			t.Fatalf("incarnation file %q, %v; want %d", b, err, id.incarnation)
		}
		prev = id.incarnation
		id.close()
	}
	// Clones of one state directory with clocks equally wrong differ by
	// the random part.
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(d, incarnationFile), []byte("5000000000000000000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ia, err := nextIncarnation(a, time.Unix(0, 0), func() uint64 { return 7 })
	if err != nil {
		t.Fatal(err)
	}
	ib, err := nextIncarnation(b, time.Unix(0, 0), func() uint64 { return 8 })
	if err != nil {
		t.Fatal(err)
	}
	if ia == ib || ia <= 5e18 || ib <= 5e18 {
		t.Fatalf("clones got incarnations %d and %d", ia, ib)
	}
}

func TestIncarnationCorrupt(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"junk\n", "18446744073709551615\n"} {
		if err := os.WriteFile(filepath.Join(dir, incarnationFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := nextIncarnation(dir, time.Now(), noJitter); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Fatalf("%q: %v, want a corrupt file error", content, err)
		}
	}
}

// TestRenewPersists: a renewed node id differs from the old one and is
// what the next start loads.
func TestRenewPersists(t *testing.T) {
	dir := t.TempDir()
	id, err := openIdentity(dir, time.Now(), noJitter)
	if err != nil {
		t.Fatal(err)
	}
	old := id.ID()
	fresh, err := id.renew()
	if err != nil {
		t.Fatal(err)
	}
	if fresh == old || fresh == 0 || id.ID() != fresh {
		t.Fatalf("renew: %v -> %v (ID %v)", old, fresh, id.ID())
	}
	id.close()
	again, err := openIdentity(dir, time.Now(), noJitter)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if again.ID() != fresh {
		t.Fatalf("after a restart the node id is %v, want the renewed %v", again.ID(), fresh)
	}
	if _, err := os.Stat(filepath.Join(dir, nodeIDFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestLoadNodeID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	a, err := loadNodeID(dir)
	if err != nil || a == 0 {
		t.Fatalf("first start: %v, %v", a, err)
	}
	b, err := loadNodeID(dir)
	if err != nil || b != a {
		t.Fatalf("second start: %v, %v; want %v", b, err, a)
	}
	if err := os.WriteFile(filepath.Join(dir, nodeIDFile), []byte("zz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeID(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: %v", err)
	}
}

// TestSeenStore: the replay state round-trips through the state
// directory in order; a missing file is empty, a corrupt one an error.
func TestSeenStore(t *testing.T) {
	s := &seenStore{dir: t.TempDir()}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Fatalf("missing file: %v, %v", got, err)
	}
	want := []transport.Seen{{Node: 0xfedcba9876543210, Incarnation: 1_700_000_000_123_456_789, Seq: 42}, {Node: 1, Incarnation: 2, Seq: 0}}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("loaded %v, %v; want %v", got, err, want)
	}
	if err := s.Save(nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Fatalf("after saving nothing: %v, %v", got, err)
	}
	for _, content := range []string{"", "other header\n", seenHeader + "\n1 2\n", seenHeader + "\nzz 1 2\n"} {
		if err := os.WriteFile(filepath.Join(s.dir, seenFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%q: %v, want a corrupt file error", content, err)
		}
	}
}
