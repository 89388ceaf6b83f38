package tasks

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/hibiken/asynq"
	"golang.org/x/sys/unix"
)

// TestNoSpace: no space for an object the filesystem could hold is a wait
// (retried); for one larger than the whole filesystem it is final; other
// errors pass unchanged.
func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	total := int64(st.Blocks) * st.Bsize
	full := fmt.Errorf("write: %w", syscall.ENOSPC)
	if err := noSpace(dir, 1<<20, full); !errors.Is(err, ErrNoSpace) || IsPermanent(err) || !errors.Is(err, syscall.ENOSPC) ||
		!strings.Contains(err.Error(), "1.0 MiB more needed") {
		t.Errorf("an object that fits once space is freed: %v", err)
	}
	if err := noSpace(dir, total+1, full); !errors.Is(err, asynq.SkipRetry) || errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "can never fit") {
		t.Errorf("an object larger than the filesystem: %v", err)
	}
	if err := noSpace(dir, 1, fmt.Errorf("quota: %w", syscall.EDQUOT)); !errors.Is(err, ErrNoSpace) {
		t.Errorf("a quota: %v", err)
	}
	other := errors.New("other")
	if noSpace(dir, 1, other) != other {
		t.Error("another error changed")
	}
}
