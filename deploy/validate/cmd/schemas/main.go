// Command schemas writes the JSON schemas that package validate checks the
// manifests of deploy/k8s against, for the kinds they use and no other:
// Kubernetes' own from the OpenAPI v2 spec in the module k8s.io/kubernetes,
// KEDA's ScaledObject from its CRD in the module
// github.com/kedacore/keda/v2, both fetched with go mod download (the Go
// module proxy). Each schema is made standalone (every $ref inlined),
// strict (additionalProperties: false wherever properties are listed) and
// small (no descriptions, no x-kubernetes-* extensions), under the names
// kubeconform looks up (deployment-apps-v1.json). schemas/sources.txt says
// where each came from.
//
// Run it from deploy/validate: go run ./cmd/schemas
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/yaml"

	"github.com/s3fleet/s3fleet/deploy/validate"
)

// The sources, pinned: change a version here and run the command again.
const (
	kubernetesModule = "k8s.io/kubernetes@v1.35.4"
	kubernetesSpec   = "api/openapi-spec/swagger.json"
	kedaModule       = "github.com/kedacore/keda/v2@v2.21.0"
)

// kedaCRDs are the CRD files of kedaModule searched for custom kinds.
var kedaCRDs = []string{"config/crd/bases/keda.sh_scaledobjects.yaml"}

func main() {
	out := flag.String("out", "schemas", "directory to write the schemas into (its *.json are replaced)")
	manifests := flag.String("k8s", "../k8s", "the kustomization whose kinds need schemas")
	flag.Parse()
	if err := run(*out, *manifests, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "schemas:", err)
		os.Exit(1)
	}
}

// gvk is a kind of resource by its apiVersion and kind.
type gvk struct{ apiVersion, kind string }

func (g gvk) String() string { return g.apiVersion + " " + g.kind }

func run(out, manifests string, extra []string) error {
	kinds, err := kindsOf(manifests, append(extra, filepath.Join(manifests, "secrets.example.yaml")))
	if err != nil {
		return err
	}
	k8sDir, err := moduleDir(kubernetesModule)
	if err != nil {
		return err
	}
	spec, err := loadSwagger(filepath.Join(k8sDir, kubernetesSpec))
	if err != nil {
		return err
	}
	kedaDir, err := moduleDir(kedaModule)
	if err != nil {
		return err
	}
	crds := map[gvk]crdVersion{}
	for _, f := range kedaCRDs {
		if err := loadCRD(filepath.Join(kedaDir, f), f, crds); err != nil {
			return err
		}
	}

	schemas := map[string][]byte{}
	var sources []string
	for _, k := range kinds {
		var s any
		var from string
		if def, ok := spec.byGVK[k]; ok {
			if s, err = spec.definition(def); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			from = fmt.Sprintf("%s %s#/definitions/%s", kubernetesModule, kubernetesSpec, def)
		} else if c, ok := crds[k]; ok {
			if s, err = crdSchema(c.schema, spec); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			from = fmt.Sprintf("%s %s (spec.versions[%s].schema.openAPIV3Schema; metadata: ObjectMeta of %s)", kedaModule, c.file, c.version, kubernetesModule)
		} else {
			return fmt.Errorf("%s: in neither %s nor the CRDs of %s", k, kubernetesModule, kedaModule)
		}
		b, err := json.MarshalIndent(s, "", " ")
		if err != nil {
			return err
		}
		name := validate.SchemaName(k.kind, k.apiVersion)
		schemas[name] = append(b, '\n')
		sources = append(sources, name+"\t"+from)
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(out, "*.json"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(schemas)) {
		if err := os.WriteFile(filepath.Join(out, name), schemas[name], 0o644); err != nil {
			return err
		}
		fmt.Printf("%s\t%d bytes\n", name, len(schemas[name]))
	}
	slices.Sort(sources)
	head := "# Written by go run ./cmd/schemas: each schema file and where it came from.\n"
	return os.WriteFile(filepath.Join(out, "sources.txt"), []byte(head+strings.Join(sources, "\n")+"\n"), 0o644)
}

// kindsOf lists the kinds that the kustomization dir and the files hold.
func kindsOf(dir string, files []string) ([]gvk, error) {
	built, err := validate.Build(dir)
	if err != nil {
		return nil, err
	}
	streams := [][]byte{built}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		streams = append(streams, b)
	}
	seen := map[gvk]bool{}
	for _, s := range streams {
		nodes, err := kio.FromBytes(s)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			seen[gvk{n.GetApiVersion(), n.GetKind()}] = true
		}
	}
	return slices.SortedFunc(maps.Keys(seen), func(a, b gvk) int { return strings.Compare(a.String(), b.String()) }), nil
}

