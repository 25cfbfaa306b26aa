package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is a parsed command line.
type config struct {
	batch   int
	sync    bool
	verbose bool
	src     string
	dsts    []string
}

// usageError is an error in the arguments, which exits with status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// run executes one measurement and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = measure(cfg, stdout)
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "floor: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "floor: %v\n", err)
		return 1
	}
}

func parse(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.batch, "batch", 8192, "files per pair of syncs (makuo's rename batch)")
	fs.BoolVar(&cfg.sync, "sync", true, "syncfs before and after each batch of renames")
	fs.BoolVar(&cfg.verbose, "v", false, "print the phases")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: floor [-batch N] [-sync=false] [-v] SRC DST...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError(err.Error())
	}
	if fs.NArg() < 2 {
		return cfg, usageError("usage: floor [-batch N] [-sync=false] [-v] SRC DST...")
	}
	if cfg.batch < 1 {
		return cfg, usageError(fmt.Sprintf("-batch must be at least 1: %d", cfg.batch))
	}
	cfg.src, cfg.dsts = fs.Arg(0), fs.Args()[1:]
	seen := map[string]bool{}
	for _, d := range cfg.dsts {
		abs, err := filepath.Abs(d)
		if err != nil {
			return cfg, usageError(err.Error())
		}
		if seen[abs] {
			return cfg, usageError("a destination is named twice: " + d)
		}
		seen[abs] = true
	}
	return cfg, nil
}

// file is one regular file of the source, held in memory.
type file struct {
	rel     string
	dir     int // index into tree.dirs
	name    string
	mode    uint32
	uid     int
	gid     int
	mtime   unix.Timespec
	content []byte
}

// tree is the source: its directories (parents first) and files.
type tree struct {
	dirs  []string // relative, "." first
	files []file
	bytes int64
}

func load(src string) (*tree, error) {
	// A file as SRC would leave the tree without its root directory.
	if fi, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	} else if !fi.IsDir() {
		return nil, usageError("SRC must be a directory: " + src)
	}
	t := &tree{}
	index := map[string]int{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			index[rel] = len(t.dirs)
			t.dirs = append(t.dirs, rel)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			t.files = append(t.files, file{rel: rel, dir: index[filepath.Dir(rel)], name: filepath.Base(rel),
				mode: uint32(info.Mode().Perm()), uid: int(st.Uid), gid: int(st.Gid),
				mtime: unix.NsecToTimespec(info.ModTime().UnixNano()), content: b})
			t.bytes += int64(len(b))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	return t, nil
}

// phases are the wall time one destination spent in each step.
type phases struct {
	mkdir, create, sync, rename time.Duration
}

func measure(cfg config, stdout io.Writer) error {
	t, err := load(cfg.src)
	if err != nil {
		return err
	}
	var before, after unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &before); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	start := time.Now()
	errs := make([]error, len(cfg.dsts))
	ph := make([]phases, len(cfg.dsts))
	var wg sync.WaitGroup
	for i, dst := range cfg.dsts {
		wg.Go(func() { ph[i], errs[i] = apply(cfg, t, dst) })
	}
	wg.Wait()
	wall := time.Since(start)
	if err := unix.Getrusage(unix.RUSAGE_SELF, &after); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	user := time.Duration(after.Utime.Nano() - before.Utime.Nano())
	sys := time.Duration(after.Stime.Nano() - before.Stime.Nano())
	perFile := time.Duration(0)
	if n := len(t.files) * len(cfg.dsts); n > 0 {
		perFile = (user + sys) / time.Duration(n)
	}
	_, err = fmt.Fprintf(stdout, "floor: %d destinations, %d files, %d bytes, sync=%v: wall %.3f s, cpu user %.3f s sys %.3f s, %.1f µs cpu per file and destination\n",
		len(cfg.dsts), len(t.files), t.bytes, cfg.sync, wall.Seconds(), user.Seconds(), sys.Seconds(), float64(perFile.Nanoseconds())/1e3)
	if err != nil || !cfg.verbose {
		return err
	}
	for i, p := range ph {
		if _, err := fmt.Fprintf(stdout, "  %s: mkdir %.3f s, create+write+meta %.3f s, syncs %.3f s, renames %.3f s\n",
			cfg.dsts[i], p.mkdir.Seconds(), p.create.Seconds(), p.sync.Seconds(), p.rename.Seconds()); err != nil {
			return err
		}
	}
	return nil
}
