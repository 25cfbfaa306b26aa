package tree

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
)

// reference builds the expected entry of rel from path-based system calls.
func reference(t *testing.T, dir, rel string) Entry {
	t.Helper()
	p := filepath.Join(dir, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	o, ok := statObs(&st)
	if !ok {
		t.Fatalf("%s: not indexable", rel)
	}
	e := Entry{
		Path: rel, Kind: o.kind, Mode: uint32(o.mode), Uid: o.uid, Gid: o.gid, Nlink: o.nlink,
		Mtime: o.mtime, Size: o.size, Rdev: o.rdev, Dev: o.dev, Ino: o.ino, Ctime: o.ctime,
	}
	switch o.kind {
	case KindFile:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		e.Hash = xxhash.Sum64(b)
	case KindSymlink:
		tg, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		e.Target = tg
	}
	return e
}

func TestScanKinds(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	apply(t, dir, mknod("chr", unix.S_IFCHR, 1, 3), mknod("blk", unix.S_IFBLK, 7, 200))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock")) // sockets are not indexed
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	x := newIndex(t, dir, Options{})
	st := scan(t, x)
	want := []string{".", "a.txt", "blk", "chr", "dangling", "dir", "dir/b.txt", "dir/emptydir",
		"dir/sub", "dir/sub/c.txt", "dir/up", "empty", "fifo", "link", "setuid", "sticky"}
	if got := paths(t, x, ""); !slices.Equal(got, want) {
		t.Fatalf("paths:\n%s\nwant:\n%s", joinLines(got), joinLines(want))
	}
	if st.Entries != len(want) || st.Added != len(want) || x.Len() != len(want) {
		t.Errorf("Entries %d, Added %d, Len %d, want %d", st.Entries, st.Added, x.Len(), len(want))
	}
	if st.FilesHashed != 5 || st.BytesRead != int64(len("hello")+len("bravo")+len("charlie")+len("x")) {
		t.Errorf("FilesHashed %d, BytesRead %d", st.FilesHashed, st.BytesRead)
	}
	for _, p := range want {
		got, ok := x.Lookup(p)
		if !ok {
			t.Fatalf("Lookup(%q) failed", p)
		}
		if ref := reference(t, dir, p); got.Kind != KindDir && !equalEntry(got, ref) {
			t.Errorf("%s:\n got %+v\nwant %+v", p, got, ref)
		} else if got.Kind == KindDir && (got.Mode != ref.Mode || got.Uid != ref.Uid || got.Ino != ref.Ino) {
			t.Errorf("%s:\n got %+v\nwant %+v", p, got, ref)
		}
	}
	for p, want := range map[string]struct {
		kind   Kind
		mode   uint32
		target string
		rdev   uint64
	}{
		"setuid":  {KindFile, 0o6755, "", 0},
		"sticky":  {KindDir, 0o1777, "", 0},
		"link":    {KindSymlink, 0o777, "dir/b.txt", 0},
		"dir/up":  {KindSymlink, 0o777, "../a.txt", 0},
		"fifo":    {KindFifo, 0o640, "", 0},
		"chr":     {KindCharDev, 0o600, "", unix.Mkdev(1, 3)},
		"blk":     {KindBlockDev, 0o600, "", unix.Mkdev(7, 200)},
		"dir/sub": {KindDir, 0o755, "", 0},
	} {
		e, _ := x.Lookup(p)
		if e.Kind != want.kind || e.Mode != want.mode || e.Target != want.target || e.Rdev != want.rdev {
			t.Errorf("%s: kind %s mode %#o target %q rdev %#x, want %s %#o %q %#x",
				p, e.Kind, e.Mode, e.Target, e.Rdev, want.kind, want.mode, want.target, want.rdev)
		}
	}
	if e, _ := x.Lookup("a.txt"); e.Hash != xxhash.Sum64String("hello") || e.Size != 5 || e.Mtime != baseNs {
		t.Errorf("a.txt: %+v", e)
	}
	if _, ok := x.Lookup("sock"); ok {
		t.Error("the unix socket is indexed")
	}
}

// equalEntry compares entries field by field (Chunks by content).
func equalEntry(a, b Entry) bool { return reflect.DeepEqual(a, b) }

func TestScanReusesHashes(t *testing.T) {
	dir := t.TempDir()
	var ops []op
	for i := range 20 {
		ops = append(ops, writeFile(filepath.Join("d"+string(rune('0'+i%4)), "f"+string(rune('a'+i))), strings.Repeat("x", 1000)))
	}
	apply(t, dir, ops...)
	x := newIndex(t, dir, Options{})

	if st := scan(t, x); st.FilesHashed != 20 || st.BytesRead != 20000 {
		t.Fatalf("first scan: FilesHashed %d, BytesRead %d", st.FilesHashed, st.BytesRead)
	}
	steps := []struct {
		name     string
		change   []op
		hashed   int
		bytes    int64
		modified []string
	}{
		{"unchanged", nil, 0, 0, nil},
		{"rewritten", []op{writeFile("d1/fb", strings.Repeat("y", 1500))}, 1, 1500, []string{"d1/fb"}},
		{"touched", []op{chtimes("d2/fc", time.Unix(5, 0))}, 1, 1000, []string{"d2/fc"}},
		{"same content, new ctime", []op{writeFile("d3/fd", strings.Repeat("x", 1000))}, 1, 1000, nil},
		{"unchanged again", nil, 0, 0, nil},
	}
	for _, s := range steps {
		apply(t, dir, s.change...)
		st := scan(t, x)
		if st.FilesHashed != s.hashed || st.BytesRead != s.bytes || !slices.Equal(st.Changed, s.modified) ||
			st.Modified != len(s.modified) || st.Added != 0 || st.Removed != 0 {
			t.Errorf("%s: FilesHashed %d BytesRead %d Changed %q (+%d ~%d -%d), want %d %d %q",
				s.name, st.FilesHashed, st.BytesRead, st.Changed, st.Added, st.Modified, st.Removed,
				s.hashed, s.bytes, s.modified)
		}
	}
}

func TestScanChanges(t *testing.T) {
	base := []op{
		writeFile("a.txt", "alpha"),
		writeFile("dir/b.txt", "bravo"),
		writeFile("dir/sub/c.txt", "charlie"),
		symlink("link", "a.txt"),
	}
	tests := []struct {
		name                     string
		change                   []op
		added, modified, removed int
		changed                  []string
	}{
		{"nothing", nil, 0, 0, 0, nil},
		{"add file", []op{writeFile("new.txt", "n")}, 1, 0, 0, []string{"new.txt"}},
		{"add tree", []op{writeFile("n/d/f", "n")}, 3, 0, 0, []string{"n", "n/d", "n/d/f"}},
		{"remove file", []op{removeAll("a.txt")}, 0, 0, 1, []string{"a.txt"}},
		{"remove tree", []op{removeAll("dir")}, 0, 0, 4, []string{"dir"}},
		{"file becomes dir", []op{removeAll("a.txt"), writeFile("a.txt/x", "x")}, 1, 1, 0, []string{"a.txt", "a.txt/x"}},
		{"dir becomes file", []op{removeAll("dir"), writeFile("dir", "d")}, 0, 1, 3, []string{"dir"}},
		{"dir becomes link", []op{removeAll("dir"), symlink("dir", "a.txt")}, 0, 1, 3, []string{"dir"}},
		{"chmod file", []op{chmod("a.txt", 0o600)}, 0, 1, 0, []string{"a.txt"}},
		{"chmod dir", []op{chmod("dir/sub", 0o700)}, 0, 1, 0, []string{"dir/sub"}},
		{"retarget link", []op{symlink("link", "dir/b.txt")}, 0, 1, 0, []string{"link"}},
		{"directory time only", []op{chtimes("dir", time.Unix(9, 0))}, 0, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			apply(t, dir, base...)
			x := newIndex(t, dir, Options{})
			scan(t, x)
			apply(t, dir, tc.change...)
			st := scan(t, x)
			if st.Added != tc.added || st.Modified != tc.modified || st.Removed != tc.removed ||
				!slices.Equal(st.Changed, tc.changed) {
				t.Errorf("+%d ~%d -%d %q, want +%d ~%d -%d %q", st.Added, st.Modified, st.Removed, st.Changed,
					tc.added, tc.modified, tc.removed, tc.changed)
			}
			fresh := newIndex(t, dir, Options{})
			scan(t, fresh)
			if !slices.EqualFunc(entries(t, x), entries(t, fresh), equalEntry) {
				t.Errorf("index after rescan differs from a fresh scan")
			}
			if x.Root() != fresh.Root() {
				t.Errorf("root %#x, fresh scan %#x", x.Root(), fresh.Root())
			}
		})
	}
}

