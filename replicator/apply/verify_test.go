package apply

import (
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

// TestChunkCheck: a delta verified chunk by chunk passes only if every
// received chunk hashes as the sender's list says, whether its bytes are
// still in the write buffer or must be read back from the temp file; the
// chunks copied from a proven basis are not read.
func TestChunkCheck(t *testing.T) {
	sizes := []int{20000, 30000, 25000, 9000}
	have := []bool{true, false, true, false}
	tests := []struct {
		name    string
		corrupt int  // offset into the received bytes flipped, -1 none
		park    bool // flush and close the temp file halfway
		want    bool
	}{
		{"as sent", -1, false, true},
		{"as sent, read back after a park", -1, true, true},
		{"a received byte wrong", 12345, false, false},
		{"a received byte wrong, read back after a park", 29999, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := make([]byte, 0, 84000)
			var refs []wire.ChunkRef
			rng := rand.NewChaCha8([32]byte{7})
			for _, n := range sizes {
				b := make([]byte, n)
				rng.Read(b)
				refs = append(refs, wire.ChunkRef{Size: uint32(n), Hash: xxhash.Sum64(b)})
				content = append(content, b...)
			}
			d, err := stage.OpenUnsynced(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			tmp, err := d.CreateTemp("f")
			if err != nil {
				t.Fatal(err)
			}
			defer tmp.Abort()
			var pool bufPool
			f := &file{e: &wire.Entry{Size: uint64(len(content))}, tmp: tmp, digest: xxhash.New()}
			f.check = newChunkCheck(refs, have, make([]byte, chunk.MaxSize))
			// What the basis holds is in place before any block arrives,
			// as plan leaves it; the received chunks come in blocks.
			var off int64
			var received [][2]int64
			for c, n := range sizes {
				if have[c] {
					if _, err := tmp.WriteAt(content[off:off+int64(n)], off); err != nil {
						t.Fatal(err)
					}
				} else {
					received = append(received, [2]int64{off, off + int64(n)})
				}
				off += int64(n)
			}
			seen := 0
			for i, r := range received {
				for at := r[0]; at < r[1]; at += 1424 {
					b := append([]byte(nil), content[at:min(at+1424, r[1])]...)
					if k := tt.corrupt - seen; k >= 0 && k < len(b) {
						b[k] ^= 1
					}
					seen += len(b)
					if err := f.write(b, at, &pool); err != nil {
						t.Fatal(err)
					}
					if tt.park && i == 0 && at-r[0] > int64(sizes[1])/2 && !tmp.Parked() {
						if err := f.flush(); err != nil {
							t.Fatal(err)
						}
						if err := tmp.Park(); err != nil {
							t.Fatal(err)
						}
					}
				}
				end := r[1]
				if i+1 < len(received) {
					end = received[i+1][0]
				}
				if err := f.hashTo(end); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.flush(); err != nil {
				t.Fatal(err)
			}
			if err := f.hashTo(int64(len(content))); err != nil {
				t.Fatal(err)
			}
			if got := f.check.verified(); got != tt.want {
				t.Errorf("verified = %v, want %v", got, tt.want)
			}
			if f.hashed != 0 {
				t.Errorf("the whole-file digest advanced to %d: the basis's chunks were read", f.hashed)
			}
		})
	}
}
