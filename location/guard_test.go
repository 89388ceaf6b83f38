package location

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	allowed := filepath.Join(base, "allowed")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{allowed, outside, filepath.Join(allowed, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink planted inside the allowed root that points outside it.
	if err := os.Symlink(outside, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	// A symlink to the root itself is fine to pass in.
	link := filepath.Join(base, "link-to-allowed")
	if err := os.Symlink(allowed, link); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard([]string{link})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(allowed, "file"), true},
		{filepath.Join(allowed, "sub", "file"), true},
		{filepath.Join(allowed, "new", "deeper", "file"), true},
		{filepath.Join(link, "file"), true},
		{filepath.Join(allowed, "escape", "file"), false},
		{filepath.Join(allowed, "escape", "new", "file"), false},
		{filepath.Join(outside, "file"), false},
		{allowed, false},
		{"/etc/passwd", false},
	} {
		err := g.Check(tc.path)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOutsideRoots)) {
			t.Errorf("Check(%s) = %v, want allowed=%v", tc.path, err, tc.ok)
		}
	}
	// CheckIn judges a batch's paths as Check does, each directory resolved
	// once: twice over the same map, the second round reads the map.
	resolved := map[string]string{}
	for round := range 2 {
		for _, tc := range []struct {
			path string
			ok   bool
		}{
			{filepath.Join(allowed, "a"), true},
			{filepath.Join(allowed, "b"), true},
			{filepath.Join(allowed, "new", "deeper", "file"), true},
			{filepath.Join(allowed, "escape", "a"), false},
			{filepath.Join(allowed, "escape", "b"), false},
		} {
			err := g.CheckIn(tc.path, resolved)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOutsideRoots)) {
				t.Errorf("round %d: CheckIn(%s) = %v, want allowed=%v", round, tc.path, err, tc.ok)
			}
		}
	}
	if got, want := resolved[filepath.Join(allowed, "escape")], outside; got != want {
		t.Errorf("CheckIn kept %q for the escaping directory, want %q", got, want)
	}
	if len(resolved) != 3 {
		t.Errorf("CheckIn kept %d directories, want 3: %v", len(resolved), resolved)
	}
	// What the map says is what counts: a directory it resolves outside the
	// roots is refused without a look at the filesystem.
	if err := g.CheckIn(filepath.Join(allowed, "a"), map[string]string{allowed: outside}); !errors.Is(err, ErrOutsideRoots) {
		t.Errorf("CheckIn with a directory resolved outside: %v, want a refusal", err)
	}
	if _, err := NewGuard([]string{"relative"}); err == nil {
		t.Error("a relative root was accepted")
	}
	if _, err := NewGuard([]string{filepath.Join(base, "missing")}); err == nil {
		t.Error("a missing root was accepted")
	}
	// Deny by default: a worker without allow_dest writes no local file.
	if open, _ := NewGuard(nil); !open.Open() || !errors.Is(open.Check("/anything"), ErrOutsideRoots) ||
		!strings.Contains(open.Check("/anything").Error(), "allow_dest is not set") {
		t.Errorf("a guard without roots: %v, want a refusal naming allow_dest", open.Check("/anything"))
	}
}
