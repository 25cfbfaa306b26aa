package e2e

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Hostile transfer sessions: datagrams crafted with the wire package and
// multicast at a lab of daemons. Whatever they ask, nothing is written
// outside a base directory, the daemons keep running, the drops are
// counted, and a legitimate push still works afterwards.
//
// The datagrams go out through dialGroup, not Host.DialGroup, and the
// group is tapped (to see the members' Need and Result answers) through
// inNetns: see Host.InNamespace.

// fakeNode is the id every crafted session claims to come from.
const fakeNode wire.NodeID = 0x0bad_0bad_0bad_0bad

// fakeBlockSize is the data block size of the crafted sessions.
const fakeBlockSize = 1024

// TestHostileSessionPaths offers paths that leave the base directory,
// lexically ("../escape", "/abs/path", "a/../../x", a NUL byte) and
// through symbolic links (one made locally, one made by an earlier
// session, one swapped in between offer and data), each with its content
// and a commit.
func TestHostileSessionPaths(t *testing.T) {
	lab := startLab(t, 3)
	hosts := lab.Hosts
	ids := nodeIDs(t, hosts)
	tap := tapGroup(t, hosts[0], nil)
	outside := t.TempDir() // no base is below it
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Where a careless receiver would write: relative to the base, to its
	// parent, to the daemon's working directory, or to the root.
	escapes := []string{filepath.Join(wd, "..", "escape"), filepath.Join(wd, "..", "x"),
		"/escape", "/abs", "/x", "/tmp/escape", "/tmp/x"}
	for _, h := range hosts {
		escapes = append(escapes, filepath.Join(h.Base, "..", "escape"), filepath.Join(h.Base, "..", "x"))
		if err := os.Symlink(outside, filepath.Join(h.Base, "esc")); err != nil {
			t.Fatal(err)
		}
		writeTreeFiles(t, h.Base, map[string]string{"swap/": ""})
	}
	for _, p := range escapes {
		if lexists(p) {
			t.Fatalf("%s exists before the test: cannot tell whether a daemon wrote it", p)
		}
	}
	before := dropCounters(t, hosts)
	f := newFakeSender(t, hosts[0], nil).join()
	pwned := []byte("pwned")

	// Lexically bad paths: refused before anything is looked up, each
	// counted as path_refused.
	lexical := []string{"../escape", "/abs/path", "/escape", "a/../../x", "nul\x00byte", "../../../../../../tmp/escape"}
	for _, p := range lexical {
		res := f.session(tap, ids, []wire.Entry{fakeFileEntry(p, pwned)}, pwned)
		expectFailed(t, hosts, ids, res, "offer "+strconv.Quote(p), wire.FailPath)
	}

	// A symlink in the base, made behind the daemons' backs, to a
	// directory outside: a file, a directory, a link and a FIFO through it.
	res := f.session(tap, ids, []wire.Entry{fakeFileEntry("esc/pwned", pwned)}, pwned)
	expectFailed(t, hosts, ids, res, `offer "esc/pwned" (esc -> outside)`, wire.FailPath)
	res = f.session(tap, ids, []wire.Entry{
		{Kind: wire.KindDir, Path: "esc/newdir", Mode: 0o755},
		{Kind: wire.KindSymlink, Path: "esc/link", Target: "/etc/passwd", Mode: 0o777},
		{Kind: wire.KindFifo, Path: "esc/fifo", Mode: 0o644},
	})
	expectFailed(t, hosts, ids, res, "offer of a dir, a symlink and a FIFO under esc/", wire.FailPath, wire.FailPath, wire.FailPath)

	// A symlink made by a session (replicating a symlink is legitimate),
	// then written through by the next one.
	res = f.session(tap, ids, []wire.Entry{{Kind: wire.KindSymlink, Path: "esc2", Target: outside, Mode: 0o777}})
	for _, h := range hosts {
		if r := res[ids[h.Name]]; r == nil || r.Applied != 1 || r.Failed != 0 {
			t.Errorf("%s: symlink esc2 -> %s not applied: %+v", h.Name, outside, r)
		}
		if target, err := os.Readlink(filepath.Join(h.Base, "esc2")); err != nil || target != outside {
			t.Errorf("%s: esc2: %q, %v", h.Name, target, err)
		}
	}
	res = f.session(tap, ids, []wire.Entry{fakeFileEntry("esc2/pwned", pwned)}, pwned)
	expectFailed(t, hosts, ids, res, `offer "esc2/pwned" (esc2 -> outside, made by a session)`, wire.FailPath)

	// swap is a directory when offered, a symlink to outside when the data
	// and the commit arrive.
	s := f.newSession([]wire.Entry{fakeFileEntry("swap/pwned", pwned)})
	f.offer(tap, ids, s)
	for _, h := range hosts {
		removePaths(t, h.Base, "swap")
		if err := os.Symlink(outside, filepath.Join(h.Base, "swap")); err != nil {
			t.Fatal(err)
		}
	}
	f.data(s, pwned)
	res = f.commit(tap, ids, s)
	expectFailed(t, hosts, ids, res, `"swap/pwned" with swap swapped for a symlink after the offer`, wire.FailPath)

	// Nothing outside.
	if ents, err := os.ReadDir(outside); err != nil || len(ents) > 0 {
		t.Errorf("the directory outside the bases holds %v (%v)", ents, err)
	}
	for _, p := range escapes {
		if lexists(p) {
			t.Errorf("%s was created", p)
		}
	}
	for _, h := range hosts {
		for _, p := range []string{"a", "nul", "esc/pwned", "esc2/pwned", "swap/pwned"} {
			if lexists(filepath.Join(h.Base, p)) {
				t.Errorf("%s: %s was created", h.Name, p)
			}
		}
	}

	// What is counted: every lexically bad path as path_refused; the
	// symlink escapes are refused by the os.Root confinement and reported
	// as failures to the sender, but not counted as dropped.
	after := dropCounters(t, hosts)
	for _, h := range hosts {
		want := map[string]uint64{"dropped_path_refused": uint64(len(lexical))}
		expectDeltas(t, h, before[h.Name], after[h.Name], want)
	}
	expectHealthy(t, hosts)
	expectLegitPush(t, hosts)
}

