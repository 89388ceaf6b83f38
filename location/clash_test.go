package location

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestClash: a destination where another key's directory stands, or under
// another key's file, says so rather than "already exists".
func TestClash(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Exists(filepath.Join(dir, "a", "b")); !strings.Contains(got, "is a directory: another key has b/ as a prefix") {
		t.Errorf("a directory in the way: %q", got)
	}
	if got := Exists(filepath.Join(dir, "f")); !strings.Contains(got, "already exists (use --overwrite") {
		t.Errorf("a file in the way: %q", got)
	}
	if got := Exists("s3://b/k"); !strings.Contains(got, "already exists") {
		t.Errorf("an object in the way: %q", got)
	}
	under := filepath.Join(dir, "f", "g", "h")
	err := os.MkdirAll(filepath.Dir(under), 0o755)
	got := MkdirError(under, err)
	if !errors.Is(got, syscall.ENOTDIR) || !strings.Contains(got.Error(), filepath.Join(dir, "f")+" is a file, so "+under+" cannot be made under it") {
		t.Errorf("a file where a directory must be: %v", got)
	}
	other := errors.New("other")
	if MkdirError(under, other) != other {
		t.Error("another error changed")
	}
}