// moduleDir downloads mod (path@version) into the module cache and returns
// its directory.
func moduleDir(mod string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(b, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", mod, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// swagger is the Kubernetes OpenAPI v2 spec's definitions.
type swagger struct {
	defs  map[string]any
	byGVK map[gvk]string
}

func loadSwagger(path string) (*swagger, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &swagger{defs: map[string]any{}, byGVK: map[gvk]string{}}
	for name, def := range doc.Definitions {
		s.defs[name] = def
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			m, _ := g.(map[string]any)
			group, _ := m["group"].(string)
			version, _ := m["version"].(string)
			kind, _ := m["kind"].(string)
			apiVersion := version
			if group != "" {
				apiVersion = group + "/" + version
			}
			s.byGVK[gvk{apiVersion, kind}] = name
		}
	}
	return s, nil
}

// Definitions whose wire form the spec does not say: a quantity is
// written "1Gi" or 1, an int-or-string 8080 or "http".
var replaced = map[string]any{
	"io.k8s.apimachinery.pkg.api.resource.Quantity": map[string]any{"oneOf": []any{
		map[string]any{"type": "string"}, map[string]any{"type": "number"}}},
	"io.k8s.apimachinery.pkg.util.intstr.IntOrString": intOrString(),
}

func intOrString() any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
}

// definition is the standalone, strict schema of the definition name.
func (s *swagger) definition(name string) (any, error) {
	c := &converter{defs: s.defs, open: map[string]bool{}}
	return c.ref(name)
}

// converter turns OpenAPI schema objects into standalone strict JSON
// schemas (draft 4, which kubeconform compiles them as).
type converter struct {
	defs map[string]any
	open map[string]bool // definitions being inlined: a cycle would not end
}

func (c *converter) ref(name string) (any, error) {
	if r, ok := replaced[name]; ok {
		return r, nil
	}
	def, ok := c.defs[name]
	if !ok {
		return nil, fmt.Errorf("no definition %s", name)
	}
	if c.open[name] {
		return nil, fmt.Errorf("definition %s refers to itself: it cannot be inlined", name)
	}
	c.open[name] = true
	defer delete(c.open, name)
	return c.schema(def)
}

// schema converts one schema object.
func (c *converter) schema(node any) (any, error) {
	m, ok := node.(map[string]any)
	if !ok {
		return node, nil // additionalProperties: true/false
	}
	if ref, ok := m["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/definitions/")
		if !found {
			return nil, fmt.Errorf("$ref %s: not a local definition", ref)
		}
		return c.ref(name)
	}
	if m["format"] == "int-or-string" || m["x-kubernetes-int-or-string"] == true {
		return intOrString(), nil
	}
	out := map[string]any{}
	for k, v := range m {
		var err error
		switch {
		case k == "description" || strings.HasPrefix(k, "x-kubernetes-") || k == "nullable":
			continue
		case k == "properties":
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				if props[name], err = c.schema(p); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
			}
			v = props
		case k == "items" || k == "additionalProperties" || k == "not":
			v, err = c.schema(v)
		case k == "allOf" || k == "anyOf" || k == "oneOf":
			var list []any
			for _, s := range v.([]any) {
				cs, err := c.schema(s)
				if err != nil {
					return nil, err
				}
				list = append(list, cs)
			}
			v = list
		}
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	if m["nullable"] == true {
		if t, ok := out["type"].(string); ok {
			out["type"] = []any{t, "null"}
		}
	}
	_, listed := out["properties"]
	_, set := out["additionalProperties"]
	if listed && !set && m["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out, nil
}

// crdVersion is one served version of a CRD.
type crdVersion struct {
	file, version string
	schema        any
}

func loadCRD(path, file string, into map[gvk]crdVersion) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd struct {
		Kind string `json:"kind"`
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if crd.Kind != "CustomResourceDefinition" || len(crd.Spec.Versions) == 0 {
		return fmt.Errorf("%s: not a CustomResourceDefinition with versions", path)
	}
	for _, v := range crd.Spec.Versions {
		if v.Schema.OpenAPIV3Schema == nil {
			return fmt.Errorf("%s: version %s has no schema", path, v.Name)
		}
		into[gvk{crd.Spec.Group + "/" + v.Name, crd.Spec.Names.Kind}] = crdVersion{file: file, version: v.Name, schema: v.Schema.OpenAPIV3Schema}
	}
	return nil
}

// crdSchema converts a CRD's schema, its metadata checked as the API
// server does, against ObjectMeta (a CRD leaves it a bare object).
func crdSchema(s any, spec *swagger) (any, error) {
	c := &converter{defs: spec.defs, open: map[string]bool{}}
	out, err := c.schema(s)
	if err != nil {
		return nil, err
	}
	props, _ := out.(map[string]any)["properties"].(map[string]any)
	if props == nil || props["metadata"] == nil {
		return nil, errors.New("no metadata property")
	}
	if props["metadata"], err = c.ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"); err != nil {
		return nil, err
	}
	return out, nil
}
