package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads compose.yaml with the Compose specification's own
// loader (no Docker engine runs here) and checks the fleet it describes.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../compose.yaml"}, cli.WithWorkingDirectory(".."),
		cli.WithOsEnv, cli.WithProfiles([]string{"cli"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		return s
	}
	redis := strings.Join(svc("redis").Command, " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(redis, want) {
			t.Errorf("redis runs %q, which lacks %s", redis, want)
		}
	}
	w := svc("worker")
	if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas < 2 {
		t.Errorf("worker replicas: %+v", w.Deploy)
	}
	for _, name := range []string{"worker", "ui", "enqueue"} {
		env := svc(name).Environment
		for _, key := range []string{"S3FLEET_REDIS", "S3FLEET_ENDPOINT", "AWS_ACCESS_KEY_ID"} {
			if env[key] == nil || *env[key] == "" {
				t.Errorf("%s has no %s", name, key)
			}
		}
		if !slices.ContainsFunc(svc(name).Volumes, func(v types.ServiceVolumeConfig) bool { return v.Source == "downloads" && v.Target == "/data" }) {
			t.Errorf("%s does not mount the shared downloads volume at /data", name)
		}
	}
	if v := w.Environment["S3FLEET_ALLOW_DEST"]; v == nil || *v != "/data" {
		t.Error("workers must be restricted to /data with S3FLEET_ALLOW_DEST")
	}
	if ui := strings.Join(svc("ui").Command, " "); !strings.Contains(ui, "--ui 0.0.0.0:8080") {
		t.Errorf("ui runs %q", ui)
	}
	if ports := svc("ui").Ports; len(ports) != 1 || ports[0].HostIP != "127.0.0.1" {
		t.Errorf("the UI must publish on loopback only: %+v", ports)
	}
	if _, err := p.GetService("minio"); err != nil {
		t.Error(err)
	}
	if s := svc("seed"); !strings.Contains(strings.Join(s.Command, " "), "mc mb") {
		t.Error("seed does not create the sample bucket")
	}
}
