// flux-oracle substitutes variables into objects exactly as Flux's kustomize-controller does
// (fluxcd/pkg/kustomize SubstituteVariables): each object's JSON is written as YAML by
// sigs.k8s.io/yaml, substituted by github.com/fluxcd/pkg/envsubst in strict mode, and read back
// by sigs.k8s.io/yaml. plumb's differential substitution tests compare against it.
//
// As SubstituteVariables does, newlines are removed from the values first.
//
// Input (stdin): {"vars": {"name": "value", ...}, "objects": [{...}, ...]}
// Output (stdout): one JSON array with, per object, {"object": {...}} or {"error": "..."}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/fluxcd/pkg/envsubst"
	"sigs.k8s.io/yaml"
)

type request struct {
	Vars    map[string]string `json:"vars"`
	Objects []json.RawMessage `json:"objects"`
}

type result struct {
	Object json.RawMessage `json:"object,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func substitute(obj json.RawMessage, vars map[string]string) (json.RawMessage, error) {
	text, err := yaml.JSONToYAML(obj)
	if err != nil {
		return nil, fmt.Errorf("JSONToYAML: %w", err)
	}
	out, err := envsubst.Eval(string(text), func(s string) (string, bool) {
		v, ok := vars[s]
		return v, ok
	})
	if err != nil {
		return nil, fmt.Errorf("envsubst: %w", err)
	}
	j, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("YAMLToJSON: %w", err)
	}
	return j, nil
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "flux-oracle: reading the request:", err)
		os.Exit(2)
	}
	for k, v := range req.Vars {
		req.Vars[k] = strings.ReplaceAll(v, "\n", "")
	}
	results := make([]result, 0, len(req.Objects))
	for _, obj := range req.Objects {
		j, err := substitute(obj, req.Vars)
		if err != nil {
			results = append(results, result{Error: err.Error()})
			continue
		}
		results = append(results, result{Object: j})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "flux-oracle: writing the result:", err)
		os.Exit(2)
	}
}
