package deploy

import (
	"bytes"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// TestManifestsStrict decodes every manifest of a built-in kind into the
// Kubernetes API's own Go types, refusing unknown fields: a misspelt or
// misplaced field, a number written as a word, a malformed quantity fails
// here rather than at kubectl apply (or, worse, is dropped by it). The
// ServiceMonitor, a custom resource, is checked by TestServiceMonitor.
func TestManifestsStrict(t *testing.T) {
	types := map[string]func() any{
		"Deployment":            func() any { return new(appsv1.Deployment) },
		"Service":               func() any { return new(corev1.Service) },
		"ConfigMap":             func() any { return new(corev1.ConfigMap) },
		"PersistentVolumeClaim": func() any { return new(corev1.PersistentVolumeClaim) },
		"PodDisruptionBudget":   func() any { return new(policyv1.PodDisruptionBudget) },
		"Ingress":               func() any { return new(networkingv1.Ingress) },
		"NetworkPolicy":         func() any { return new(networkingv1.NetworkPolicy) },
	}
	n := 0
	for _, ms := range loadManifests(t) {
		for _, m := range ms {
			newObj, ok := types[m.Kind]
			if !ok {
				continue
			}
			var doc any
			m.decode(t, &doc)
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("%s: %v", m.file, err)
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(newObj()); err != nil {
				t.Errorf("%s: %s %s: %v", m.file, m.Kind, m.Metadata.Name, err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no manifest decoded")
	}
}
