package session

import (
	"math"
	"slices"

	"github.com/makuo/makuo/replicator/wire"
)

// Send rates, in bits per second.
const (
	// MinRate is the floor of the adaptive rate: backing off further would
	// make a lossy member stall everyone instead of costing repairs.
	MinRate = 10e6
	// StartRate is where a sender's first session starts probing.
	StartRate = 200e6
	// MaxRate is the adaptive ceiling when no cap is configured.
	MaxRate = 20e9
)

// lossWindow is the minimum window (blocks a member needed between two
// polls) whose loss rate is worth reading: below it one lost block swings
// the rate by several percent.
const lossWindow = 64

// recent holds the last values added to it, up to 16.
type recent struct {
	v [16]float64
	n int
}

func (r *recent) add(x float64) {
	r.v[r.n%len(r.v)] = x
	r.n++
}

// sorted returns the last k values added (fewer if fewer were), sorted.
func (r *recent) sorted(k int) []float64 {
	n := min(r.n, k, len(r.v))
	w := make([]float64, 0, n)
	for i := r.n - n; i < r.n; i++ {
		w = append(w, r.v[i%len(r.v)])
	}
	slices.Sort(w)
	return w
}

// lossRing holds a member's recent window loss rates.
type lossRing struct{ recent }

// floor is the typical recent loss rate (the median of the last windows):
// the loss this member sees whatever the rate (a bad cable, a busy host),
// which backing off would not cure. ok is false until enough windows have
// been seen to tell.
func (l *lossRing) floor() (floor, spread float64, ok bool) {
	w := l.sorted(len(l.v))
	n := len(w)
	if n < 4 {
		return 0, 0, false
	}
	return w[n/2], w[3*n/4] - w[n/4], true
}

// congested reports whether a window loss rate is beyond what the member
// always loses: the rate overruns the link or the member. The margin is
// three standard deviations of the floor's binomial noise, so that random
// loss alone rarely triggers a back-off, and twice the spread actually
// seen, since loss comes in bursts (a dropped offload send, a switch buffer
// overflowing) and then varies far more between windows than independent
// drops would.
func (l *lossRing) congested(loss float64, window uint32) bool {
	floor, spread, known := l.floor()
	margin := max(0.03, 3*math.Sqrt(floor*(1-floor)/float64(window)), 2*spread)
	return loss > 0.5 || (known && loss > 0.01 && loss > floor+margin)
}

// Rate control by delivery: receivers report the rate data reaches them
// (wire.NackDelivery), and the sender compares it with the rate it sent
// those windows at. Loss alone cannot tell a bottleneck from a bad cable:
// a sender that overruns a shaped link loses the same share of every
// window, which then looks like the member's usual loss. The delivered
// rate can: past a bottleneck it stays at the link's rate whatever the
// sender does, while random loss takes the same share at any rate.
const (
	// capBelow: a member that gets less than this share of the sending
	// rate (of its clean share, see deliveryState) is overrun, and the
	// rate is capped; growth needs every member at or above it. Random
	// loss of a few percent stays well clear of it.
	capBelow = 0.9
	// capAt is the rate a cap sets, as a share of the delivered rate:
	// below the bottleneck, so that the queue the overrun built drains
	// (the link stays busy meanwhile).
	capAt = 0.9
	// drainAbove: a member that gets more than this share of what was
	// sent is being fed from a queue that drains; the rate does not grow
	// until it has (it would refill the queue, and a full one drops).
	drainAbove = 1.05
	// growth is the speed-up per round trip in which every member kept
	// up; probeGrowth the faster one of a session that starts from
	// nothing known, until it first slows down: delivery shows an overrun
	// within a round trip, long before a bottleneck's queue overflows.
	growth      = 1.1
	probeGrowth = 1.5
)

// rateControl is a sender's adaptive rate: a cap just below the rate a
// member gets when it gets less than it is sent, multiplicative back-off
// on congestion loss, each at most once per round trip however many
// members complain, and growth once per round trip in which every member
// kept up.
type rateControl struct {
	rate, ceiling float64
	// slowedAt is the poll round current at the last back-off or cap.
	// Only answers to later polls reflect the slower rate: earlier ones
	// are no reason to slow down again.
	slowedAt uint32
	grewAt   uint32 // the poll round current at the last speed-up
	// capped is the rate the latest cap set (0 before any): windows sent
	// at or below it were not overrun by the sender.
	capped float64
	// probing: nothing is known of the path yet (no slow-down, and the
	// start rate is not one an earlier session settled at).
	probing bool
}