func TestWalkOrder(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("a/b", ""), writeFile("a.b", ""), writeFile("a-c", ""), writeFile("b", ""))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{".", "a", "a/b", "a-c", "a.b", "b"}}, // a directory before its contents
		{".", []string{".", "a", "a/b", "a-c", "a.b", "b"}},
		{"a", []string{"a", "a/b"}},
		{"a/", []string{"a", "a/b"}},
		{"a/b", []string{"a/b"}},
		{"nope", nil},
	}
	for _, tc := range tests {
		if got := paths(t, x, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("Walk(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	var got []string
	err := x.Walk("", func(e Entry) error {
		got = append(got, e.Path)
		if e.Path == "a" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{".", "a", "a-c", "a.b", "b"}) {
		t.Errorf("SkipDir: %q, %v", got, err)
	}
	stop := errors.New("stop")
	got = nil
	err = x.Walk("", func(e Entry) error {
		got = append(got, e.Path)
		if e.Path == "a-c" {
			return stop
		}
		return nil
	})
	if err != stop || len(got) != 4 {
		t.Errorf("stop: %q, %v", got, err)
	}
}

func TestUpdateMatchesScan(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	x := newIndex(t, dir, Options{})
	scan(t, x)
	x.Root()
	steps := []struct {
		change []op
		path   string
		tree   bool
	}{
		{[]op{writeFile("a.txt", "changed content")}, "a.txt", false},
		{[]op{removeAll("dir/sub")}, "dir/sub", false},
		{[]op{writeFile("new/deep/file", "n")}, "new/deep/file", false}, // ancestors get added
		{[]op{writeFile("newdir/x", "x"), writeFile("newdir/y/z", "z")}, "newdir", true},
		{[]op{symlink("link", "elsewhere")}, "link", false},
		{[]op{chmod("dir", 0o700)}, "dir", false},
		{[]op{removeAll("fifo"), writeFile("fifo", "now a file")}, "fifo", false},
		{[]op{removeAll("empty"), writeFile("empty/inside", "i")}, "empty", true},
		{[]op{removeAll("dir/b.txt")}, "dir/b.txt", false},
		{[]op{removeAll("sticky"), symlink("sticky", "/")}, "sticky", false},
		{[]op{removeAll("new")}, "new/deep/file", false}, // an ancestor is gone
	}
	for i, s := range steps {
		apply(t, dir, s.change...)
		var err error
		if s.tree {
			_, err = x.UpdateTree(context.Background(), s.path)
		} else {
			_, err = x.Update(s.path)
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, s.path, err)
		}
		checkInvariants(t, x)
		fresh := newIndex(t, dir, Options{})
		scan(t, fresh)
		if x.Root() != fresh.Root() {
			t.Fatalf("step %d (%s): root %#x, fresh scan %#x", i, s.path, x.Root(), fresh.Root())
		}
		// Directory times may lag: Update refreshes only what it is given.
		if got, want := stripDirTimes(entries(t, x)), stripDirTimes(entries(t, fresh)); !slices.EqualFunc(got, want, equalEntry) {
			t.Fatalf("step %d (%s): entries differ from a fresh scan:\n%v\n%v", i, s.path, got, want)
		}
	}
}

func stripDirTimes(es []Entry) []Entry {
	out := slices.Clone(es)
	for i := range out {
		if out[i].Kind == KindDir {
			out[i].Mtime, out[i].Ctime, out[i].Nlink = 0, 0, 0
		}
	}
	return out
}

func TestUpdateAncestorKindChange(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("d/e/f", "f"), writeFile("d/g", "g"))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	// d becomes a file: an Update of a path below it records that.
	apply(t, dir, removeAll("d"), writeFile("d", "now a file"))
	st, err := x.Update("d/e/f")
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, x)
	if e, ok := x.Lookup("d"); !ok || e.Kind != KindFile || st.Modified != 1 || st.Removed != 3 {
		t.Errorf("d: %+v %v; stats %+v", e, ok, st)
	}
	if x.Len() != 2 {
		t.Errorf("Len %d, want 2", x.Len())
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	x := newIndex(t, dir, Options{})
	scan(t, x)
	n := x.Len()
	var files []Gone
	_ = x.Walk("dir", func(e Entry) error {
		if e.Kind == KindFile {
			files = append(files, Gone{Path: e.Path, Size: e.Size, Hash: e.Hash})
		}
		return nil
	})
	st, err := x.Remove("dir")
	if err != nil || st.Removed != 6 || !slices.Equal(st.Changed, []string{"dir"}) {
		t.Fatalf("Remove: %+v, %v", st, err)
	}
	if len(files) == 0 || !slices.Equal(st.Gone, files) {
		t.Errorf("Gone %+v, want the files that were below dir: %+v", st.Gone, files)
	}
	checkInvariants(t, x)
	if x.Len() != n-6 {
		t.Errorf("Len %d, want %d", x.Len(), n-6)
	}
	if _, ok := x.Lookup("dir/b.txt"); ok {
		t.Error("dir/b.txt still indexed")
	}
	if st, _ := x.Remove("dir"); st.Removed != 0 {
		t.Errorf("second Remove removed %d", st.Removed)
	}
	// The disk still has it: a scan adds it back.
	if st := scan(t, x); st.Added != 6 {
		t.Errorf("rescan added %d, want 6", st.Added)
	}
	if st, _ := x.Remove("."); st.Removed != n || x.Len() != 0 || x.Root() != 0 {
		t.Errorf(`Remove("."): %+v, Len %d, Root %#x`, st, x.Len(), x.Root())
	}
}

func TestChunks(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	apply(t, dir, writeFile("big", string(data)), writeFile("small", strings.Repeat("s", chunk.MinSize)), mkdir("d"))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	if e, _ := x.Lookup("big"); e.Chunks != nil {
		t.Fatal("chunks computed before being asked for")
	}
	e, err := x.Chunks("big")
	if err != nil {
		t.Fatal(err)
	}
	wantChunks, wantHash := chunk.SplitBytes(data)
	if !slices.Equal(e.Chunks, wantChunks) || e.Hash != wantHash || len(wantChunks) < 2 {
		t.Fatalf("Chunks: %d chunks, hash %#x; want %d, %#x", len(e.Chunks), e.Hash, len(wantChunks), wantHash)
	}
	again, err := x.Chunks("big")
	if err != nil || &again.Chunks[0] != &e.Chunks[0] {
		t.Errorf("second Chunks did not reuse the cached list (%v)", err)
	}
	if l, _ := x.Lookup("big"); &l.Chunks[0] != &e.Chunks[0] {
		t.Error("Lookup does not return the cached chunks")
	}
	if st := scan(t, x); st.BytesRead != 0 {
		t.Errorf("rescan read %d bytes", st.BytesRead)
	}
	if l, _ := x.Lookup("big"); &l.Chunks[0] != &e.Chunks[0] {
		t.Error("rescan dropped the cached chunks")
	}

	// A change: the rescan re-reads the file and keeps its chunk list current.
	copy(data[500_000:], "an edit in the middle")
	apply(t, dir, writeFile("big", string(data)))
	if st := scan(t, x); st.BytesRead != int64(len(data)) || !slices.Equal(st.Changed, []string{"big"}) {
		t.Errorf("rescan after edit: %+v", st)
	}
	wantChunks, wantHash = chunk.SplitBytes(data)
	if l, _ := x.Lookup("big"); !slices.Equal(l.Chunks, wantChunks) || l.Hash != wantHash {
		t.Error("chunks not refreshed by the rescan")
	}

	if e, err := x.Chunks("small"); err != nil || e.Chunks != nil || e.Size != chunk.MinSize {
		t.Errorf("Chunks(small): %+v, %v; want no chunk list", e, err)
	}
	if _, err := x.Chunks("d"); !errors.Is(err, ErrNotFile) {
		t.Errorf("Chunks(d): %v", err)
	}
	if _, err := x.Chunks("."); !errors.Is(err, ErrNotFile) {
		t.Errorf("Chunks(.): %v", err)
	}
	if _, err := x.Chunks("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Chunks(missing): %v", err)
	}
}

