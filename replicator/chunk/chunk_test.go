package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/cespare/xxhash/v2"
)

// randBytes returns n deterministic pseudo-random bytes (splitmix64 from
// seed). It is defined here, not taken from math/rand, so that the pinned
// vectors cannot move with a library change.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := range 8 {
			b[i+j] = byte(z >> (8 * j))
		}
	}
	return b[:n:n]
}

// refCut is the textbook one-byte-at-a-time FastCDC cut, kept as the
// reference for the optimized cut.
func refCut(b []byte) int {
	n := len(b)
	if n <= MinSize {
		return n
	}
	n = min(n, MaxSize)
	var fp uint64
	for i := MinSize; i < n; i++ {
		fp = fp<<1 + gear[b[i]]
		mask := uint64(maskL)
		if i < AvgSize {
			mask = maskS
		}
		if fp&mask == 0 {
			return i + 1
		}
	}
	return n
}

// refSplit chunks b with refCut.
func refSplit(b []byte) []Chunk {
	var out []Chunk
	for off := 0; off < len(b); {
		n := refCut(b[off:])
		out = append(out, Chunk{Offset: int64(off), Size: uint32(n), Hash: xxhash.Sum64(b[off : off+n])})
		off += n
	}
	return out
}

// collect runs a Chunker over r and checks that each returned slice hashes
// to the chunk's Hash.
func collect(t *testing.T, r io.Reader) ([]Chunk, uint64, error) {
	t.Helper()
	c := New(r)
	var out []Chunk
	for {
		ch, b, err := c.Next()
		if err == io.EOF {
			return out, c.Sum(), nil
		}
		if err != nil {
			return out, 0, err
		}
		if int(ch.Size) != len(b) || xxhash.Sum64(b) != ch.Hash {
			t.Fatalf("chunk %+v: returned %d bytes hashing to %#x", ch, len(b), xxhash.Sum64(b))
		}
		out = append(out, ch)
	}
}

// checkChunks verifies the structural invariants of chunks over data.
func checkChunks(t *testing.T, data []byte, chunks []Chunk) {
	t.Helper()
	var off int64
	for i, ch := range chunks {
		if ch.Offset != off {
			t.Fatalf("chunk %d at offset %d, want %d", i, ch.Offset, off)
		}
		last := i == len(chunks)-1
		if ch.Size > MaxSize || ch.Size == 0 || (!last && ch.Size < MinSize) {
			t.Fatalf("chunk %d of %d: size %d out of range", i, len(chunks), ch.Size)
		}
		if ch.End() > int64(len(data)) {
			t.Fatalf("chunk %d ends at %d past input length %d", i, ch.End(), len(data))
		}
		if h := xxhash.Sum64(data[ch.Offset:ch.End()]); h != ch.Hash {
			t.Fatalf("chunk %d: hash %#x, want %#x", i, ch.Hash, h)
		}
		off = ch.End()
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, input has %d", off, len(data))
	}
}

func TestGearTable(t *testing.T) {
	x := uint64(gearSeed)
	for i, got := range gear {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		if got != z {
			t.Fatalf("gear[%d] = %#x, splitmix64(%#x) gives %#x", i, got, uint64(gearSeed), z)
		}
	}
}

func TestMasks(t *testing.T) {
	for _, tc := range []struct {
		name string
		mask uint64
		bits int
	}{
		{"maskS", maskS, maskSBits},
		{"maskL", maskL, maskLBits},
	} {
		if got := popcount(tc.mask); got != tc.bits {
			t.Errorf("%s has %d bits, want %d", tc.name, got, tc.bits)
		}
		if tc.mask>>57 != 0 {
			t.Errorf("%s uses the top seven bits, which roll's shifted tests drop", tc.name)
		}
	}
}

