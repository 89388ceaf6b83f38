package validate_test

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/yannh/kubeconform/pkg/validator"
	"sigs.k8s.io/kustomize/kyaml/kio"

	"github.com/s3fleet/s3fleet/deploy/validate"
)

const (
	base    = "../k8s"
	schemas = "schemas"
)

// trap stands in for the network: HTTP_PROXY and HTTPS_PROXY point at it
// for the whole test binary (net/http reads them once), so every HTTP
// request made the standard way, kubeconform's schema downloads and
// kustomize's remote resources included, lands here and is recorded. The
// tests run one at a time, so what a test finds here it caused.
var trap = &netTrap{}

func TestMain(m *testing.M) {
	if err := trap.start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		os.Setenv(k, trap.url)
	}
	os.Unsetenv("NO_PROXY")
	os.Unsetenv("no_proxy")
	os.Exit(m.Run())
}

type netTrap struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func (n *netTrap) start() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.url = "http://" + l.Addr().String()
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.seen = append(n.seen, r.Method+" "+r.Host+r.URL.Path)
		n.mu.Unlock()
		http.NotFound(w, r)
	}))
	return nil
}

func (n *netTrap) requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.seen)
}

// offline fails t if any request reached the trap while t ran.
func offline(t *testing.T) {
	before := len(trap.requests())
	t.Cleanup(func() {
		if after := trap.requests(); len(after) > before {
			t.Errorf("validation went to the network: %q", after[before:])
		}
	})
}

