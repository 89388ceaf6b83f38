// Package validate builds the Kubernetes manifests of deploy/k8s with
// kustomize and checks them with kubeconform against the JSON schemas kept
// in schemas/, offline: strict (a field no schema names is an error), and a
// kind without a schema fails rather than being looked up anywhere.
package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/yannh/kubeconform/pkg/validator"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Build runs kustomize on the kustomization in dir, in process: the YAML
// that kubectl apply -k dir would send.
func Build(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return m.AsYaml()
}

// SchemaFile is the name kubeconform looks a kind's schema up by, in the
// layout of its schema repositories: deployment-apps-v1.json,
// service-v1.json, scaledobject-keda-v1alpha1.json.
const SchemaFile = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

// NewValidator is a strict kubeconform validator that reads schemas from
// dir alone.
func NewValidator(dir string) (validator.Validator, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return validator.New([]string{filepath.Join(abs, SchemaFile)}, validator.Opts{Strict: true})
}

// Resource is one document of a manifest stream that passed.
type Resource struct {
	Kind, APIVersion, Name string
}

// Check validates every document of manifests (a YAML stream; name labels
// it in errors). It returns the resources that passed and an error naming
// each one that did not (invalid, no schema, not parseable), with its
// fields at fault.
func Check(v validator.Validator, name string, manifests []byte) ([]Resource, error) {
	var ok []Resource
	var errs []error
	for _, r := range v.ValidateWithContext(context.Background(), name, io.NopCloser(bytes.NewReader(manifests))) {
		sig, _ := r.Resource.Signature()
		what := name
		if sig != nil {
			what = fmt.Sprintf("%s %s/%s", name, sig.Kind, sig.Name)
		}
		switch r.Status {
		case validator.Valid:
			ok = append(ok, Resource{Kind: sig.Kind, APIVersion: sig.Version, Name: sig.Name})
		case validator.Empty:
		case validator.Invalid:
			var fields []string
			for _, e := range r.ValidationErrors {
				fields = append(fields, fmt.Sprintf("%s: %s", e.Path, e.Msg))
			}
			errs = append(errs, fmt.Errorf("%s: invalid: %s", what, strings.Join(fields, "; ")))
		default: // Error, or Skipped, which no option here asks for
			errs = append(errs, fmt.Errorf("%s: %v", what, r.Err))
		}
	}
	return ok, errors.Join(errs...)
}

// SchemaName is the file SchemaFile names for a kind: the kind, the first
// label of its API group (none for the core group) and its version, in
// lower case.
func SchemaName(kind, apiVersion string) string {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		group, version = "", apiVersion
	}
	name := strings.ToLower(kind)
	if group != "" {
		name += "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return name + "-" + strings.ToLower(version) + ".json"
}
