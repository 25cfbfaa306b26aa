// Package exclude implements rsync-like exclude patterns on top of
// github.com/bmatcuk/doublestar/v4. One [Set] is shared by msync (--exclude,
// --exclude-from), the replicator and the watcher, so that every component
// agrees on which paths under the base directory are not replicated.
//
// # Pattern semantics
//
// Paths given to [Set.Match] are relative to the base directory and
// slash-separated ("www/index.html"). Patterns follow rsync's exclude rules:
//
//   - A pattern without a '/' (other than a trailing one) and without "**"
//     matches the base name of a path at any depth: "*.swp" excludes
//     "a.swp" and "x/y/.a.swp".
//   - A pattern with a leading '/' is anchored at the base directory:
//     "/tmp" excludes "tmp" but not "x/tmp".
//   - A pattern with a '/' inside it, or containing "**", but no leading '/'
//     is matched against the full relative path and may start at any depth
//     (rsync matches it against the tail of the path at a component
//     boundary): "cache/*.dat" excludes "cache/a.dat" and "x/cache/a.dat".
//   - A trailing '/' matches only directories: "build/" excludes the
//     directory "build" and everything below it, but not a file named
//     "build".
//   - '*' and '?' never cross a '/'; "**" as a whole path component crosses
//     directories ("/a/**/z", "**/tmp"). Inside a component "**" behaves like
//     '*' (doublestar's rule; rsync would cross '/' there). '[...]' classes,
//     '{a,b}' alternatives and '\' escapes are supported.
//   - A match on a directory excludes everything below it: Match("a/b/c",
//     false) is true when "a" or "a/b" matches as a directory. Callers that
//     walk a tree may also prune at the excluded directory.
//   - The base directory itself ("" or ".") is never excluded. Paths that
//     escape the base directory ("..", "../x") never match.
//
// Every pattern is validated when the Set is built; an invalid pattern is an
// error naming it, never a silent no-op. Include rules ("+ pattern"),
// negation and rsync's "***" suffix are not supported.
//
// A Set is immutable after [New] and safe for concurrent use. A nil *Set
// excludes nothing.
package exclude