func build(t *testing.T) []byte {
	t.Helper()
	b, err := validate.Build(base)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newValidator(t *testing.T) validator.Validator {
	t.Helper()
	v, err := validate.NewValidator(schemas)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestManifests is what make test checks of deploy/k8s: kustomize builds
// it and every resource passes its vendored schema, strictly, offline.
func TestManifests(t *testing.T) {
	offline(t)
	v := newValidator(t)
	got, err := validate.Check(v, "deploy/k8s", build(t))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range got {
		kinds = append(kinds, r.Kind+"/"+r.Name)
	}
	slices.Sort(kinds)
	want := []string{
		"ConfigMap/s3fleet-config", "Deployment/s3fleet-ui", "Deployment/s3fleet-worker",
		"Namespace/s3fleet", "NetworkPolicy/s3fleet-redis", "PersistentVolumeClaim/s3fleet-downloads",
		"ScaledObject/s3fleet-worker", "Service/s3fleet-redis", "Service/s3fleet-ui", "StatefulSet/s3fleet-redis",
	}
	for i, k := range kinds {
		if strings.HasPrefix(k, "ConfigMap/s3fleet-config-") {
			kinds[i] = "ConfigMap/s3fleet-config" // the generator's hash suffix
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, want) {
		t.Errorf("valid resources %q, want %q", kinds, want)
	}

	example, err := os.ReadFile(filepath.Join(base, "secrets.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := validate.Check(v, "secrets.example.yaml", example); err != nil || len(got) != 1 {
		t.Errorf("secrets.example.yaml: %v valid, %v", got, err)
	}
}

// TestTypos: a misspelt or mistyped field anywhere fails, in built-in kinds
// and in KEDA's ScaledObject, its metadata included.
func TestTypos(t *testing.T) {
	offline(t)
	v := newValidator(t)
	built := string(build(t))
	for _, tc := range []struct {
		kind, name, old, new, want string
	}{
		{"Deployment", "s3fleet-ui", "replicas: 1", "replicaz: 1", "replicaz"},
		{"Deployment", "s3fleet-worker", "imagePullPolicy:", "imagePullPolicyy:", "imagePullPolicyy"},
		{"Deployment", "s3fleet-worker", "terminationGracePeriodSeconds: 45", `terminationGracePeriodSeconds: "45"`, "/spec/template/spec/terminationGracePeriodSeconds"},
		{"Deployment", "s3fleet-worker", "readinessProbe:", "readynessProbe:", "readynessProbe"},
		{"StatefulSet", "s3fleet-redis", "accessModes:", "accesModes:", "accesModes"},
		{"Service", "s3fleet-ui", "targetPort: http", "targetport: http", "targetport"},
		{"ScaledObject", "s3fleet-worker", "minReplicaCount: 1", "minReplicaCont: 1", "minReplicaCont"},
		{"ScaledObject", "s3fleet-worker", "maxReplicaCount: 20", "maxReplicaCount: twenty", "/spec/maxReplicaCount"},
		{"ScaledObject", "s3fleet-worker", "  labels:", "  lables:", "lables"},
		{"ScaledObject", "s3fleet-worker", "targetValue: \"16\"", "targetValue: 16", "/spec/triggers/0/metadata/targetValue"},
	} {
		t.Run(tc.kind+"/"+tc.want, func(t *testing.T) {
			bad := mutate(t, built, tc.kind, tc.name, tc.old, tc.new)
			_, err := validate.Check(v, "mutated", []byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %s with %q: %v, want an error naming %s", tc.kind, tc.name, tc.new, err, tc.want)
			}
		})
	}
}

// mutate replaces the first old with new in the one document of stream
// that is kind/name.
func mutate(t *testing.T, stream, kind, name, old, new string) string {
	t.Helper()
	docs := strings.Split(stream, "\n---\n")
	for i, d := range docs {
		if strings.Contains(d, "kind: "+kind+"\n") && strings.Contains(d, "  name: "+name+"\n") {
			if !strings.Contains(d, old) {
				t.Fatalf("%s/%s has no %q", kind, name, old)
			}
			docs[i] = strings.Replace(d, old, new, 1)
			return strings.Join(docs, "\n---\n")
		}
	}
	t.Fatalf("no %s/%s in the build", kind, name)
	return ""
}

// TestMissingSchema: a kind with no vendored schema fails; it is not
// fetched, skipped or waved through.
func TestMissingSchema(t *testing.T) {
	offline(t)
	manifests := `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: s3fleet-ui
spec:
  defaultBackend:
    service:
      name: s3fleet-ui
      port:
        number: 8080
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: s3fleet
spec: {}
`
	got, err := validate.Check(newValidator(t), "unknown kinds", []byte(manifests))
	if len(got) != 0 {
		t.Errorf("passed: %v", got)
	}
	for _, kind := range []string{"Ingress", "ServiceMonitor"} {
		if err == nil || !strings.Contains(err.Error(), "could not find schema for "+kind) {
			t.Errorf("%s: %v, want could not find schema", kind, err)
		}
	}
}

// TestTrapCatches shows the trap works: a validator told to fetch schemas
// over HTTP reaches it. Were validation to fetch anything, the other
// tests would see it.
func TestTrapCatches(t *testing.T) {
	before := len(trap.requests())
	v, err := validator.New([]string{"http://schemas.s3fleet.invalid/" + validate.SchemaFile}, validator.Opts{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	deployment := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"
	if _, err := validate.Check(v, "remote", []byte(deployment)); err == nil {
		t.Error("a schema no one serves was found")
	}
	want := "GET schemas.s3fleet.invalid/deployment-apps-v1.json"
	if got := trap.requests()[before:]; !slices.Contains(got, want) {
		t.Errorf("the trap saw %q, want %q", got, want)
	}
}

// TestSchemasVendored: schemas/ holds a schema for each kind the manifests
// use and no other, each listed with its source in sources.txt.
func TestSchemasVendored(t *testing.T) {
	offline(t)
	example, err := os.ReadFile(filepath.Join(base, "secrets.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, stream := range [][]byte{build(t), example} {
		nodes, err := kio.FromBytes(stream)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			used[validate.SchemaName(n.GetKind(), n.GetApiVersion())] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(schemas, "*.json"))
	var have []string
	for _, f := range files {
		have = append(have, filepath.Base(f))
	}
	if want := slices.Sorted(maps.Keys(used)); !slices.Equal(have, want) {
		t.Errorf("schemas/ holds %q, the manifests use %q: run go run ./cmd/schemas", have, want)
	}
	sources, err := os.ReadFile(filepath.Join(schemas, "sources.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range have {
		if !strings.Contains(string(sources), "\n"+f+"\t") {
			t.Errorf("sources.txt does not say where %s came from", f)
		}
	}
}

func TestSchemaName(t *testing.T) {
	for _, tc := range []struct{ kind, apiVersion, want string }{
		{"Deployment", "apps/v1", "deployment-apps-v1.json"},
		{"Service", "v1", "service-v1.json"},
		{"NetworkPolicy", "networking.k8s.io/v1", "networkpolicy-networking-v1.json"},
		{"ScaledObject", "keda.sh/v1alpha1", "scaledobject-keda-v1alpha1.json"},
	} {
		if got := validate.SchemaName(tc.kind, tc.apiVersion); got != tc.want {
			t.Errorf("SchemaName(%s, %s) = %s, want %s", tc.kind, tc.apiVersion, got, tc.want)
		}
	}
}