func TestMasksNested(t *testing.T) {
	if maskS&maskL != maskL {
		t.Errorf("maskL %#x is not a subset of maskS %#x", uint64(maskL), uint64(maskS))
	}
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestCutReference compares the two-bytes-per-step cut with the plain one on
// inputs of every length parity and near each size limit.
func TestCutReference(t *testing.T) {
	data := randBytes(1, 4<<20)
	zeros := make([]byte, MaxSize+3)
	lengths := []int{0, 1, MinSize - 1, MinSize, MinSize + 1, MinSize + 2, MinSize + 3,
		AvgSize - 1, AvgSize, AvgSize + 1, MaxSize - 1, MaxSize, MaxSize + 1, MaxSize + 2}
	for _, n := range lengths {
		for _, src := range [][]byte{data, zeros} {
			if got, want := cut(src[:n]), refCut(src[:n]); got != want {
				t.Errorf("cut(len %d) = %d, reference %d", n, got, want)
			}
		}
	}
	// Every start offset in a window, so cut points land on both parities
	// and in both the maskS and maskL regions.
	for off := 0; off < 4096; off += 7 {
		want := refCut(data[off:])
		if got := cut(data[off:]); got != want {
			t.Fatalf("cut at offset %d = %d, reference %d", off, got, want)
		}
		// Ending the input right at the cut puts it in roll's tail loop
		// whenever the region length is not a multiple of eight.
		for _, end := range []int{want, want - 1} {
			if got, ref := cut(data[off:off+end]), refCut(data[off:off+end]); got != ref {
				t.Fatalf("cut at offset %d, length %d = %d, reference %d", off, end, got, ref)
			}
		}
	}
	got, _ := SplitBytes(data)
	if want := refSplit(data); !slices.Equal(got, want) {
		t.Fatalf("SplitBytes differs from the reference: %d vs %d chunks", len(got), len(want))
	}
}

// TestVectors pins the boundaries and hashes of a fixed pseudo-random input,
// so that any change to the gear table, masks or sizes is caught: such a
// change makes every node's cached chunk lists useless.
func TestVectors(t *testing.T) {
	data := randBytes(0x5eed, 1<<20)
	want := []Chunk{
		{0, 73486, 0x31bd5a961c8fb93e},
		{73486, 26861, 0x2ed3a18ad6e44932},
		{100347, 70658, 0x96bc7d38e9c8bf71},
		{171005, 23508, 0xecf13348b2fd9fcd},
		{194513, 69441, 0x74f49b1f534c506e},
		{263954, 96811, 0xbee84483c0755bea},
		{360765, 83423, 0xe1e9f84ada23da06},
		{444188, 125336, 0x7ee30afdf8947079},
		{569524, 75141, 0x3f6bced7dd5173b1},
		{644665, 86667, 0xc9e3b529a17f18d8},
		{731332, 80376, 0x2945dfb71afd5402},
		{811708, 82896, 0xdce2080d83d79955},
		{894604, 73424, 0x7046d243945e904f},
		{968028, 80548, 0x1caf13364b4bf9bb},
	}
	const wantWhole = 0xfbe4c5d7901b0e03
	chunks, whole := SplitBytes(data)
	if !slices.Equal(chunks, want) || whole != wantWhole {
		for _, c := range chunks {
			t.Logf("{%d, %d, %#016x},", c.Offset, c.Size, c.Hash)
		}
		t.Logf("whole %#016x", whole)
		t.Fatalf("chunks of the pinned input changed")
	}
}

func TestSmallInputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want []uint32 // chunk sizes
	}{
		{"empty", nil, nil},
		{"one byte", []byte{7}, []uint32{1}},
		{"below MinSize", randBytes(2, MinSize-1), []uint32{MinSize - 1}},
		{"exactly MinSize", randBytes(3, MinSize), []uint32{MinSize}},
		{"MaxSize zeros", make([]byte, MaxSize), []uint32{MaxSize}},
		{"3 MaxSize zeros", make([]byte, 3*MaxSize), []uint32{MaxSize, MaxSize, MaxSize}},
		{"3 MaxSize+5 zeros", make([]byte, 3*MaxSize+5), []uint32{MaxSize, MaxSize, MaxSize, 5}},
		{"MaxSize+1 ones", bytes.Repeat([]byte{1}, MaxSize+1), []uint32{MaxSize, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, whole, err := collect(t, bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var sizes []uint32
			for _, c := range chunks {
				sizes = append(sizes, c.Size)
			}
			if !slices.Equal(sizes, tc.want) {
				t.Errorf("sizes %v, want %v", sizes, tc.want)
			}
			if want := xxhash.Sum64(tc.data); whole != want {
				t.Errorf("whole %#x, want %#x", whole, want)
			}
			checkChunks(t, tc.data, chunks)
			if b, _ := SplitBytes(tc.data); !slices.Equal(b, chunks) {
				t.Errorf("SplitBytes gives %v, Chunker %v", b, chunks)
			}
		})
	}
	if _, whole, _ := Split(bytes.NewReader(nil)); whole != 0xef46db3751d8e999 {
		t.Errorf("whole hash of empty input %#x, want xxhash64(\"\") = 0xef46db3751d8e999", whole)
	}
}