// TestHostileSessionData sends Data blocks that do not fit the offered
// file: larger than the file, shorter than the block, and past the end of
// the session. They are dropped (the first two counted as malformed) and
// the file is still applied whole and exact from the right block.
func TestHostileSessionData(t *testing.T) {
	lab := startLab(t, 3)
	hosts := lab.Hosts
	ids := nodeIDs(t, hosts)
	tap := tapGroup(t, hosts[0], nil)
	before := dropCounters(t, hosts)
	f := newFakeSender(t, hosts[0], nil).join()

	content := []byte("0123456789") // 10 bytes: one block of 10
	s := f.newSession([]wire.Entry{fakeFileEntry("data/small.txt", content)})
	f.offer(tap, ids, s)
	f.send(&wire.Data{Session: s.id, Block: 0, Bytes: bytes.Repeat([]byte("X"), 500)}) // larger than the file
	f.send(&wire.Data{Session: s.id, Block: 0, Bytes: []byte("01234")})                // shorter than its block
	eventuallyDeltas(t, hosts, before, map[string]uint64{"dropped_malformed": 2})
	f.send(&wire.Data{Session: s.id, Block: 1 << 40, Bytes: []byte("XXXXXXXXXX")}) // no such block
	f.send(&wire.Data{Session: s.id, Block: 1, Bytes: []byte("XXXXXXXXXX")})       // past the last block
	f.data(s, content)
	res := f.commit(tap, ids, s)
	for _, h := range hosts {
		r := res[ids[h.Name]]
		if r == nil || r.Applied != 1 || r.Failed != 0 {
			t.Errorf("%s: result %+v, want the file applied", h.Name, r)
		}
		if b, err := os.ReadFile(filepath.Join(h.Base, "data/small.txt")); err != nil || !bytes.Equal(b, content) {
			t.Errorf("%s: data/small.txt = %q, %v; want %q", h.Name, b, err, content)
		}
	}
	after := dropCounters(t, hosts)
	for _, h := range hosts {
		expectDeltas(t, h, before[h.Name], after[h.Name], map[string]uint64{"dropped_malformed": 2})
	}
	expectHealthy(t, hosts)
	expectLegitPush(t, hosts)
}

