package watcher

import (
	"container/list"
	"path"
	"slices"
	"strings"
	"time"
)

// debouncer holds the pending changed paths and rescan roots and decides when
// each is due. A path is due once it has had no event for quiet, or once
// maxDelay has passed since its first pending event, whichever comes first.
// More than maxPerDir pending paths in one directory collapse into a rescan
// of that directory; more than maxPending entries in total collapse into a
// rescan of the whole base directory ("."). A pending rescan root absorbs
// every later event below it.
//
// The debouncer owns a timer whose channel, C, fires at the next deadline;
// after it fires the owner calls pop. Times passed in must not go backwards
// (they come from time.Now, whose monotonic clock guarantees it). All
// operations are O(1) amortised except a rescan that absorbs entries, which
// is O(pending). Not safe for concurrent use: the Run loop owns it.
type debouncer struct {
	quiet, maxDelay       time.Duration
	maxPerDir, maxPending int

	paths   map[string]*entry              // pending changed paths
	rescans map[string]*entry              // pending rescan roots
	perDir  map[string]map[string]struct{} // parent dir → its pending child paths
	byLast  list.List                      // all entries, oldest last event first
	byFirst list.List                      // all entries, oldest first event first
	timer   *time.Timer
}

// entry is one pending path or rescan root.
type entry struct {
	path        string
	rescan      bool
	first, last time.Time
	inLast      *list.Element
	inFirst     *list.Element
}

func newDebouncer(quiet, maxDelay time.Duration, maxPerDir, maxPending int) *debouncer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &debouncer{
		quiet:      quiet,
		maxDelay:   maxDelay,
		maxPerDir:  maxPerDir,
		maxPending: maxPending,
		paths:      make(map[string]*entry),
		rescans:    make(map[string]*entry),
		perDir:     make(map[string]map[string]struct{}),
		timer:      t,
	}
}

// C fires when at least one entry is due; then call pop.
func (d *debouncer) C() <-chan time.Time { return d.timer.C }

// len is the number of pending paths and rescan roots.
func (d *debouncer) len() int { return len(d.paths) + len(d.rescans) }

// stop releases the timer.
func (d *debouncer) stop() { d.timer.Stop() }

// addPath records an event on rel (a clean relative path, not ".") at now.
func (d *debouncer) addPath(rel string, now time.Time) {
	defer d.arm(now)
	if e := d.covering(rel); e != nil {
		d.touch(e, now)
		return
	}
	if e := d.paths[rel]; e != nil {
		d.touch(e, now)
		return
	}
	e := &entry{path: rel, first: now, last: now}
	e.inLast = d.byLast.PushBack(e)
	e.inFirst = d.byFirst.PushBack(e)
	d.paths[rel] = e
	dir := path.Dir(rel)
	kids := d.perDir[dir]
	if kids == nil {
		kids = make(map[string]struct{})
		d.perDir[dir] = kids
	}
	kids[rel] = struct{}{}
	switch {
	case len(kids) > d.maxPerDir:
		d.rescan(dir, now)
	case d.len() > d.maxPending:
		d.rescan(".", now)
	}
}

// addRescan asks for a full rescan of the subtree at root ("." = the whole
// base directory). Pending paths and roots below root are folded into it.
func (d *debouncer) addRescan(root string, now time.Time) {
	d.rescan(root, now)
	d.arm(now)
}

// pop removes and returns the entries due at now, each list sorted.
func (d *debouncer) pop(now time.Time) (paths, rescans []string) {
	take := func(e *entry) {
		if e.rescan {
			rescans = append(rescans, e.path)
		} else {
			paths = append(paths, e.path)
		}
		d.remove(e)
	}
	for el := d.byLast.Front(); el != nil; el = d.byLast.Front() {
		e := el.Value.(*entry)
		if now.Sub(e.last) < d.quiet {
			break
		}
		take(e)
	}
	for el := d.byFirst.Front(); el != nil; el = d.byFirst.Front() {
		e := el.Value.(*entry)
		if now.Sub(e.first) < d.maxDelay {
			break
		}
		take(e)
	}
	d.arm(now)
	slices.Sort(paths)
	slices.Sort(rescans)
	return paths, rescans
}

// next returns the time at which the earliest entry becomes due.
func (d *debouncer) next() (time.Time, bool) {
	fl, ff := d.byLast.Front(), d.byFirst.Front()
	if fl == nil {
		return time.Time{}, false
	}
	byQuiet := fl.Value.(*entry).last.Add(d.quiet)
	byMax := ff.Value.(*entry).first.Add(d.maxDelay)
	if byMax.Before(byQuiet) {
		return byMax, true
	}
	return byQuiet, true
}

func (d *debouncer) arm(now time.Time) {
	at, ok := d.next()
	if !ok {
		d.timer.Stop()
		return
	}
	d.timer.Reset(at.Sub(now))
}

// covering returns the pending rescan root that rel lies in, if any.
func (d *debouncer) covering(rel string) *entry {
	if len(d.rescans) == 0 {
		return nil
	}
	for p := rel; ; p = path.Dir(p) {
		if e := d.rescans[p]; e != nil {
			return e
		}
		if p == "." || p == "/" {
			return nil
		}
	}
}

func (d *debouncer) touch(e *entry, now time.Time) {
	e.last = now
	d.byLast.MoveToBack(e.inLast)
}

func (d *debouncer) rescan(root string, now time.Time) {
	if e := d.covering(root); e != nil {
		d.touch(e, now)
		return
	}
	first := now
	absorb := func(e *entry) {
		if e.first.Before(first) {
			first = e.first
		}
		d.remove(e)
	}
	for p, e := range d.paths {
		if within(p, root) {
			absorb(e)
		}
	}
	for p, e := range d.rescans {
		if within(p, root) {
			absorb(e)
		}
	}
	e := &entry{path: root, rescan: true, first: first, last: now}
	e.inLast = d.byLast.PushBack(e)
	// Keep byFirst ordered: the root inherits the oldest absorbed first event.
	at := d.byFirst.Back()
	for at != nil && at.Value.(*entry).first.After(first) {
		at = at.Prev()
	}
	if at == nil {
		e.inFirst = d.byFirst.PushFront(e)
	} else {
		e.inFirst = d.byFirst.InsertAfter(e, at)
	}
	d.rescans[root] = e
}

func (d *debouncer) remove(e *entry) {
	d.byLast.Remove(e.inLast)
	d.byFirst.Remove(e.inFirst)
	if e.rescan {
		delete(d.rescans, e.path)
		return
	}
	delete(d.paths, e.path)
	dir := path.Dir(e.path)
	if kids := d.perDir[dir]; kids != nil {
		delete(kids, e.path)
		if len(kids) == 0 {
			delete(d.perDir, dir)
		}
	}
}

// within reports whether p is root or lies below it; "." contains everything.
func within(p, root string) bool {
	if root == "." || p == root {
		return true
	}
	return strings.HasPrefix(p, root) && p[len(root)] == '/'
}