// TestReaders checks that the reader's buffering does not change the result.
func TestReaders(t *testing.T) {
	data := randBytes(4, 3*MaxSize+12345)
	// A run of zeros forces MaxSize cuts inside otherwise random data.
	clear(data[MaxSize : 2*MaxSize+100])
	want, wantWhole := SplitBytes(data)
	for _, tc := range []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{"bytes.Reader", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"one byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
		{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
		{"data with EOF", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
		{"odd sizes and empty reads", func(b []byte) io.Reader { return &jerkyReader{b: b} }},
		{"multi", func(b []byte) io.Reader {
			return io.MultiReader(bytes.NewReader(b[:1000]), bytes.NewReader(b[1000:MaxSize+3]), bytes.NewReader(b[MaxSize+3:]))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, whole, err := collect(t, tc.r(data))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) || whole != wantWhole {
				t.Fatalf("got %d chunks (whole %#x), want %d (whole %#x)", len(got), whole, len(want), wantWhole)
			}
		})
	}
}

// jerkyReader returns reads of varying sizes, with an empty read now and
// then.
type jerkyReader struct {
	b []byte
	i int
}

func (r *jerkyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	r.i++
	n := min(len(p), len(r.b), []int{0, 1, 17, 4093, 70000, 1 << 20}[r.i%6])
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func TestReadErrors(t *testing.T) {
	errBoom := errors.New("boom")
	data := randBytes(5, 2*bufSize)
	all, _ := SplitBytes(data)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
		min  int // chunks that must come out before the error
	}{
		{"error at start", iotest.ErrReader(errBoom), errBoom, 0},
		{"error after data", io.MultiReader(bytes.NewReader(data[:bufSize+MaxSize]), iotest.ErrReader(errBoom)), errBoom, 3},
		{"error with data", iotest.TimeoutReader(bytes.NewReader(data)), iotest.ErrTimeout, 3},
		{"no progress", emptyReader{}, io.ErrNoProgress, 0},
		{"negative count", badReader(-1), errBadCount, 0},
		{"count too large", badReader(1 << 30), errBadCount, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, whole, err := Split(tc.r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if whole != 0 {
				t.Errorf("whole = %#x on error, want 0", whole)
			}
			if len(got) < tc.min {
				t.Errorf("%d chunks before the error, want at least %d", len(got), tc.min)
			}
			if len(got) > len(all) || !slices.Equal(got, all[:len(got)]) {
				t.Errorf("chunks before the error are not a prefix of the true chunks")
			}
		})
	}
	// The error is sticky.
	c := New(iotest.ErrReader(errBoom))
	for range 3 {
		if _, _, err := c.Next(); !errors.Is(err, errBoom) {
			t.Fatalf("Next = %v, want %v", err, errBoom)
		}
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

type badReader int

func (r badReader) Read([]byte) (int, error) { return int(r), nil }

// TestEdits checks locality: an edit changes only the chunks around it.
func TestEdits(t *testing.T) {
	base := randBytes(6, 8<<20)
	mid := len(base) / 2
	for _, tc := range []struct {
		name     string
		edit     func([]byte) []byte
		maxFresh int // chunks of the new version missing from the old
	}{
		{"insert 100 bytes near start", func(b []byte) []byte {
			return slices.Concat(b[:1000], randBytes(7, 100), b[1000:])
		}, 2},
		// These 100 bytes create a cut point 28 bytes after themselves,
		// and the boundaries then take five chunks to fall back into step
		// with the old ones: the rare tail of normalized chunking (see the
		// package doc), pinned here so that it does not silently grow.
		{"insert 100 bytes in middle, a cascade", func(b []byte) []byte {
			return slices.Concat(b[:mid], randBytes(7, 100), b[mid:])
		}, 6},
		{"overwrite 4 KiB in middle", func(b []byte) []byte {
			b = slices.Clone(b)
			copy(b[mid:], randBytes(8, 4096))
			return b
		}, 2},
		{"delete 4 KiB in middle", func(b []byte) []byte {
			return slices.Concat(b[:mid], b[mid+4096:])
		}, 2},
		{"append 1 MiB", func(b []byte) []byte {
			return slices.Concat(b, randBytes(9, 1<<20))
		}, 1 + (1<<20)/MinSize}, // checked more strictly below
		{"truncate 1 MiB", func(b []byte) []byte {
			return b[:len(b)-1<<20]
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, _ := SplitBytes(base)
			edited := tc.edit(base)
			cur, _ := SplitBytes(edited)
			have := make(map[uint64]bool, len(old))
			for _, c := range old {
				have[c.Hash] = true
			}
			fresh, freshBytes := 0, 0
			for _, c := range cur {
				if !have[c.Hash] {
					fresh++
					freshBytes += int(c.Size)
				}
			}
			t.Logf("%d of %d chunks new (%d KiB)", fresh, len(cur), freshBytes>>10)
			if fresh > tc.maxFresh {
				t.Errorf("%d chunks of %d changed, want at most %d", fresh, len(cur), tc.maxFresh)
			}
		})
	}
	// Appending keeps every old chunk but the last, at the same offsets.
	old, _ := SplitBytes(base)
	cur, _ := SplitBytes(slices.Concat(base, randBytes(9, 1<<20)))
	if !slices.Equal(cur[:len(old)-1], old[:len(old)-1]) {
		t.Errorf("append changed chunks before the old last one")
	}
}

// TestRandomEdits applies small random edits at random places and checks
// that the chunks they change are few on average and in the worst case.
func TestRandomEdits(t *testing.T) {
	base := randBytes(14, 2<<20)
	old, _ := SplitBytes(base)
	have := make(map[uint64]bool, len(old))
	for _, c := range old {
		have[c.Hash] = true
	}
	const trials = 45
	total, worst := 0, 0
	for k := range uint64(trials) {
		r := randBytes(1000+k, 16)
		pos := int(binary.LittleEndian.Uint64(r) % uint64(len(base)-MaxSize))
		size := 1 + int(r[8])%200
		var edited []byte
		switch k % 3 {
		case 0:
			edited = slices.Concat(base[:pos], randBytes(2000+k, size), base[pos:])
		case 1:
			edited = slices.Concat(base[:pos], base[pos+size:])
		case 2:
			edited = slices.Clone(base)
			copy(edited[pos:], randBytes(2000+k, size))
		}
		cur, _ := SplitBytes(edited)
		fresh := 0
		for _, c := range cur {
			if !have[c.Hash] {
				fresh++
			}
		}
		total += fresh
		worst = max(worst, fresh)
	}
	t.Logf("%d edits: %.2f new chunks on average, %d at worst", trials, float64(total)/trials, worst)
	if total > trials*3/2 || worst > 4 {
		t.Errorf("%d edits changed %d chunks, worst %d; want at most 1.5 on average and 4 at worst", trials, total, worst)
	}
}

// TestSizeDistribution checks that normalized chunking centres sizes near
// AvgSize on random data.
func TestSizeDistribution(t *testing.T) {
	chunks, _ := SplitBytes(randBytes(10, 16<<20))
	var total, atMax, belowAvg int
	for _, c := range chunks[:len(chunks)-1] {
		total += int(c.Size)
		if c.Size == MaxSize {
			atMax++
		}
		if c.Size < AvgSize {
			belowAvg++
		}
	}
	n := len(chunks) - 1
	mean := total / n
	t.Logf("%d chunks, mean %d KiB, %d below AvgSize, %d at MaxSize", n, mean>>10, belowAvg, atMax)
	if mean < AvgSize || mean > AvgSize*3/2 {
		t.Errorf("mean chunk size %d, want within [AvgSize, 1.5 AvgSize]", mean)
	}
	if atMax > 0 {
		t.Errorf("%d chunks of random data hit MaxSize", atMax)
	}
}

func TestReset(t *testing.T) {
	a, b := randBytes(11, MaxSize*5), randBytes(12, MinSize*3)
	wantA, wholeA := SplitBytes(a)
	wantB, wholeB := SplitBytes(b)
	var c Chunker // the zero value is usable after Reset
	for _, tc := range []struct {
		data  []byte
		want  []Chunk
		whole uint64
		stop  int // stop after this many chunks, then Reset
	}{
		{a, wantA, wholeA, 2},
		{b, wantB, wholeB, -1},
		{a, wantA, wholeA, -1},
		{nil, nil, 0xef46db3751d8e999, -1},
	} {
		c.Reset(bytes.NewReader(tc.data))
		var got []Chunk
		for {
			ch, _, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ch)
			if len(got) == tc.stop {
				// Restart mid-stream; the next pass must not see leftovers.
				c.Reset(bytes.NewReader(tc.data))
				got = got[:0]
				tc.stop = -1
			}
		}
		if !slices.Equal(got, tc.want) || c.Sum() != tc.whole {
			t.Errorf("after Reset: %d chunks (whole %#x), want %d (whole %#x)", len(got), c.Sum(), len(tc.want), tc.whole)
		}
	}
}

func TestAllocs(t *testing.T) {
	data := randBytes(13, 4<<20)
	r := bytes.NewReader(data)
	c := New(r)
	allocs := testing.AllocsPerRun(5, func() {
		r.Reset(data)
		c.Reset(r)
		for {
			if _, _, err := c.Next(); err != nil {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per stream, want 0", allocs)
	}
}
