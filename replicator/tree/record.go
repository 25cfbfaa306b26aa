package tree

import "slices"

// apply records the observation o of rel, whose parent directory is
// already recorded. The caller holds wmu.
func (x *Index) apply(rel string, o *obs, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if rel == "." {
		if x.top == nil {
			x.top = newNode("", o)
			x.count = 1
			st.added(rel)
		} else if x.top.set(o) {
			st.modified(rel) // the base has no record of its own to rehash
		}
		return
	}
	dir, name := splitRel(rel)
	p := x.nodeAt(dir)
	if p == nil || p.dir == nil {
		return // cannot happen: the caller recorded the parent in this unit
	}
	i, found := p.find(name)
	switch {
	case !found:
		n := newNode(name, o)
		n.parent = p
		p.dir.kids = slices.Insert(p.dir.kids, i, n)
		x.count++
		st.added(rel)
	case p.dir.kids[i].kind == o.kind:
		if !p.dir.kids[i].set(o) {
			return
		}
		st.modified(rel)
	default:
		c := st.removed(rel, p.dir.kids[i]) - 1
		x.count -= c
		st.Removed += c
		n := newNode(name, o)
		n.parent = p
		p.dir.kids[i] = n
		st.modified(rel)
	}
	markDirty(p)
}

// removeLocked drops rel and its subtree. The caller holds wmu.
func (x *Index) removeLocked(rel string, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.nodeAt(rel)
	if n == nil {
		return
	}
	c := st.removed(rel, n)
	x.count -= c
	st.Removed += c
	st.Changed = append(st.Changed, rel)
	if n.parent == nil {
		x.top = nil
		return
	}
	p := n.parent
	i, _ := p.find(n.name)
	p.dir.kids = slices.Delete(p.dir.kids, i, i+1)
	markDirty(p)
}

// removed lists the files of the subtree of n, at path rel, in Gone,
// and returns how many entries it holds.
func (st *Stats) removed(rel string, n *node) int {
	if n.kind == KindFile {
		st.Gone = append(st.Gone, Gone{Path: rel, Size: n.size, Hash: n.hash})
	}
	c := 1
	if n.dir != nil {
		for _, k := range n.dir.kids {
			c += st.removed(joinRel(rel, k.name), k)
		}
	}
	return c
}

func (st *Stats) added(rel string) {
	st.Added++
	st.Changed = append(st.Changed, rel)
}

func (st *Stats) modified(rel string) {
	st.Modified++
	st.Changed = append(st.Changed, rel)
}
