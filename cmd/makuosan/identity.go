package main

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// identitySpec is what -u, -g and -G asked for, as given.
type identitySpec struct {
	user, group, groups string
}

// identity is the set of ids the daemon switches to after binding. A
// negative uid or gid, or nil groups, keeps the current one; the zero
// value is not valid, use keepIdentity.
type identity struct {
	uid, gid int
	// groups are the supplementary groups, sorted and without duplicates.
	groups []int
}

var keepIdentity = identity{uid: -1, gid: -1}

// changes reports whether applying id switches anything.
func (id identity) changes() bool { return id.uid >= 0 || id.gid >= 0 || id.groups != nil }

// account is a passwd entry.
type account struct {
	name     string
	uid, gid int
}

// errNoEntry is what an accountDB returns for a name or id it does not
// know; any other error is a failure of the database itself.
var errNoEntry = errors.New("no such entry")

// accountDB is the user and group database: osAccounts in the daemon, a
// map in tests.
type accountDB interface {
	userByName(name string) (account, error)
	userByID(uid int) (account, error)
	groupByName(name string) (gid int, err error)
	// groupsOf lists the groups the group database gives user (the
	// members lists of /etc/group), with gid added: initgroups(3).
	groupsOf(user string, gid int) ([]int, error)
}

// resolveIdentity turns -u, -g and -G into ids, the way login and
// initgroups(3) would:
//
//   - -u NAME or -u UID with a passwd entry: that uid, the entry's gid, and
//     the user's groups from the group database;
//   - -u UID without a passwd entry: its group is unknown, so -g is
//     required (refused without it);
//   - -g GROUP replaces the primary gid (and is the group initgroups adds);
//   - -G GROUPS are added to the supplementary groups.
//
// Whenever anything is asked, the supplementary groups are replaced: root's
// are never kept. A NAME that is all digits and not in the database is
// taken as a number, as chown(1) does.
func resolveIdentity(spec identitySpec, db accountDB) (identity, error) {
	if spec.user == "" && spec.group == "" && spec.groups == "" {
		return keepIdentity, nil
	}
	id := keepIdentity
	var acct *account
	if spec.user != "" {
		a, err := db.userByName(spec.user)
		if errors.Is(err, errNoEntry) {
			uid, nerr := parseID(spec.user)
			if nerr != nil {
				return id, fmt.Errorf("-u %s: no such user", spec.user)
			}
			a, err = db.userByID(uid)
			if errors.Is(err, errNoEntry) {
				if spec.group == "" {
					return id, fmt.Errorf("-u %d: uid %d has no passwd entry, so its primary group is unknown: give it with -g GROUP", uid, uid)
				}
				a, err = account{uid: uid, gid: -1}, nil
			}
		}
		if err != nil {
			return id, fmt.Errorf("-u %s: %w", spec.user, err)
		}
		id.uid, id.gid = a.uid, a.gid
		if a.name != "" {
			acct = &a
		}
	}
	if spec.group != "" {
		gid, err := resolveGroup(db, spec.group)
		if err != nil {
			return id, fmt.Errorf("-g %s: %w", spec.group, err)
		}
		id.gid = gid
	}
	groups := []int{}
	if acct != nil {
		gs, err := db.groupsOf(acct.name, id.gid)
		if err != nil {
			return id, fmt.Errorf("-u %s: groups: %w", spec.user, err)
		}
		groups = append(groups, gs...)
	}
	if id.gid >= 0 {
		groups = append(groups, id.gid)
	}
	for g := range strings.SplitSeq(spec.groups, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		gid, err := resolveGroup(db, g)
		if err != nil {
			return id, fmt.Errorf("-G %s: %w", g, err)
		}
		groups = append(groups, gid)
	}
	slices.Sort(groups)
	id.groups = slices.Compact(groups)
	return id, nil
}

// resolveGroup looks a group up by name, else takes it as a number (a gid
// needs no entry).
func resolveGroup(db accountDB, name string) (int, error) {
	gid, err := db.groupByName(name)
	if errors.Is(err, errNoEntry) {
		if gid, nerr := parseID(name); nerr == nil {
			return gid, nil
		}
		return 0, errors.New("no such group")
	}
	return gid, err
}

// maxID is the largest uid or gid: (uid_t)-1 means "unchanged" to the
// kernel.
const maxID = 1<<32 - 2

func parseID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxID {
		return 0, fmt.Errorf("%q is not an id", s)
	}
	return n, nil
}