// TestHostileReplay replays datagrams: a crafted one sent twice, one of an
// older incarnation, and a whole real push recorded off the wire and
// replayed after a newer version of its file went out. Every replay is
// counted and ignored.
func TestHostileReplay(t *testing.T) {
	lab := startLab(t, 3)
	testReplay(t, lab.Hosts, nil)
}

// TestHostileKey: at daemons started with -k, datagrams sealed with
// another key, unsealed ones and sealed ones whose header was altered are
// counted as auth drops and change nothing; replays of sealed datagrams
// are counted as replays. The same session sealed with the right key is
// applied, which shows the crafted datagrams are otherwise valid.
func TestHostileKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("correct horse battery staple 0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := aeadFor(t, "correct horse battery staple 0123456789")
	wrong := aeadFor(t, "incorrect horse battery staple 9876543210")
	lab := startLab(t, 3, []string{"-k", keyFile}, []string{"-k", keyFile}, []string{"-k", keyFile})
	hosts := lab.Hosts
	ids := nodeIDs(t, hosts)
	tap := tapGroup(t, hosts[0], key)
	before := dropCounters(t, hosts)

	content := []byte("sealed content")
	unsent := func(name string, f *fakeSender) int {
		s := f.newSession([]wire.Entry{fakeFileEntry(name, content)})
		f.send(s.offers[0])
		f.data(s, content)
		f.send(&wire.Commit{Session: s.id})
		return 3
	}
	n := unsent("wrongkey.txt", newFakeSender(t, hosts[0], wrong))
	n += unsent("unsealed.txt", newFakeSender(t, hosts[0], nil))
	// Sealed with the right key, then a header field changed: the header
	// is the AEAD's associated data and the nonce.
	tamper := newFakeSender(t, hosts[0], key)
	s := tamper.newSession([]wire.Entry{fakeFileEntry("tampered.txt", content)})
	for _, m := range []wire.Message{s.offers[0], &wire.Data{Session: s.id, Bytes: content}, &wire.Commit{Session: s.id}} {
		b := tamper.datagram(m)
		binary.BigEndian.PutUint64(b[8:], uint64(fakeNode)+1)
		tamper.write(b)
		n++
	}
	// Sealed flag set but no room for a tag.
	short := wire.Header{Flags: wire.FlagSealed, Node: fakeNode + 2, Incarnation: 1, Seq: 1, Type: wire.TypeCommit}
	newFakeSender(t, hosts[0], nil).write(append(short.Append(nil), 1, 2, 3))
	n++
	eventuallyDeltas(t, hosts, before, map[string]uint64{"dropped_auth": uint64(n)})
	for _, h := range hosts {
		for _, name := range []string{"wrongkey.txt", "unsealed.txt", "tampered.txt"} {
			if lexists(filepath.Join(h.Base, name)) {
				t.Errorf("%s: %s was written", h.Name, name)
			}
		}
	}

	// The control: the same session sealed with the right key is applied.
	good := newFakeSender(t, hosts[0], key).join()
	res := good.session(tap, ids, []wire.Entry{fakeFileEntry("sealed.txt", content)}, content)
	for _, h := range hosts {
		if r := res[ids[h.Name]]; r == nil || r.Applied != 1 {
			t.Errorf("%s: correctly sealed session: result %+v", h.Name, r)
		}
		if b, err := os.ReadFile(filepath.Join(h.Base, "sealed.txt")); err != nil || !bytes.Equal(b, content) {
			t.Errorf("%s: sealed.txt = %q, %v", h.Name, b, err)
		}
	}
	after := dropCounters(t, hosts)
	for _, h := range hosts {
		expectDeltas(t, h, before[h.Name], after[h.Name], map[string]uint64{"dropped_auth": uint64(n)})
	}
	testReplay(t, hosts, key)
}

