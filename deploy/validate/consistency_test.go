package validate_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/yaml"
)

// The parts of the built objects that must agree with one another.
type (
	object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
		Spec struct {
			Template struct {
				Spec podSpec `json:"spec"`
			} `json:"template"`
			AccessModes    []string `json:"accessModes"`
			ScaleTargetRef struct {
				Name string `json:"name"`
			} `json:"scaleTargetRef"`
			Triggers []struct {
				Type     string            `json:"type"`
				Metadata map[string]string `json:"metadata"`
			} `json:"triggers"`
			Ports []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
			} `json:"ports"`
		} `json:"spec"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
		EnableServiceLinks            *bool  `json:"enableServiceLinks"`
		SecurityContext               struct {
			RunAsNonRoot *bool `json:"runAsNonRoot"`
		} `json:"securityContext"`
		Containers []container `json:"containers"`
		Volumes    []struct {
			Name                  string `json:"name"`
			PersistentVolumeClaim *struct {
				ClaimName string `json:"claimName"`
			} `json:"persistentVolumeClaim"`
		} `json:"volumes"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port string `json:"port"`
		} `json:"httpGet"`
	}
	container struct {
		Command []string `json:"command"`
		Args    []string `json:"args"`
		Env     []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"env"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		ReadinessProbe *probe `json:"readinessProbe"`
		LivenessProbe  *probe `json:"livenessProbe"`
		VolumeMounts   []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
)

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func (c container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestConsistency checks what the schemas cannot: the settings, the
// probes, the volume, the autoscaler and the services agree.
func TestConsistency(t *testing.T) {
	offline(t)
	nodes, err := kio.FromBytes(build(t))
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	for _, n := range nodes {
		s, err := n.String()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := yaml.Unmarshal([]byte(s), &o); err != nil {
			t.Fatal(err)
		}
		name := o.Metadata.Name
		if strings.HasPrefix(name, "s3fleet-config-") {
			name = "s3fleet-config"
		}
		objs[o.Kind+"/"+name] = o
	}
	get := func(key string) object {
		t.Helper()
		o, ok := objs[key]
		if !ok {
			t.Fatalf("no %s", key)
		}
		return o
	}
	fleetEnv := get("ConfigMap/s3fleet-config").Data
	worker := get("Deployment/s3fleet-worker")
	w := worker.Spec.Template.Spec.Containers[0]

	t.Run("grace period above shutdown_timeout", func(t *testing.T) {
		raw, ok := w.env("S3FLEET_SHUTDOWN_TIMEOUT")
		if !ok {
			t.Fatal("the worker does not set S3FLEET_SHUTDOWN_TIMEOUT: the grace period must follow it")
		}
		d, err := time.ParseDuration(raw)
		if err != nil {
			t.Fatal(err)
		}
		grace := worker.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace == nil {
			t.Fatal("no terminationGracePeriodSeconds (the default, 30 s, is not above it)")
		}
		// 10 s for what follows the timeout: tasks handed back, the lease
		// given up.
		if time.Duration(*grace)*time.Second < d+10*time.Second {
			t.Errorf("terminationGracePeriodSeconds %d, shutdown_timeout %s: want at least 10 s more", *grace, d)
		}
		if _, inMap := fleetEnv["S3FLEET_SHUTDOWN_TIMEOUT"]; inMap {
			t.Error("S3FLEET_SHUTDOWN_TIMEOUT in the ConfigMap too: keep it beside the grace period alone")
		}
	})

	t.Run("allow_dest is the shared volume", func(t *testing.T) {
		dest, _ := w.env("S3FLEET_ALLOW_DEST")
		pvc := get("PersistentVolumeClaim/s3fleet-downloads")
		if !slices.Contains(pvc.Spec.AccessModes, "ReadWriteMany") {
			t.Errorf("the downloads claim is %v: every worker mounts it, so ReadWriteMany", pvc.Spec.AccessModes)
		}
		var volume string
		for _, v := range worker.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Metadata.Name {
				volume = v.Name
			}
		}
		mounted := false
		for _, m := range w.VolumeMounts {
			mounted = mounted || (m.Name == volume && m.MountPath == dest)
		}
		if dest == "" || !mounted {
			t.Errorf("S3FLEET_ALLOW_DEST %q is not where the claim %s is mounted", dest, pvc.Metadata.Name)
		}
	})

	t.Run("probes on the health listener", func(t *testing.T) {
		addr, _ := w.env("S3FLEET_HEALTH_ADDR")
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("S3FLEET_HEALTH_ADDR %q: %v", addr, err)
		}
		for name, p := range map[string]*probe{"/readyz": w.ReadinessProbe, "/healthz": w.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || strconv.Itoa(w.port(p.HTTPGet.Port)) != port {
				t.Errorf("the %s probe does not ask the health listener on port %s", name, port)
			}
		}
	})

	t.Run("KEDA reads the UI's backlog", func(t *testing.T) {
		so := get("ScaledObject/s3fleet-worker")
		if so.Spec.ScaleTargetRef.Name != worker.Metadata.Name {
			t.Errorf("the ScaledObject scales %q", so.Spec.ScaleTargetRef.Name)
		}
		svc := get("Service/s3fleet-ui")
		ui := get("Deployment/s3fleet-ui").Spec.Template.Spec.Containers[0]
		want := fmt.Sprintf("http://%s.%s.svc:%d/metrics", svc.Metadata.Name, svc.Metadata.Namespace, svc.Spec.Ports[0].Port)
		if len(so.Spec.Triggers) != 1 {
			t.Fatalf("triggers %+v", so.Spec.Triggers)
		}
		tr := so.Spec.Triggers[0]
		if tr.Type != "metrics-api" || tr.Metadata["url"] != want || tr.Metadata["format"] != "prometheus" || tr.Metadata["valueLocation"] != "s3fleet_backlog" {
			t.Errorf("trigger %s %v, want metrics-api reading s3fleet_backlog at %s", tr.Type, tr.Metadata, want)
		}
		addr, _ := ui.env("S3FLEET_UI")
		if _, port, _ := net.SplitHostPort(addr); port != strconv.Itoa(ui.port("http")) {
			t.Errorf("S3FLEET_UI %q, container port %d", addr, ui.port("http"))
		}
		if strings.Join(ui.Command, " ") != "enqueue ui" {
			t.Errorf("the UI runs %q, want enqueue ui (no tasks)", ui.Command)
		}
		if ro, _ := ui.env("S3FLEET_UI_READONLY"); ro != "true" {
			t.Errorf("S3FLEET_UI_READONLY %q, want true", ro)
		}
	})

	t.Run("Redis as asynq needs it", func(t *testing.T) {
		r := get("StatefulSet/s3fleet-redis").Spec.Template.Spec.Containers[0]
		args := strings.Join(r.Args, " ")
		for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
			if !strings.Contains(args, want) {
				t.Errorf("redis-server %s: lacks %s", args, want)
			}
		}
		svc := get("Service/s3fleet-redis")
		if want := fmt.Sprintf("redis://%s:%d/0", svc.Metadata.Name, svc.Spec.Ports[0].Port); fleetEnv["S3FLEET_REDIS"] != want {
			t.Errorf("S3FLEET_REDIS %q, want %q", fleetEnv["S3FLEET_REDIS"], want)
		}
	})

	t.Run("pods", func(t *testing.T) {
		for key, o := range objs {
			if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
				continue
			}
			s := o.Spec.Template.Spec
			// A Service's links would set S3FLEET_REDIS_PORT and the like.
			if s.EnableServiceLinks == nil || *s.EnableServiceLinks {
				t.Errorf("%s: enableServiceLinks is not false", key)
			}
			if s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot is not true", key)
			}
		}
	})
}
