package chunk

// Normalized chunking (FastCDC, level 2): between MinSize and AvgSize a cut
// needs maskSBits zero bits, which is 4x harder than the nominal 1/AvgSize,
// and past AvgSize it needs only maskLBits, 4x easier. Chunk sizes therefore
// cluster around AvgSize instead of spreading out exponentially, so fewer
// chunks hit MaxSize and fewer are tiny. maskL's bits are a subset of
// maskS's, so a point that qualifies under the hard rule also qualifies under
// the easy one; after an edit this lets the new boundaries meet the old ones
// again sooner.
//
// The masks select high bits of the hash. With the gear update
// fp = fp<<1 + gear[b], bit k of fp depends on the last k+1 bytes only, so
// bits 39..56 give a window of 40 to 57 bytes: a cut depends on the bytes
// just before it and on nothing earlier than the chunk start. The top seven
// bits are left out so that roll, which feeds eight bytes per iteration, can
// test the hash after each of them shifted left by up to seven bits without
// losing a masked bit.
const (
	maskSBits = 18
	maskLBits = 14
	maskS     = (1<<maskSBits - 1) << (57 - maskSBits) // bits 39..56
	maskL     = (1<<maskLBits - 1) << (57 - maskLBits) // bits 43..56
)

// cut returns the length of the first chunk of b. If len(b) < MaxSize, b is
// taken to be the rest of the stream, so a chunk that finds no cut point ends
// at len(b). It reads only b[MinSize:min(len(b), MaxSize)]: the first MinSize
// bytes of every chunk are skipped, as a cut there is not allowed anyway.
func cut(b []byte) int {
	n := len(b)
	if n <= MinSize {
		return n
	}
	n = min(n, MaxSize)
	normal := min(n, AvgSize)
	i, fp := roll(b[MinSize:normal], 0, maskS)
	if i >= 0 {
		return MinSize + i
	}
	if i, _ = roll(b[normal:n], fp, maskL); i >= 0 {
		return normal + i
	}
	return n
}

// roll feeds the bytes of b one by one into the gear hash fp and returns the
// number of bytes fed up to and including the first one after which
// fp&mask == 0. If there is none it returns -1 and the hash after all of b,
// so that a second call can carry on with another mask. mask must not use
// the top seven bits.
//
// It feeds eight bytes per iteration, extending FastCDC 2020's "rolling two
// bytes". With the bytes b0..b7, the hash after the k-th of them, shifted
// left by 8-k bits, is t_k = fp<<8 + gear[b0]<<7 + ... + gear[b(k-1)]<<(8-k),
// and it has the masked bits zero exactly when t_k&(mask<<(8-k)) == 0. So
// each step is one add and one test, t_8 is the new fp, and the
// loop-carried dependency is nine adds and shifts per eight bytes instead of
// sixteen. TestCutReference checks it against the one-byte loop.
func roll(b []byte, fp, mask uint64) (int, uint64) {
	m1, m2, m3, m4, m5, m6, m7 := mask<<1, mask<<2, mask<<3, mask<<4, mask<<5, mask<<6, mask<<7
	i := 0
	for n := len(b) - 7; i < n; i += 8 {
		t := fp<<8 + gear[b[i]]<<7
		if t&m7 == 0 {
			return i + 1, 0
		}
		t += gear[b[i+1]] << 6
		if t&m6 == 0 {
			return i + 2, 0
		}
		t += gear[b[i+2]] << 5
		if t&m5 == 0 {
			return i + 3, 0
		}
		t += gear[b[i+3]] << 4
		if t&m4 == 0 {
			return i + 4, 0
		}
		t += gear[b[i+4]] << 3
		if t&m3 == 0 {
			return i + 5, 0
		}
		t += gear[b[i+5]] << 2
		if t&m2 == 0 {
			return i + 6, 0
		}
		t += gear[b[i+6]] << 1
		if t&m1 == 0 {
			return i + 7, 0
		}
		fp = t + gear[b[i+7]]
		if fp&mask == 0 {
			return i + 8, 0
		}
	}
	for ; i < len(b); i++ {
		fp = fp<<1 + gear[b[i]]
		if fp&mask == 0 {
			return i + 1, 0
		}
	}
	return -1, fp
}