// testReplay runs the replay scenarios at hosts; key is the group key the
// daemons run with (nil: none).
func testReplay(t *testing.T, hosts []*Host, key cipher.AEAD) {
	t.Helper()
	ids := nodeIDs(t, hosts)
	tap := tapGroup(t, hosts[0], key)
	before := dropCounters(t, hosts)

	// The same datagram twice, and an older incarnation after a newer one.
	// Without a key a single datagram of a new incarnation does not yet
	// make the older one stale (it may be a forgery): the new stream is
	// confirmed first by a datagram in sequence.
	f := newFakeSender(t, hosts[0], key)
	f.inc = 5
	f.join().join()
	s := f.newSession([]wire.Entry{{Kind: wire.KindAbsent, Path: "nothing-here"}})
	offer := f.datagram(s.offers[0])
	f.write(offer)
	f.waitNeeds(tap, ids, s)
	f.write(offer)
	replays := uint64(1)
	old := &fakeSender{t: t, conn: f.conn, node: f.node, inc: 4, seq: 100, aead: key}
	old.send(&wire.Abort{Session: s.id})
	replays++
	eventuallyDeltas(t, hosts, before, map[string]uint64{"dropped_replay": replays})

	// A real push from h2, recorded off the wire, replayed from h1 after
	// h2 pushed a newer version: h1 and h3 refuse every datagram of it
	// (h2 ignores its own).
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	writeTreeFiles(t, h2.Base, map[string]string{"replayed.txt": "version 1, a bit longer"})
	mark := tap.len()
	runMsync(t, h2, 0, "replayed.txt")
	var recorded [][]byte
	record := func() bool {
		recorded = recorded[:0]
		for _, d := range tap.since(mark) {
			if d.h.Node == ids[h2.Name] && d.h.Type != wire.TypeHeartbeat {
				recorded = append(recorded, d.raw)
			}
		}
		// Offer, data, poll, commit at least; the tap reads on its own
		// goroutine and may lag msync's return on a loaded machine.
		return len(recorded) >= 4
	}
	eventually(t, 3*time.Second, record, "fewer than 4 session datagrams of h2's push recorded")
	writeTreeFiles(t, h2.Base, map[string]string{"replayed.txt": "version 2"})
	runMsync(t, h2, 0, "replayed.txt")
	want := describeTree(t, h2.Base)["replayed.txt"]
	mid := dropCounters(t, hosts)
	for _, h := range hosts {
		expectDeltas(t, h, before[h.Name], mid[h.Name], map[string]uint64{"dropped_replay": replays})
	}
	for _, b := range recorded {
		f.write(b)
	}
	eventually(t, 5*time.Second, func() bool {
		now := dropCounters(t, []*Host{h1, h3})
		return now[h1.Name]["dropped_replay"]-mid[h1.Name]["dropped_replay"] >= uint64(len(recorded)) &&
			now[h3.Name]["dropped_replay"]-mid[h3.Name]["dropped_replay"] >= uint64(len(recorded))
	}, "the %d replayed datagrams of a real push were not all counted as replays", len(recorded))
	time.Sleep(200 * time.Millisecond) // let a wrongly accepted replay show its effect
	after := dropCounters(t, hosts)
	for _, h := range []*Host{h1, h3} {
		expectDeltas(t, h, mid[h.Name], after[h.Name], map[string]uint64{"dropped_replay": uint64(len(recorded))})
		if got := describeTree(t, h.Base)["replayed.txt"]; got != want {
			t.Errorf("%s: replayed.txt = %s after the replay, want %s", h.Name, got, want)
		}
	}
	expectDeltas(t, h2, mid[h2.Name], after[h2.Name], nil)
	t.Logf("replayed %d datagrams of a real push; h1 and h3 counted them all as replays", len(recorded))
	expectHealthy(t, hosts)
	expectLegitPush(t, hosts)
}

