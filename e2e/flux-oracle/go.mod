// The differential oracle of plumb's substitution: Flux's envsubst and sigs.k8s.io/yaml, as
// kustomize-controller uses them. Built by build.sh.
module plumb.dev/plumb/e2e/flux-oracle

go 1.26.0

require (
	github.com/fluxcd/pkg/envsubst v1.8.0
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
