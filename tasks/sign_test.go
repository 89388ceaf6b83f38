package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

func keyFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "task.key")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	keyA = "0123456789abcdef0123456789abcdef-key-a"
	keyB = "0123456789abcdef0123456789abcdef-key-b"
)

// TestTaskKeys: a task signed with the signing key checks; one unsigned,
// altered (payload or type), or signed with a key the worker does not
// hold is refused; after a rotation (new key first, old second) tasks
// signed with either check.
func TestTaskKeys(t *testing.T) {
	a, err := LoadTaskKeys(keyFile(t, "# the fleet's task key", keyA))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadTaskKeys(keyFile(t, keyB))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := LoadTaskKeys(keyFile(t, keyB, "", keyA))
	if err != nil {
		t.Fatal(err)
	}
	p := ChunkPayload{Job: "j", Transfer: "x", Gen: 1, Object: Object{Bucket: "b", Key: "k", Size: 10}, Chunks: 1, Last: 9, Dest: "/d/k"}
	signed, err := NewChunkTask(a, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(signed); err != nil {
		t.Fatalf("signed task: %v", err)
	}
	if err := rotated.Check(signed); err != nil {
		t.Fatalf("signed with the old key, checked after the rotation: %v", err)
	}
	if sig := signed.Headers()[SigHeader]; strings.Contains(sig, keyA) || !strings.HasPrefix(sig, "v1 "+a.IDs()[0]+" ") {
		t.Fatalf("signature header %q", sig)
	}
	unsigned, _ := NewChunkTask(nil, p)
	forged := []struct {
		name string
		task *asynq.Task
	}{
		{"unsigned", unsigned},
		{"payload altered", asynq.NewTaskWithHeaders(TypeChunk, append(signed.Payload(), ' '), signed.Headers())},
		{"type altered", asynq.NewTaskWithHeaders(TypeBatch, signed.Payload(), signed.Headers())},
		{"garbled", asynq.NewTaskWithHeaders(TypeChunk, signed.Payload(), map[string]string{SigHeader: "v1 x"})},
	}
	for _, f := range forged {
		if err := a.Check(f.task); !errors.Is(err, ErrUnsigned) {
			t.Errorf("%s: %v, want ErrUnsigned", f.name, err)
		}
	}
	if err := b.Check(signed); !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("signed with a key the worker does not hold: %v", err)
	}
	var none *TaskKeys
	if err := none.Check(unsigned); err != nil {
		t.Errorf("a worker without keys: %v", err)
	}
	if bs, _ := NewChunkTask(rotated, p); a.Check(bs) == nil {
		t.Error("signed with the new key, checked by a worker holding only the old one: accepted")
	}

	// The middleware refuses without retry and never runs the handler.
	ran := false
	h := a.Middleware(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { ran = true; return nil }))
	if err := h.ProcessTask(context.Background(), unsigned); !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, ErrUnsigned) || ran {
		t.Errorf("middleware on an unsigned task: %v (handler ran: %v)", err, ran)
	}
	if err := h.ProcessTask(context.Background(), signed); err != nil || !ran {
		t.Errorf("middleware on a signed task: %v (handler ran: %v)", err, ran)
	}
}

// TestLoadTaskKeysRefuses: a short key, an empty file and a missing one
// are errors naming the setting.
func TestLoadTaskKeysRefuses(t *testing.T) {
	for name, path := range map[string]string{
		"short":   keyFile(t, "tooshort"),
		"empty":   keyFile(t, "# nothing"),
		"missing": filepath.Join(t.TempDir(), "none"),
	} {
		if _, err := LoadTaskKeys(path); err == nil || !strings.Contains(err.Error(), "task_key_file") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if k, err := LoadTaskKeys(""); k != nil || err != nil {
		t.Errorf("no file: %v, %v", k, err)
	}
}