// fakeSender crafts session datagrams as node `node` would send them.
type fakeSender struct {
	t    *testing.T
	conn *net.UDPConn
	node wire.NodeID
	inc  uint64
	seq  uint64
	aead cipher.AEAD // seal with it; nil: unsealed
}

func newFakeSender(t *testing.T, h *Host, aead cipher.AEAD) *fakeSender {
	return &fakeSender{t: t, conn: dialGroup(t, h), node: fakeNode, inc: 1, aead: aead}
}

// join makes the crafted sender a member: members accept sessions only
// from a node they heard a heartbeat of.
func (f *fakeSender) join() *fakeSender {
	f.send(&wire.Heartbeat{Roles: wire.RoleSend, Interval: time.Minute, Hostname: "fake", Version: "hostile"})
	return f
}

// datagram frames m with the next sequence number.
func (f *fakeSender) datagram(m wire.Message) []byte {
	f.seq++
	h := wire.Header{Node: f.node, Incarnation: f.inc, Seq: f.seq}
	if f.aead != nil {
		h.Flags = wire.FlagSealed
	}
	b := wire.Append(nil, h, m)
	if f.aead == nil {
		return b
	}
	hdr := bytes.Clone(b[:wire.HeaderLen])
	return f.aead.Seal(bytes.Clone(hdr), hdr[8:], b[wire.HeaderLen:], hdr)
}

func (f *fakeSender) write(b []byte) {
	f.t.Helper()
	if _, err := f.conn.Write(b); err != nil {
		f.t.Fatalf("send: %v", err)
	}
}

func (f *fakeSender) send(m wire.Message) { f.write(f.datagram(m)) }

// fakeSession is a crafted session: one offer of every entry.
type fakeSession struct {
	id     uint64
	offers []*wire.Offer
}

func (f *fakeSender) newSession(entries []wire.Entry) *fakeSession {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := binary.BigEndian.Uint64(b[:])
	o := &wire.Offer{Session: id, BlockSize: fakeBlockSize, Entries: uint32(len(entries)), Count: 1, Items: entries}
	return &fakeSession{id: id, offers: []*wire.Offer{o}}
}

// offer sends the session's offers until every node in ids answered.
func (f *fakeSender) offer(tap *groupTap, ids map[string]wire.NodeID, s *fakeSession) {
	f.t.Helper()
	for _, o := range s.offers {
		f.send(o)
	}
	f.waitNeeds(tap, ids, s)
}

func (f *fakeSender) waitNeeds(tap *groupTap, ids map[string]wire.NodeID, s *fakeSession) {
	f.t.Helper()
	last := time.Now()
	eventually(f.t, 5*time.Second, func() bool {
		got := map[wire.NodeID]bool{}
		for _, d := range tap.since(0) {
			if n, ok := d.m.(*wire.Need); ok && n.Session == s.id {
				got[d.h.Node] = true
			}
		}
		for _, id := range ids {
			if !got[id] {
				if time.Since(last) > 300*time.Millisecond {
					last = time.Now()
					for _, o := range s.offers {
						f.send(o)
					}
				}
				return false
			}
		}
		return true
	}, "not every member answered the offer of session %016x", s.id)
}

// data sends content as the blocks of the session's file entries, in
// entry order.
func (f *fakeSender) data(s *fakeSession, contents ...[]byte) {
	var block uint64
	for _, c := range contents {
		for off := 0; off < len(c); off += fakeBlockSize {
			f.send(&wire.Data{Session: s.id, Block: block, Bytes: c[off:min(off+fakeBlockSize, len(c))]})
			block++
		}
	}
}

// commit sends Commit until every node in ids answered with a Result, and
// returns the results by node.
func (f *fakeSender) commit(tap *groupTap, ids map[string]wire.NodeID, s *fakeSession) map[wire.NodeID]*wire.Result {
	f.t.Helper()
	res := map[wire.NodeID]*wire.Result{}
	last := time.Time{}
	eventually(f.t, 5*time.Second, func() bool {
		if time.Since(last) > 300*time.Millisecond {
			last = time.Now()
			f.send(&wire.Commit{Session: s.id})
		}
		for _, d := range tap.since(0) {
			if r, ok := d.m.(*wire.Result); ok && r.Session == s.id {
				res[d.h.Node] = r
			}
		}
		for _, id := range ids {
			if res[id] == nil {
				return false
			}
		}
		return true
	}, "not every member answered the commit of session %016x", s.id)
	return res
}