func TestUnstableFile(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("grows", strings.Repeat("g", 32<<20)))
	x := newIndex(t, dir, Options{})
	scan(t, x)

	f, err := os.OpenFile(filepath.Join(dir, "grows"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil { // fewer dirty pages, less throttling of the writer
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	started := make(chan struct{})
	go func() { // append one byte at a time until stopped: every append changes the size
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				if _, err := f.Write([]byte{'+'}); err != nil {
					t.Error(err)
					return
				}
				if i == 0 {
					close(started)
				}
			}
		}
	}()
	<-started
	// The writer may be throttled by the kernel (dirty page limits) for a
	// while: poll until a read overlaps its appends twice in a row.
	var st Stats
	for deadline := time.Now().Add(10 * time.Second); len(st.Unstable) == 0 && time.Now().Before(deadline); {
		if st, err = x.Update("grows"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if !slices.Equal(st.Unstable, []string{"grows"}) || st.FilesHashed != 2 {
		t.Fatalf("Unstable %q after %d reads, want [grows] after 2", st.Unstable, st.FilesHashed)
	}
	if e, _ := x.Lookup("grows"); !e.Unstable {
		t.Error("entry not flagged unstable")
	}
	// Quiet again: the next observation re-reads it though its key is the same.
	st, err = x.Update("grows")
	if err != nil || st.FilesHashed != 1 || len(st.Unstable) != 0 {
		t.Errorf("after the writer stopped: %+v, %v", st, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "grows"))
	if e, _ := x.Lookup("grows"); e.Unstable || e.Size != fi.Size() {
		t.Errorf("entry %+v, file size %d", e, fi.Size())
	}
	if st := scan(t, x); st.BytesRead != 0 {
		t.Errorf("stable file re-read: %d bytes", st.BytesRead)
	}
}

func TestRacyWindow(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("f", "fresh"), mtimeNow("f"), writeFile("old", "kept mtime"))
	x := newIndex(t, dir, Options{RacyWindow: time.Hour})
	if st := scan(t, x); st.FilesHashed != 2 {
		t.Fatalf("first scan read %d files, want 2", st.FilesHashed)
	}
	// f's ctime and mtime are within the window of its read: it must be
	// read again even though its key has not changed. old's mtime is not:
	// a write would change it, so old is not read again.
	for range 2 {
		if st := scan(t, x); st.FilesHashed != 1 || st.Changed != nil {
			t.Errorf("rescan: %+v; want f alone re-read, nothing changed", st)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if y, _ := New(root, Options{}); y.opt.RacyWindow != DefaultRacyWindow {
		t.Errorf("default RacyWindow %v", y.opt.RacyWindow)
	}
}

func TestScanCancelled(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	x := newIndex(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Scan(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan: %v, want context.Canceled", err)
	}
	checkInvariants(t, x)
}

func TestScanErrorsKeepEntries(t *testing.T) {
	if asNobody(t) { // root reads every directory: no permission error to provoke
		return
	}
	dir := t.TempDir()
	apply(t, dir, writeFile("ok", "ok"), writeFile("locked/f", "f"))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	apply(t, dir, chmod("locked", 0))
	defer os.Chmod(filepath.Join(dir, "locked"), 0o755)
	st, err := x.Scan(context.Background())
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Scan: %v, want a permission error", err)
	}
	if _, ok := x.Lookup("locked/f"); !ok || st.Removed != 0 {
		t.Errorf("unreadable directory's entries dropped: %+v", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	var ops []op
	for i := range 200 {
		ops = append(ops, writeFile(filepath.Join("d"+string(rune('a'+i%10)), "f"+string(rune('a'+i/10))), "content"))
	}
	apply(t, dir, ops...)
	x := newIndex(t, dir, Options{})
	scan(t, x)
	save := filepath.Join(t.TempDir(), "index")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() { // change files on disk and Update them
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ctx.Err() == nil && i < 300; i++ {
				rel := filepath.Join("d"+string(rune('a'+r.IntN(10))), "f"+string(rune('a'+r.IntN(20))))
				if r.IntN(4) == 0 {
					os.Remove(filepath.Join(dir, rel))
				} else {
					os.WriteFile(filepath.Join(dir, rel), []byte(strings.Repeat("z", r.IntN(100))), 0o644)
				}
				if _, err := x.Update(rel); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // rescans
		defer wg.Done()
		for i := 0; i < 5; i++ {
			if _, err := x.Scan(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	}()
	wg.Add(1)
	go func() { // readers
		defer wg.Done()
		for i := 0; i < 200; i++ {
			x.Root()
			x.DirHash("da")
			x.Lookup("da/fa")
			x.Len()
			_ = x.Walk("db", func(Entry) error { return nil })
			if i%50 == 0 {
				if err := x.Save(save); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	wg.Wait()
	cancel()
	checkInvariants(t, x)
	scan(t, x)
	fresh := newIndex(t, dir, Options{})
	scan(t, fresh)
	if x.Root() != fresh.Root() {
		t.Errorf("root %#x after concurrent use, fresh scan %#x", x.Root(), fresh.Root())
	}
}

func TestNodeSize(t *testing.T) {
	// The index's memory is mostly nodes: keep them within a 112-byte size class.
	if s := unsafe.Sizeof(node{}); s > 112 {
		t.Errorf("node is %d bytes", s)
	}
}

// TestUpdateWritten: a file whose content the caller vouches for is not
// read back, unless its size or mtime says it changed since.
func TestUpdateWritten(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("f", "received content"))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	real := xxhash.Sum64String("received content")
	tests := []struct {
		name     string
		c        Content
		wantRead int
		wantHash uint64
	}{
		{"vouched", Content{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Hash: 42}, 0, 42},
		{"other mtime", Content{Size: fi.Size(), Mtime: fi.ModTime().UnixNano() + 1, Hash: 43}, 1, real},
		{"other size", Content{Size: fi.Size() + 1, Mtime: fi.ModTime().UnixNano(), Hash: 44}, 1, real},
	}
	for _, tt := range tests {
		// Touch the ctime so the entry is not reusable as it stands.
		if err := os.Chmod(filepath.Join(dir, "f"), 0o600+os.FileMode(len(tt.name)%2)*0o40); err != nil {
			t.Fatal(err)
		}
		st, err := x.UpdateWritten([]Written{{Path: "f", Content: tt.c}})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		e, ok := x.Lookup("f")
		if !ok {
			t.Fatalf("%s: entry missing", tt.name)
		}
		if st.FilesHashed != tt.wantRead || e.Hash != tt.wantHash {
			t.Errorf("%s: read %d files, hash %#x; want %d, %#x", tt.name, st.FilesHashed, e.Hash, tt.wantRead, tt.wantHash)
		}
	}
}

// TestUpdateWrittenRacy: a vouched-for file is re-read by the next scan
// only if its mtime is as fresh as its ctime, as for a file read.
func TestUpdateWrittenRacy(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("fresh", "just written"), mtimeNow("fresh"), writeFile("kept", "sender's mtime"))
	x := newIndex(t, dir, Options{RacyWindow: time.Hour})
	var batch []Written
	for _, f := range []string{"fresh", "kept"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, Written{Path: f, Content: Content{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Hash: 7}})
	}
	if st, err := x.UpdateWritten(batch); err != nil || st.FilesHashed != 0 {
		t.Fatalf("UpdateWritten: read %d files, %v", st.FilesHashed, err)
	}
	st := scan(t, x)
	if st.FilesHashed != 1 {
		t.Errorf("scan read %d files, want 1 (fresh)", st.FilesHashed)
	}
	if e, _ := x.Lookup("kept"); e.Hash != 7 {
		t.Errorf("kept was re-read: hash %#x", e.Hash)
	}
	if e, _ := x.Lookup("fresh"); e.Hash != xxhash.Sum64String("just written") {
		t.Errorf("fresh hash %#x, want its content's", e.Hash)
	}
}

// TestUpdateWrittenBatch: a batch over several directories (one of them
// gone, one path invalid) records what exists, reads nothing vouched for,
// and ends with the root a fresh scan computes.
func TestUpdateWrittenBatch(t *testing.T) {
	dir := t.TempDir()
	x := newIndex(t, dir, Options{})
	scan(t, x)
	files := []string{"a/1", "a/2", "a/b/3", "c/4", "top"}
	var batch []Written
	for i, f := range files {
		apply(t, dir, writeFile(f, strings.Repeat("x", i+1)))
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, Written{Path: f, Content: Content{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(),
			Hash: xxhash.Sum64String(strings.Repeat("x", i+1))}})
	}
	batch = append(batch, Written{Path: "gone/5"}, Written{Path: "../escape"})
	st, err := x.UpdateWritten(batch)
	if err == nil {
		t.Fatal("an invalid path gave no error")
	}
	if st.FilesHashed != 0 {
		t.Errorf("read %d files, want 0", st.FilesHashed)
	}
	for _, f := range files {
		if _, ok := x.Lookup(f); !ok {
			t.Errorf("%s missing from the index", f)
		}
	}
	fresh := newIndex(t, dir, Options{})
	scan(t, fresh)
	if x.Root() != fresh.Root() {
		t.Fatalf("root %#x, fresh scan %#x", x.Root(), fresh.Root())
	}
}

// TestCachedHash: the cached hash is handed out only for the key it was
// taken under, and never for a racy or missing entry.
func TestCachedHash(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, writeFile("f", "content"), writeFile("racy", "fresh"), mtimeNow("racy"))
	x := newIndex(t, dir, Options{RacyWindow: time.Hour})
	scan(t, x)
	lstat := func(rel string) fs.FileInfo {
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if h, ok := x.CachedHash("f", lstat("f")); !ok || h != xxhash.Sum64String("content") {
		t.Errorf("f: %#x, %v; want its content's hash", h, ok)
	}
	if _, ok := x.CachedHash("racy", lstat("racy")); ok {
		t.Error("racy entry handed out")
	}
	if _, ok := x.CachedHash("other", lstat("f")); ok {
		t.Error("hash handed out for a path not in the index")
	}
	apply(t, dir, chmod("f", 0o600)) // new ctime, same content
	if _, ok := x.CachedHash("f", lstat("f")); ok {
		t.Error("hash handed out after the key changed")
	}
	if _, ok := x.CachedHash("", lstat(".")); ok {
		t.Error("hash handed out for a directory")
	}
}
