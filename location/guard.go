package location

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrOutsideRoots reports a destination outside the roots a worker may
// write under.
var ErrOutsideRoots = errors.New("destination outside the allowed roots")

// Guard says where a worker may write: under its roots, with symlinks
// resolved, so a task forged in Redis cannot make it write anywhere else.
// A Guard with no roots allows every path.
type Guard struct {
	setting string   // allow_dest or allow_source, for messages
	roots   []string // resolved, absolute
}

// NewGuard resolves the roots of allow_dest; each must be an existing
// directory.
func NewGuard(roots []string) (Guard, error) { return NewGuardOf("allow_dest", roots) }

// NewGuardOf resolves the roots of the setting named setting (allow_dest,
// allow_source); each must be an existing directory.
func NewGuardOf(setting string, roots []string) (Guard, error) {
	g := Guard{setting: setting}
	for _, r := range roots {
		if !filepath.IsAbs(r) {
			return Guard{}, fmt.Errorf("%s %q: not an absolute path", setting, r)
		}
		real, err := filepath.EvalSymlinks(r)
		if err != nil {
			return Guard{}, fmt.Errorf("%s %q: %w", setting, r, err)
		}
		if st, err := os.Stat(real); err != nil || !st.IsDir() {
			return Guard{}, fmt.Errorf("%s %q: not a directory", setting, r)
		}
		g.roots = append(g.roots, real)
	}
	return g, nil
}

// Open reports whether the guard has no roots: it allows no path.
func (g Guard) Open() bool { return len(g.roots) == 0 }

// Check returns nil when path, with the symlinks of its existing ancestors
// resolved, lies under one of the roots; a guard without roots allows no
// path (deny by default).
func (g Guard) Check(path string) error { return g.CheckIn(path, nil) }

// CheckIn is Check that keeps in resolved (when not nil) what the symlinks
// of each directory resolved to, for the next path in the same directory:
// a batch of files in one directory resolves it once, not once a file. The
// caller keeps the map for one batch only, so a directory swapped for a
// symlink afterwards is seen by the next batch.
func (g Guard) CheckIn(path string, resolved map[string]string) error {
	if g.Open() {
		setting := cmp.Or(g.setting, "allow_dest")
		return fmt.Errorf("%w: %s is not set, so this worker touches no local file (%s); set %s to the directories it may use", ErrOutsideRoots, setting, path, setting)
	}
	dir := filepath.Dir(path)
	real, ok := resolved[dir]
	if !ok {
		var err error
		if real, err = resolve(dir); err != nil {
			return fmt.Errorf("resolve %s: %w", path, err)
		}
		if resolved != nil {
			resolved[dir] = real
		}
	}
	real = filepath.Join(real, filepath.Base(path))
	for _, r := range g.roots {
		if Within(r, real) && real != r {
			return nil
		}
	}
	return fmt.Errorf("%w: %s (resolves to %s) is under no %s root", ErrOutsideRoots, path, real, g.setting)
}

// resolve evaluates the symlinks of the longest existing prefix of dir and
// appends the rest, which does not exist yet.
func resolve(dir string) (string, error) {
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return real, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", err
		}
		rest = append(rest, filepath.Base(dir))
		dir = parent
	}
}