// dropPrivileges switches to id, groups first (setgroups, setgid, then
// setuid, which takes away the right to the other two), then checks that
// the kernel holds exactly id, and that root cannot be regained. The Go
// runtime applies each call to every thread of the process.
func dropPrivileges(id identity) error {
	if !id.changes() {
		return nil
	}
	if id.groups != nil {
		if err := syscall.Setgroups(id.groups); err != nil {
			return fmt.Errorf("setgroups %v: %w (-u, -g and -G need root)", id.groups, err)
		}
	}
	if id.gid >= 0 {
		if err := syscall.Setgid(id.gid); err != nil {
			return fmt.Errorf("setgid %d: %w", id.gid, err)
		}
	}
	if id.uid >= 0 {
		if err := syscall.Setuid(id.uid); err != nil {
			return fmt.Errorf("setuid %d: %w", id.uid, err)
		}
	}
	return verifyIdentity(id)
}

// switchIdentity drops to id, then checks that the new identity can write
// stateDir, where the index is saved every minute from now on: a drop to a
// user that cannot would only show as a warning a minute later.
func switchIdentity(id identity, stateDir string) error {
	if !id.changes() {
		return nil
	}
	if err := dropPrivileges(id); err != nil {
		return err
	}
	if err := syscall.Access(stateDir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("--state-dir %s is not writable after -u/-g/-G (uid %d, gid %d): %w; chown it to that user", stateDir, syscall.Getuid(), syscall.Getgid(), err)
	}
	return nil
}

// verifyIdentity checks that the process runs with id: real, effective and
// saved ids, the supplementary groups, and, when it left root, that
// setuid(0) fails.
func verifyIdentity(id identity) error {
	if id.uid >= 0 {
		r, e, s := unix.Getresuid()
		if r != id.uid || e != id.uid || s != id.uid {
			return fmt.Errorf("privilege drop did not take: uids %d/%d/%d (real/effective/saved), want %d", r, e, s, id.uid)
		}
	}
	if id.gid >= 0 {
		r, e, s := unix.Getresgid()
		if r != id.gid || e != id.gid || s != id.gid {
			return fmt.Errorf("privilege drop did not take: gids %d/%d/%d (real/effective/saved), want %d", r, e, s, id.gid)
		}
	}
	if id.groups != nil {
		got, err := syscall.Getgroups()
		if err != nil {
			return fmt.Errorf("getgroups: %w", err)
		}
		slices.Sort(got)
		if !slices.Equal(slices.Compact(got), id.groups) {
			return fmt.Errorf("privilege drop did not take: groups %v, want %v", got, id.groups)
		}
	}
	if id.uid > 0 {
		if err := syscall.Setuid(0); err == nil {
			return errors.New("privilege drop did not take: setuid(0) succeeded afterwards")
		}
	}
	return nil
}

// osAccounts is the system's user and group database (os/user: NSS with
// cgo, /etc/passwd and /etc/group without).
type osAccounts struct{}

func (osAccounts) userByName(name string) (account, error) {
	u, err := user.Lookup(name)
	if _, ok := errors.AsType[user.UnknownUserError](err); ok {
		return account{}, errNoEntry
	}
	if err != nil {
		return account{}, err
	}
	return toAccount(u)
}

func (osAccounts) userByID(uid int) (account, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if _, ok := errors.AsType[user.UnknownUserIdError](err); ok {
		return account{}, errNoEntry
	}
	if err != nil {
		return account{}, err
	}
	return toAccount(u)
}

func (osAccounts) groupByName(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if _, ok := errors.AsType[user.UnknownGroupError](err); ok {
		return 0, errNoEntry
	}
	if err != nil {
		return 0, err
	}
	return parseID(g.Gid)
}

func (osAccounts) groupsOf(name string, gid int) ([]int, error) {
	u := &user.User{Username: name, Gid: strconv.Itoa(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	gids := make([]int, 0, len(ids))
	for _, s := range ids {
		g, err := parseID(s)
		if err != nil {
			return nil, fmt.Errorf("group database: gid %w", err)
		}
		gids = append(gids, g)
	}
	return gids, nil
}

func toAccount(u *user.User) (account, error) {
	uid, err := parseID(u.Uid)
	if err != nil {
		return account{}, fmt.Errorf("passwd entry %s: uid %w", u.Username, err)
	}
	gid, err := parseID(u.Gid)
	if err != nil {
		return account{}, fmt.Errorf("passwd entry %s: gid %w", u.Username, err)
	}
	return account{name: u.Username, uid: uid, gid: gid}, nil
}
