package tasks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hibiken/asynq"
)

// SigHeader is the task header that carries a task's signature:
// "v1 KEYID MAC", the MAC an HMAC-SHA256 of the task's type and payload
// under the key that KEYID names.
const SigHeader = "s3fleet-sig"

// minKeyLen is the shortest task key accepted: 32 characters (openssl rand
// -hex 32 gives 64).
const minKeyLen = 32

// TaskKeys sign the tasks an enqueuer or a worker enqueues and check the
// ones a worker runs, so that whoever can write to Redis cannot make a
// worker run a task of their own (see the README's Security section). The
// first key signs; every key is accepted, so that a key can be rotated
// without stopping the fleet. Redis never sees a key. A nil *TaskKeys
// neither signs nor checks.
type TaskKeys struct {
	keys [][]byte
	ids  []string
}

// LoadTaskKeys reads the task_key file: one key a line, the first the one
// that signs; blank lines and lines starting with # are skipped. An empty
// path gives nil: no signing.
func LoadTaskKeys(path string) (*TaskKeys, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("task_key_file: %w", err)
	}
	var k TaskKeys
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < minKeyLen {
			return nil, fmt.Errorf("task_key_file %s: line %d: a key of %d characters; at least %d are needed (openssl rand -hex 32)", path, i+1, len(line), minKeyLen)
		}
		id := sha256.Sum256([]byte("s3fleet task key id\x00" + line))
		k.keys = append(k.keys, []byte(line))
		k.ids = append(k.ids, hex.EncodeToString(id[:4]))
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("task_key_file %s: no key in it", path)
	}
	return &k, nil
}

// IDs names the keys (not the keys themselves: a hash of each), the
// signing one first, for logs.
func (k *TaskKeys) IDs() []string {
	if k == nil {
		return nil
	}
	return k.ids
}

func mac(key []byte, typ string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(typ))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

// newTask builds a task, signed when k has a key.
func (k *TaskKeys) newTask(typ string, payload []byte, opts ...asynq.Option) *asynq.Task {
	if k == nil {
		return asynq.NewTask(typ, payload, opts...)
	}
	sig := "v1 " + k.ids[0] + " " + base64.RawStdEncoding.EncodeToString(mac(k.keys[0], typ, payload))
	return asynq.NewTaskWithHeaders(typ, payload, map[string]string{SigHeader: sig}, opts...)
}

// ErrUnsigned reports a task without a valid signature, refused.
var ErrUnsigned = errors.New("task refused: not signed with this worker's task_key (forged, or enqueued without the key)")

// Check verifies a task's signature: nil if it is signed by one of the
// keys, or if k is nil.
func (k *TaskKeys) Check(t *asynq.Task) error {
	if k == nil {
		return nil
	}
	sig, ok := t.Headers()[SigHeader]
	if !ok {
		return fmt.Errorf("%w: no signature", ErrUnsigned)
	}
	f := strings.Fields(sig)
	if len(f) != 3 || f[0] != "v1" {
		return fmt.Errorf("%w: unreadable signature", ErrUnsigned)
	}
	got, err := base64.RawStdEncoding.DecodeString(f[2])
	if err != nil {
		return fmt.Errorf("%w: unreadable signature", ErrUnsigned)
	}
	for i, id := range k.ids {
		if id == f[1] {
			if hmac.Equal(got, mac(k.keys[i], t.Type(), t.Payload())) {
				return nil
			}
			return fmt.Errorf("%w: bad signature (key %s)", ErrUnsigned, id)
		}
	}
	return fmt.Errorf("%w: signed with key %s, which this worker does not hold (it holds %s)", ErrUnsigned, f[1], strings.Join(k.ids, ", "))
}

// Middleware refuses, without retry, every task whose signature does not
// check: asynq archives it with the cause.
func (k *TaskKeys) Middleware(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if err := k.Check(t); err != nil {
			id, _ := asynq.GetTaskID(ctx)
			return fmt.Errorf("%w: %s task %s: %w", asynq.SkipRetry, t.Type(), id, err)
		}
		return h.ProcessTask(ctx, t)
	})
}
