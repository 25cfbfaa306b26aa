package session

import (
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// peer is one receiver of a send session.
type peer struct {
	id       wire.NodeID
	answered bitset // per offer
	nAnswer  int
	prefix   int    // leading offers answered
	change   bitset // per entry
	data     bitset // per entry
	basis    bitset // per entry: holds an older copy to diff against
	heard    time.Time
	failed   string // why the member dropped out; "" while it takes part
	dropped  bool   // failed for silence (not for leaving the group)
	complete bool   // reported nothing missing at the final watermark
	// chunksAnswered records the chunk-list parts answered.
	chunksAnswered map[chunkPart]struct{}
	result         *wire.Result
	loss           lossRing
	delivery       deliveryState
	// answeredRound is the latest poll round this member answered: how
	// far behind the sender it works through its queue.
	answeredRound uint32
	needsData     bool // lacks some content of this session
	// items is what differs per entry, kept for dry runs and checks only
	// (msync -n -i), where nothing else is sent.
	items []wire.ItemFlags
}

func (p *peer) active() bool { return p.failed == "" }

// chunkPart names one Chunks message of a session: entry and first chunk.
type chunkPart struct{ entry, first uint32 }

// Outcome is what one member made of a finished session.
type Outcome struct {
	ID wire.NodeID
	// Failed says why the member dropped out of the session ("" if it
	// took part to the end); Dropped tells silence from leaving.
	Failed  string
	Dropped bool
	// Result is the member's answer to the commit (nil if it dropped out).
	Result *wire.Result
	change bitset
	data   bitset
	items  []wire.ItemFlags
}

// Items returns what differs on the member for entry i, as it reported
// (dry runs and checks only; zero when it said nothing more).
func (o *Outcome) Items(i int) wire.ItemFlags {
	if i < len(o.items) {
		return o.items[i]
	}
	return 0
}

// Changed reports whether the member changed (or, for a dry run or a
// check, would change or differs in) entry i.
func (o *Outcome) Changed(i int) bool { return o.change.has(uint64(i)) }

// SentData reports whether the member needed entry i's content.
func (o *Outcome) SentData(i int) bool { return o.data.has(uint64(i)) }

// Outcomes returns every member's outcome, in the order of
// SenderConfig.Members.
func (s *Sender) Outcomes() []Outcome {
	out := make([]Outcome, len(s.peers))
	for k, p := range s.peers {
		out[k] = Outcome{ID: p.id, Failed: p.failed, Dropped: p.dropped, Result: p.result, change: p.change, data: p.data, items: p.items}
	}
	return out
}
