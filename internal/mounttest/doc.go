// Package mounttest gives tests a fresh filesystem of a chosen type
// (XFS with reflinks, btrfs, ext4 on a loop-mounted image file, or a tmpfs)
// and reads a file's extent map (FIEMAP), so that a test can check what
// the kernel did with a copy: share the blocks or write them. Mounting
// needs root and the type's mkfs (Debian's xfsprogs, btrfs-progs,
// e2fsprogs); without them a test is skipped, except in CI (CI=true),
// where it fails.
package mounttest