// session runs a whole crafted session: offer, data, commit.
func (f *fakeSender) session(tap *groupTap, ids map[string]wire.NodeID, entries []wire.Entry, contents ...[]byte) map[wire.NodeID]*wire.Result {
	f.t.Helper()
	s := f.newSession(entries)
	f.offer(tap, ids, s)
	f.data(s, contents...)
	return f.commit(tap, ids, s)
}

// fileEntry is a regular file entry for content.
func fakeFileEntry(path string, content []byte) wire.Entry {
	return wire.Entry{Kind: wire.KindFile, Path: path, Mode: 0o644, Mtime: time.Now().UnixNano(),
		Size: uint64(len(content)), Hash: xxhash.Sum64(content)}
}

// tapped is one datagram seen on the group.
type tapped struct {
	raw []byte
	h   wire.Header
	m   wire.Message // nil when it did not open or parse
}

// groupTap records every datagram on the group, as seen from one host.
type groupTap struct {
	mu   sync.Mutex
	aead cipher.AEAD
	seen []tapped
}

// tapGroup listens to the group inside h's namespace until the test ends;
// aead opens sealed datagrams.
func tapGroup(t *testing.T, h *Host, aead cipher.AEAD) *groupTap {
	t.Helper()
	var c *net.UDPConn
	err := inNetns(h, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 108), Port: 5000})
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen to the group: %v", h.Name, err)
	}
	_ = c.SetReadBuffer(4 << 20)
	g := &groupTap{aead: aead}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, wire.MaxDatagram)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			g.add(bytes.Clone(buf[:n]))
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return g
}

func (g *groupTap) add(raw []byte) {
	d := tapped{raw: raw}
	h, payload, err := wire.ParseHeader(raw)
	if err == nil {
		d.h = h
		if h.Flags&wire.FlagSealed != 0 && g.aead != nil {
			payload, err = g.aead.Open(nil, raw[8:wire.HeaderLen], payload, raw[:wire.HeaderLen])
		} else if h.Flags&wire.FlagSealed != 0 {
			err = errors.New("sealed")
		}
	}
	if err == nil {
		d.m, _ = wire.ParsePayload(d.h.Type, payload)
	}
	g.mu.Lock()
	g.seen = append(g.seen, d)
	g.mu.Unlock()
}

func (g *groupTap) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

// since returns the datagrams recorded from index i on.
func (g *groupTap) since(i int) []tapped {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.seen[i:])
}

// nodeIDs maps each host's name to its daemon's node id.
func nodeIDs(t *testing.T, hosts []*Host) map[string]wire.NodeID {
	t.Helper()
	ids := map[string]wire.NodeID{}
	for _, h := range hosts {
		st, err := h.Status()
		if err != nil {
			t.Fatalf("%s: %v (daemon running: %v); its log:\n%s", h.Name, err, h.Running(), h.Log())
		}
		id, err := strconv.ParseUint(st.NodeID, 16, 64)
		if err != nil {
			t.Fatalf("%s: node id %q: %v", h.Name, st.NodeID, err)
		}
		ids[h.Name] = wire.NodeID(id)
	}
	return ids
}

