package session

import (
	"math"
	"slices"
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

// lossRing holds a member's recent window loss rates.
type lossRing struct {
	losses [16]float64
	n      int
}

func (l *lossRing) add(loss float64) {
	l.losses[l.n%len(l.losses)] = loss
	l.n++
}

// floor is the typical recent loss rate (the median of the last windows):
// the loss this member sees whatever the rate (a bad cable, a busy host),
// which backing off would not cure. ok is false until enough windows have
// been seen to tell.
func (l *lossRing) floor() (floor, spread float64, ok bool) {
	n := min(l.n, len(l.losses))
	if n < 4 {
		return 0, 0, false
	}
	w := slices.Clone(l.losses[:n])
	slices.Sort(w)
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

// rateControl is a sender's adaptive rate: multiplicative back-off on
// congestion, at most once per round trip however many members complain,
// and growth once per round trip in which every member kept up.
type rateControl struct {
	rate, ceiling float64
	// slowedAt is the poll round current at the last back-off. Only
	// answers to later polls reflect the slower rate: earlier ones are no
	// reason to slow down again.
	slowedAt uint32
	grewAt   uint32 // the poll round current at the last speed-up
}

func newRateControl(start, ceiling float64) rateControl {
	if ceiling <= 0 {
		ceiling = MaxRate
	}
	if start <= 0 {
		start = StartRate
	}
	return rateControl{rate: min(max(start, MinRate), ceiling), ceiling: ceiling}
}

// backOff slows down once per round: answered is the round the complaint
// answers, round the current one.
func (r *rateControl) backOff(answered, round uint32) bool {
	if answered <= r.slowedAt {
		return false
	}
	r.slowedAt = round
	r.rate = max(r.rate*0.7, MinRate)
	return true
}

// grow speeds up once every member has answered a poll sent after the
// last change: per round, a fast sender would grow the rate a
// hundredfold before the first complaint came back.
func (r *rateControl) grow(round uint32, allAnsweredSince func(uint32) bool) {
	if r.slowedAt < round && allAnsweredSince(max(r.slowedAt, r.grewAt)) {
		r.rate = min(r.rate*1.1, r.ceiling)
		r.grewAt = round
	}
}
