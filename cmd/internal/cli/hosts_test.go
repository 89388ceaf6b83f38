package cli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/internal/fleettest"
)

// TestHosts: enqueue hosts lists a live worker under its host setting,
// the name --on takes.
func TestHosts(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	cfg := f.Config()
	cfg.Host = "host-x"
	fleettest.StartWorker(t, cfg)
	deadline := time.Now().Add(15 * time.Second)
	for {
		cmd := NewEnqueueCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"hosts", "--json", "--redis", cfg.Redis})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		var views []s3fleet.Host
		if err := json.Unmarshal(out.Bytes(), &views); err != nil {
			t.Fatalf("%q: %v", out.String(), err)
		}
		if len(views) == 1 && views[0].Host == "host-x" && views[0].Concurrency == cfg.Concurrency {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts: %+v, want host-x", views)
		}
		time.Sleep(100 * time.Millisecond) // the worker registers with asynq a moment after it starts
	}
}