// aeadFor derives the datagram AEAD from key file contents, as makuosan -k
// does.
func aeadFor(t *testing.T, secret string) cipher.AEAD {
	t.Helper()
	k, err := transport.DeriveKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	a, err := chacha20poly1305.NewX(k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expectFailed checks that every host answered the session with exactly
// the given failure codes (one per entry, in entry order) and applied
// nothing.
func expectFailed(t *testing.T, hosts []*Host, ids map[string]wire.NodeID, res map[wire.NodeID]*wire.Result, what string, codes ...wire.FailCode) {
	t.Helper()
	for _, h := range hosts {
		r := res[ids[h.Name]]
		if r == nil {
			t.Errorf("%s: %s: no result", h.Name, what)
			continue
		}
		var got []wire.FailCode
		var msgs []string
		for _, f := range r.Failures {
			got = append(got, f.Code)
			msgs = append(msgs, f.Msg)
		}
		if r.Applied != 0 || int(r.Failed) != len(codes) || !slices.Equal(got, codes) {
			t.Errorf("%s: %s: applied %d, failed %d %v %q; want %d failures %v",
				h.Name, what, r.Applied, r.Failed, got, msgs, len(codes), codes)
		} else {
			t.Logf("%s: %s: refused: %s", h.Name, what, strings.Join(msgs, "; "))
		}
	}
}

// dropCounters returns every host's dropped_* counters.
func dropCounters(t *testing.T, hosts []*Host) map[string]map[string]uint64 {
	t.Helper()
	out := map[string]map[string]uint64{}
	for _, h := range hosts {
		st, err := h.Status()
		if err != nil {
			t.Fatalf("%s: %v (daemon running: %v); its log:\n%s", h.Name, err, h.Running(), h.Log())
		}
		out[h.Name] = map[string]uint64{}
		for k, v := range st.Counters {
			if strings.HasPrefix(k, "dropped_") {
				out[h.Name][k] = v
			}
		}
	}
	return out
}

// expectDeltas checks that between before and after exactly the counters
// in want grew, by exactly that much.
func expectDeltas(t *testing.T, h *Host, before, after, want map[string]uint64) {
	t.Helper()
	for k, v := range after {
		if d := v - before[k]; d != want[k] {
			t.Errorf("%s: %s grew by %d, want %d", h.Name, k, d, want[k])
		}
	}
	for k := range want {
		if _, ok := after[k]; !ok {
			t.Errorf("%s: no counter %s in msync --status", h.Name, k)
		}
	}
}

// eventuallyDeltas waits until every host's counters grew by at least want
// since before.
func eventuallyDeltas(t *testing.T, hosts []*Host, before map[string]map[string]uint64, want map[string]uint64) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		now := dropCounters(t, hosts)
		for _, h := range hosts {
			for k, v := range want {
				if now[h.Name][k]-before[h.Name][k] < v {
					return false
				}
			}
		}
		return true
	}, "drop counters did not grow by %v on every host", want)
}

// expectHealthy checks that every daemon still runs, lists every member and
// logged no panic.
func expectHealthy(t *testing.T, hosts []*Host) {
	t.Helper()
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
		if !h.Running() {
			t.Fatalf("%s died:\n%s", h.Name, h.Log())
		}
		if strings.Contains(h.Log(), "panic") {
			t.Fatalf("%s logged a panic:\n%s", h.Name, h.Log())
		}
	}
	// The crafted sender joined with a heartbeat (sessions come from
	// members only): it may be listed, nothing else may change.
	withFake := append(slices.Clone(names), "fake")
	slices.Sort(withFake)
	for _, h := range hosts {
		if got := h.Hostnames(); !slices.Equal(got, names) && !slices.Equal(got, withFake) {
			t.Errorf("membership disturbed: %s sees %v", h.Name, got)
		}
	}
}

// expectLegitPush checks that a real msync push from the first host still
// reaches every other.
func expectLegitPush(t *testing.T, hosts []*Host) {
	t.Helper()
	name := "legit-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".txt"
	writeTreeFiles(t, hosts[0].Base, map[string]string{name: "a legitimate push"})
	out := parseMsyncOutput(t, stdoutOf(runMsync(t, hosts[0], 0, name)))
	var others []string
	for _, h := range hosts[1:] {
		others = append(others, h.Name)
	}
	expectPathLines(t, out, map[string]string{"send " + name: strings.Join(others, ",")})
	want := describeTree(t, hosts[0].Base)[name]
	for _, h := range hosts[1:] {
		if got := describeTree(t, h.Base)[name]; got != want {
			t.Errorf("%s: %s = %q after a legitimate push, want %q", h.Name, name, got, want)
		}
	}
}