func newRateControl(start, ceiling float64, settled bool) rateControl {
	if ceiling <= 0 {
		ceiling = MaxRate
	}
	if start <= 0 {
		start = StartRate
	}
	return rateControl{rate: min(max(start, MinRate), ceiling), ceiling: ceiling, probing: !settled}
}

// backOff slows down once per round: answered is the round the complaint
// answers, round the current one.
func (r *rateControl) backOff(answered, round uint32) bool {
	if answered <= r.slowedAt {
		return false
	}
	r.slowedAt, r.probing = round, false
	r.rate = max(r.rate*0.7, MinRate)
	return true
}

// capTo slows down to just below delivered (bits/s), once per round like
// backOff; it never speeds up.
func (r *rateControl) capTo(delivered float64, answered, round uint32) bool {
	target := max(delivered*capAt, MinRate)
	if answered <= r.slowedAt || target >= r.rate {
		return false
	}
	r.slowedAt, r.probing = round, false
	r.rate, r.capped = target, target
	return true
}

// grow speeds up once every member has kept up with a poll sent after the
// last change: per round, a fast sender would grow the rate a
// hundredfold before the first complaint came back.
func (r *rateControl) grow(round uint32, keptUpSince func(uint32) bool) {
	if r.slowedAt < round && keptUpSince(max(r.slowedAt, r.grewAt)) {
		switch {
		case r.probing:
			r.rate = min(r.rate*probeGrowth, r.ceiling)
		case r.rate < r.capped:
			// Back to the last cap fast: a back-off for loss went
			// below a rate the path was seen to carry.
			r.rate = min(r.rate*probeGrowth, r.capped)
		default:
			r.rate = min(r.rate*growth, r.ceiling)
		}
		r.grewAt = round
	}
}

// deliveryState is what a member's delivery reports told.
type deliveryState struct {
	measures bool   // it reports delivery (a receiver of before the reports does not)
	to       uint32 // the poll round its latest report answered: the next covers later windows
	freshAt  uint32 // the round of its latest report that was weighed
	keptUp   bool   // that report kept up with the sending rate
	// clean holds the shares of the sending rate it got in windows sent
	// at or below the latest cap, which did not overrun anything: its
	// random loss, which a cap would not cure.
	clean ratioRing
}

// ratioRing holds recent delivery shares.
type ratioRing struct{ recent }

// share is the typical share of the last 8 (the median), at most 1; 1
// before any.
func (k *ratioRing) share() float64 {
	w := k.sorted(8)
	if len(w) == 0 {
		return 1
	}
	return min(w[len(w)/2], 1)
}

// delivered weighs member p's delivery report m against what the sender
// sent in the windows it covers: a cap when p got less than capBelow of
// it, and whether p kept up with the fastest rate of those windows, and
// with no queue draining, for growth.
func (s *Sender) delivered(p *peer, m *wire.Nack) {
	dv := &p.delivery
	dv.measures = true
	d := &s.data
	if m.Span == 0 || m.Round <= dv.to {
		return
	}
	from := dv.to
	dv.to = m.Round
	sent, hi := d.windows.rates(from, m.Round)
	if sent == 0 {
		return
	}
	rate := float64(m.Delivered) * 8 / (float64(m.Span) / 1e6)
	if s.rate.capped > 0 && hi <= s.rate.capped {
		dv.clean.add(rate / sent)
	}
	share := dv.clean.share()
	dv.freshAt, dv.keptUp = m.Round, rate >= capBelow*share*hi && rate <= drainAbove*sent
	if p.needsData && rate < capBelow*share*sent && s.rate.capTo(rate, m.Round, d.round) {
		s.stats.Caps++
	}
}

// keptUpSince reports whether every active member that needs data kept
// up with the windows after round: by its latest delivery report, or for
// a member that sends none, by answering at all.
func (s *Sender) keptUpSince(round uint32) bool {
	for _, p := range s.peers {
		if !p.active() || !p.needsData {
			continue
		}
		if dv := &p.delivery; dv.measures {
			if dv.freshAt <= round || !dv.keptUp {
				return false
			}
		} else if p.answeredRound <= round {
			return false
		}
	}
	return true
}
