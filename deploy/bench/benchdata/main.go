package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

const usageLine = "usage: benchdata file PATH SIZE | mixed DIR N DIRS | small DIR N DIRS MAXSIZE | fixed DIR N DIRS SIZE | modify [-list FILE] DIR PCT GEN | patch PATH LEN GEN"

// usageError is an error in the arguments, which exits with status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func badArgs(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout)
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "benchdata: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "benchdata: %v\n", err)
		return 1
	}
}

func dispatch(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return badArgs("%s", usageLine)
	}
	cmd, args := args[0], args[1:]
	list := ""
	if cmd == "modify" && len(args) >= 2 && args[0] == "-list" {
		list, args = args[1], args[2:]
	}
	want := map[string]int{"file": 2, "mixed": 3, "small": 4, "fixed": 4, "modify": 3, "patch": 3}
	n, ok := want[cmd]
	if !ok {
		if cmd == "-h" || cmd == "--help" || cmd == "help" {
			_, err := fmt.Fprintln(stdout, usageLine)
			return err
		}
		return badArgs("unknown subcommand %q; %s", cmd, usageLine)
	}
	if len(args) != n {
		return badArgs("%s takes %d arguments, got %d; %s", cmd, n, len(args), usageLine)
	}
	switch cmd {
	case "file":
		size, err := parseSize(args[1])
		if err != nil {
			return err
		}
		return writeFile(args[0], size, seed("file", uint64(size), 0))
	case "mixed", "small", "fixed":
		n, err := parseCount("N", args[1], 0)
		if err != nil {
			return err
		}
		dirs, err := parseCount("DIRS", args[2], 1)
		if err != nil {
			return err
		}
		if cmd == "mixed" {
			return writeTree(args[0], n, dirs, cmd, mixedSize)
		}
		size, err := parseSize(args[3])
		if err != nil {
			return err
		}
		if cmd == "fixed" {
			if size > 1<<40 {
				return badArgs("SIZE must be at most 1T: %q", args[3])
			}
			return writeTree(args[0], n, dirs, cmd, fixedSize(size))
		}
		if size > 1<<40 {
			return badArgs("MAXSIZE must be at most 1T: %q", args[3])
		}
		return writeTree(args[0], n, dirs, cmd, uniformSize(size))
	case "patch":
		n, err := parseSize(args[1])
		if err != nil {
			return err
		}
		gen, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return badArgs("GEN must be a non-negative integer: %q", args[2])
		}
		st, err := patch(args[0], n, gen)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "patched %d bytes at offset %d of %d\n", st.n, st.off, st.size)
		return err
	default: // modify
		pct, err := strconv.ParseFloat(args[1], 64)
		if err != nil || math.IsNaN(pct) || pct < 0 || pct > 100 {
			return badArgs("PCT must be a number from 0 to 100: %q", args[1])
		}
		gen, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return badArgs("GEN must be a non-negative integer: %q", args[2])
		}
		st, err := modify(args[0], pct, gen)
		if err != nil {
			return err
		}
		if list != "" {
			if err := writeList(list, st.changed); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintf(stdout, "modified %d of %d files, %d bytes\n", st.files, st.total, st.bytes)
		return err
	}
}

// parseCount parses a decimal count of at least least.
func parseCount(name, s string, least int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < least {
		return 0, badArgs("%s must be an integer >= %d: %q", name, least, s)
	}
	return n, nil
}

// parseSize parses bytes with an optional binary suffix (K, M, G, T, with
// or without "iB").
func parseSize(s string) (int64, error) {
	num := strings.TrimSuffix(s, "iB")
	shift := 0
	if num != "" {
		switch num[len(num)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
	}
	if shift > 0 {
		num = num[:len(num)-1]
	} else if num != s {
		num = "" // "iB" without a unit letter
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, badArgs("bad size %q (bytes, or a number with K, M, G or T)", s)
	}
	return n << shift, nil
}

// writeList writes paths to the file list, one a line.
func writeList(list string, paths []string) error {
	var b strings.Builder
	for _, p := range paths {
		if strings.ContainsRune(p, '\n') {
			return fmt.Errorf("modify: -list cannot hold a name with a newline: %q", p)
		}
		b.WriteString(p)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("modify: %w", err)
	}
	return nil
}
