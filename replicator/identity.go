package replicator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Files in the state directory besides the node id and the index.
const (
	lockFile        = "lock"        // flock'ed while a daemon runs; holds its pid
	incarnationFile = "incarnation" // the incarnation of the latest start
	seenFile        = "seen"        // the replay filter's state (transport.Seen)
)

// incarnationJitter bounds the random part added to each incarnation (in
// nanoseconds, about a second): two daemons started from clones of one
// state directory (a VM image) whose clocks are both wrong, or both behind
// the recorded incarnation, must still get different incarnations, which
// is how the transport tells a clone from its own looped-back datagrams.
const incarnationJitter = 1 << 30

// ErrStateDirLocked reports a state directory another daemon holds.
var ErrStateDirLocked = errors.New("state directory in use by another daemon")

// identity is this daemon's name on the group and the state that goes
// with it, kept in the state directory: the node id, the incarnation, the
// replay filter's state, and the lock that keeps a second daemon off the
// directory (two daemons with one node id would each take the other's
// datagrams for their own). The node id may change at run time (renew);
// ID is safe for concurrent use.
type identity struct {
	dir         string
	lock        *os.File
	closeOnce   sync.Once
	node        atomic.Uint64
	incarnation uint64
	seen        *seenStore
}

// openIdentity locks dir (creating it), loads or creates the node id and
// durably records the next incarnation, before anything is sent with it.
// now and jitter are the clock and the random source (tests inject them).
func openIdentity(dir string, now time.Time, jitter func() uint64) (*identity, error) {
	lock, err := lockStateDir(dir)
	if err != nil {
		return nil, err
	}
	id := &identity{dir: dir, lock: lock, seen: &seenStore{dir: dir}}
	node, err := loadNodeID(dir)
	if err == nil {
		id.incarnation, err = nextIncarnation(dir, now, jitter)
	}
	if err != nil {
		id.close()
		return nil, err
	}
	id.node.Store(uint64(node))
	return id, nil
}

// ID returns the current node id.
func (id *identity) ID() wire.NodeID { return wire.NodeID(id.node.Load()) }

// renew picks, persists and returns a fresh node id: another daemon with
// a newer incarnation uses ours (transport.Config.Renew).
func (id *identity) renew() (wire.NodeID, error) {
	fresh, err := newNodeID(id.dir, id.ID())
	if err != nil {
		return 0, err
	}
	id.node.Store(uint64(fresh))
	return fresh, nil
}

// close releases the state directory. It is safe to call more than once.
func (id *identity) close() {
	if id == nil {
		return
	}
	id.closeOnce.Do(func() { id.lock.Close() })
}

// randomJitter is the production jitter source for openIdentity.
func randomJitter() uint64 { return rand.Uint64N(incarnationJitter) }

// lockStateDir creates dir and takes an exclusive lock on its lock file,
// failing at once if another daemon holds it. The lock lasts as long as
// the returned file stays open, and ends with the process however it ends.
func lockStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory lock %s: %w", path, err)
		}
		holder := ""
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		return nil, fmt.Errorf("%w: %s%s; give every daemon its own --state-dir", ErrStateDirLocked, dir, holder)
	}
	// The pid is only a hint for that message: no fsync.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// nextIncarnation returns this start's incarnation and records it in dir
// durably: max(previous+1, now in unix ns), plus a random part below
// incarnationJitter. Peers refuse datagrams of an incarnation older than
// one they heard, so it must grow from one start to the next even when
// the clock went back (a boot before NTP), or peers would drop every
// datagram of this run as a replay.
func nextIncarnation(dir string, now time.Time, jitter func() uint64) (uint64, error) {
	path := filepath.Join(dir, incarnationFile)
	var prev uint64
	switch b, err := os.ReadFile(path); {
	case err == nil:
		v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil || v > math.MaxUint64/2 {
			return 0, fmt.Errorf("incarnation file %s is corrupt (remove it; peers may then refuse this daemon until they restart): %q", path, b)
		}
		prev = v
	case !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("read incarnation: %w", err)
	}
	next := prev + 1
	if t := now.UnixNano(); t > 0 && uint64(t) > next {
		next = uint64(t)
	}
	next += jitter() % incarnationJitter
	if err := writeFileDurable(dir, incarnationFile, []byte(strconv.FormatUint(next, 10)+"\n")); err != nil {
		return 0, fmt.Errorf("write incarnation: %w", err)
	}
	return next, nil
}

// seenStore keeps the replay filter's state in the state directory
// (transport.SeenStore), one line per sender, least recently heard first:
//
//	makuo seen v1
//	<node id, hex> <incarnation> <seq>
type seenStore struct{ dir string }

var _ transport.SeenStore = (*seenStore)(nil)

const seenHeader = "makuo seen v1"

// Load implements transport.SeenStore. A missing file is an empty state.
func (s *seenStore) Load() ([]transport.Seen, error) {
	path := filepath.Join(s.dir, seenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	corrupt := func(line int) error {
		return fmt.Errorf("replay state file %s is corrupt at line %d (remove it to start without)", path, line)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != seenHeader {
		return nil, corrupt(1)
	}
	var out []transport.Seen
	for line := 2; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, corrupt(line)
		}
		node, err1 := strconv.ParseUint(f[0], 16, 64)
		inc, err2 := strconv.ParseUint(f[1], 10, 64)
		seq, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, corrupt(line)
		}
		out = append(out, transport.Seen{Node: wire.NodeID(node), Incarnation: inc, Seq: seq})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// Save implements transport.SeenStore.
func (s *seenStore) Save(seen []transport.Seen) error {
	b := make([]byte, 0, len(seenHeader)+1+len(seen)*48)
	b = append(b, seenHeader+"\n"...)
	for _, e := range seen {
		b = fmt.Appendf(b, "%s %d %d\n", e.Node, e.Incarnation, e.Seq)
	}
	if err := writeFileDurable(s.dir, seenFile, b); err != nil {
		return fmt.Errorf("save replay state: %w", err)
	}
	return nil
}
