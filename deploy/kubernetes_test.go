package deploy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// releaseVersion is the release that the manifests deploy: the image tag
// of every Deployment (ghcr.io/longpoll/longpoll:<releaseVersion>) and,
// without its v, the version of the npm package in ../js/package.json.
// It is the git tag of the release, as git describe prints it on the
// tagged commit. A release changes the three together (docs/deployment.md,
// "Kubernetes"); the tests fail until they agree, and, once CHANGELOG.md
// names releases, until its latest is this one.
const releaseVersion = "v0.1.0"

const image = "ghcr.io/longpoll/longpoll"

// The setups under kubernetes/, each a directory that kubectl apply -f
// takes whole; the files directly in kubernetes/ go with either.
var setups = []string{"single-node", "many-node"}

// intOrString is a Kubernetes field that holds a number or a name (a
// port, a quantity), kept as written.
type intOrString string

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a string", n.Line)
	}
	*v = intOrString(n.Value)
	return nil
}

type metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// selects reports whether s selects the pods labelled labels.
func (s labelSelector) selects(labels map[string]string) bool {
	if len(s.MatchLabels) == 0 {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]intOrString `yaml:"requests"`
		Limits   map[string]intOrString `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type affinityTerm struct {
	TopologyKey   string        `yaml:"topologyKey"`
	LabelSelector labelSelector `yaml:"labelSelector"`
}

type deployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata metadata `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
				Affinity                      struct {
					PodAntiAffinity *struct {
						Required  []affinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
						Preferred []struct {
							PodAffinityTerm affinityTerm `yaml:"podAffinityTerm"`
						} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
					} `yaml:"podAntiAffinity"`
				} `yaml:"affinity"`
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		Selector  map[string]string `yaml:"selector"`
		ClusterIP string            `yaml:"clusterIP"`
		Ports     []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// manifest is one document of a file under kubernetes/.
type manifest struct {
	file       string // relative to kubernetes/
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   metadata
	Data       map[string]string `yaml:"data"`
	node       yaml.Node
}

// decode decodes the whole document into v.
func (m *manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.node.Decode(v); err != nil {
		t.Fatalf("%s: %s %s: %v", m.file, m.Kind, m.Metadata.Name, err)
	}
}

// loadManifests reads every document of every .yaml file under
// kubernetes/, by directory ("." for the shared files).
func loadManifests(t *testing.T) map[string][]*manifest {
	t.Helper()
	out := map[string][]*manifest{}
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" {
			return fmt.Errorf("%s: manifests end in .yaml, so that every one is checked", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("kubernetes", path)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			m := &manifest{file: rel}
			if err := dec.Decode(&m.node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := m.node.Decode(m); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			out[filepath.Dir(rel)] = append(out[filepath.Dir(rel)], m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// only returns the one manifest of kind in ms.
func only(t *testing.T, ms []*manifest, kind string) *manifest {
	t.Helper()
	var found []*manifest
	for _, m := range ms {
		if m.Kind == kind {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, found %d", kind, len(found))
	}
	return found[0]
}

func ofKind(ms []*manifest, kind string) []*manifest {
	var out []*manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

func TestManifestsParse(t *testing.T) {
	all := loadManifests(t)
	apiVersions := map[string]string{
		"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "PersistentVolumeClaim": "v1",
		"PodDisruptionBudget": "policy/v1", "Ingress": "networking.k8s.io/v1",
		"NetworkPolicy": "networking.k8s.io/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
	}
	for _, dir := range append([]string{"."}, setups...) {
		if len(all[dir]) == 0 {
			t.Errorf("kubernetes/%s: no manifests", dir)
		}
	}
	n := 0
	for _, ms := range all {
		for _, m := range ms {
			n++
			if want, ok := apiVersions[m.Kind]; !ok {
				t.Errorf("%s: kind %q is not one this test knows", m.file, m.Kind)
			} else if m.APIVersion != want {
				t.Errorf("%s: %s has apiVersion %q, want %q", m.file, m.Kind, m.APIVersion, want)
			}
			if m.Metadata.Name == "" {
				t.Errorf("%s: a %s without a name", m.file, m.Kind)
			}
			if m.Metadata.Namespace != "" {
				t.Errorf("%s: %s %s names namespace %q: leave it to kubectl -n", m.file, m.Kind, m.Metadata.Name, m.Metadata.Namespace)
			}
			if m.Metadata.Labels["app.kubernetes.io/name"] != "longpoll" {
				t.Errorf("%s: %s %s lacks the label app.kubernetes.io/name: longpoll", m.file, m.Kind, m.Metadata.Name)
			}
		}
	}
	t.Logf("%d manifests", n)
}

// setup is a Deployment with what goes with it.
type setup struct {
	dir       string
	manifests []*manifest
	dep       deployment
	c         container
	flags     map[string]string // --name=value of the container's args after serve
	toml      string            // the ConfigMap's longpoll.toml
}

func loadSetup(t *testing.T, all map[string][]*manifest, dir string) *setup {
	t.Helper()
	s := &setup{dir: dir, manifests: all[dir]}
	only(t, s.manifests, "Deployment").decode(t, &s.dep)
	cs := s.dep.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%s: want one container, found %d", dir, len(cs))
	}
	s.c = cs[0]
	if len(s.c.Args) == 0 || s.c.Args[0] != "serve" {
		t.Fatalf("%s: the container's args must start with serve (the image's entrypoint is longpoll): %q", dir, s.c.Args)
	}
	s.flags = map[string]string{}
	for _, a := range s.c.Args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("%s: argument %q: write each flag as --name=value", dir, a)
		}
		if _, dup := s.flags[name]; dup {
			t.Fatalf("%s: --%s given twice", dir, name)
		}
		s.flags[name] = value
	}
	// The configuration file is the ConfigMap's key at --config.
	cfg := s.flags["config"]
	if cfg == "" {
		t.Fatalf("%s: no --config", dir)
	}
	cm, key := s.mounted(t, cfg, "configMap")
	for _, m := range ofKind(s.manifests, "ConfigMap") {
		if m.Metadata.Name == cm {
			s.toml = m.Data[key]
		}
	}
	if s.toml == "" {
		t.Fatalf("%s: --config=%s: the ConfigMap %s in this directory has no key %s", dir, cfg, cm, key)
	}
	return s
}

// mounted returns the volume's source (the ConfigMap's, Secret's or
// claim's name) and, for a file, its key, where path is in the
// container's file system; it fails unless a volume of kind is mounted
// there.
func (s *setup) mounted(t *testing.T, path, kind string) (name, key string) {
	t.Helper()
	for _, vm := range s.c.VolumeMounts {
		var rel string
		switch {
		case vm.SubPath != "" && path == vm.MountPath:
			rel = vm.SubPath
		case vm.SubPath == "" && path == vm.MountPath:
		case vm.SubPath == "" && strings.HasPrefix(path, vm.MountPath+"/"):
			rel = strings.TrimPrefix(path, vm.MountPath+"/")
		default:
			continue
		}
		for _, v := range s.dep.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			switch {
			case kind == "configMap" && v.ConfigMap != nil:
				return v.ConfigMap.Name, rel
			case kind == "secret" && v.Secret != nil:
				return v.Secret.SecretName, rel
			case kind == "persistentVolumeClaim" && v.PersistentVolumeClaim != nil && rel == "":
				return v.PersistentVolumeClaim.ClaimName, ""
			}
		}
	}
	t.Fatalf("%s: %s is not on a %s volume of the container", s.dir, path, kind)
	return "", ""
}

// port returns the number of the container port named or numbered p.
func (s *setup) port(t *testing.T, p intOrString) int {
	t.Helper()
	for _, cp := range s.c.Ports {
		if cp.Name == string(p) || strconv.Itoa(cp.ContainerPort) == string(p) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("%s: the container has no port %q", s.dir, p)
	return 0
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	return n
}

// files writes what the container's args name into dir: the ConfigMap's
// TOML and an HS256 secret. It returns the args after serve with those
// paths, the listening addresses and the data directory replaced by ones
// on this machine: two free loopback ports and a new directory, or, with
// keepAddrs, the addresses left as written.
func (s *setup) local(t *testing.T, dir string, keepAddrs bool) []string {
	t.Helper()
	cfg := filepath.Join(dir, "longpoll.toml")
	secret := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(cfg, []byte(s.toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("a test secret of more than thirty-two bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range s.c.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch name {
		case "config":
			a = "--config=" + cfg
		case "jwt-secret-file":
			a = "--jwt-secret-file=" + secret
		case "data-dir":
			a = "--data-dir=" + filepath.Join(dir, "data")
		case "addr", "admin-addr":
			if !keepAddrs {
				a = "--" + name + "=127.0.0.1:0"
			}
		}
		args = append(args, a)
	}
	return args
}

// env returns the container's environment, a Secret's value replaced by
// secretValues[name/key].
func (s *setup) env(t *testing.T, secretValues map[string]string) []string {
	t.Helper()
	var out []string
	for _, e := range s.c.Env {
		switch {
		case e.Value != nil:
			out = append(out, e.Name+"="+*e.Value)
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			v, ok := secretValues[ref]
			if !ok {
				t.Fatalf("%s: env %s comes from the Secret key %s, which the test has no value for", s.dir, e.Name, ref)
			}
			out = append(out, e.Name+"="+v)
		default:
			t.Fatalf("%s: env %s: neither a value nor a Secret's key", s.dir, e.Name)
		}
	}
	return out
}

// secretsForCheck stand for the Secrets' values in longpoll config.
var secretsForCheck = map[string]string{"longpoll-redis/url": "redis://:password@redis.example:6379/0"}

// settings returns the settings that longpoll serve would run with in
// the container, as longpoll config --json reports them.
func (s *setup) settings(t *testing.T) map[string]any {
	t.Helper()
	out, errOut, code := run(t, s.env(t, secretsForCheck), append([]string{"config", "--json"}, s.local(t, t.TempDir(), true)...)...)
	if code != 0 {
		t.Fatalf("%s: longpoll config --json with the container's args: exit %d\n%s%s", s.dir, code, out, errOut)
	}
	var doc struct {
		Settings []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	for _, kv := range doc.Settings {
		m[kv.Key] = kv.Value
	}
	return m
}

func durationSetting(t *testing.T, set map[string]any, key string) time.Duration {
	t.Helper()
	s, _ := set[key].(string)
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("setting %s = %v: %v", key, set[key], err)
	}
	return d
}

func numberSetting(t *testing.T, set map[string]any, key string) float64 {
	t.Helper()
	n, ok := set[key].(float64)
	if !ok {
		t.Fatalf("setting %s = %v: not a number", key, set[key])
	}
	return n
}

// quantity parses a Kubernetes memory quantity with a binary suffix.
func quantity(t *testing.T, q intOrString) float64 {
	t.Helper()
	units := map[string]float64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
	for suffix, mult := range units {
		if n, ok := strings.CutSuffix(string(q), suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * mult
		}
	}
	t.Fatalf("quantity %q: write memory with Ki, Mi or Gi", q)
	return 0
}

// Memory per held poll and at rest, as docs/performance.md measured them;
// each figure is looked for there, so that a new measurement fails the
// test until the requests are sized again.
var memoryFigures = map[string]struct {
	perPollKiB float64
	doc        string // the figure as docs/performance.md writes it
}{
	"single-node": {0.7, "| RSS per held poll, 19,000 held | **0.7 KiB** (17.4 MiB before"},
	"many-node":   {2.5, "(2.5 KiB per held poll)"},
}

const restMiB = 17.4 // "17.4 MiB before", in the same row of docs/performance.md

func TestDeployments(t *testing.T) {
	all := loadManifests(t)
	flags := serveFlags(t)
	envs := map[string]bool{}
	for _, v := range flags {
		envs[v] = true
	}
	perf, err := os.ReadFile("../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range setups {
		t.Run(dir, func(t *testing.T) {
			s := loadSetup(t, all, dir)
			pod := s.dep.Spec.Template
			if !s.dep.Spec.Selector.selects(pod.Metadata.Labels) {
				t.Errorf("the Deployment's selector %v does not select its pods %v", s.dep.Spec.Selector.MatchLabels, pod.Metadata.Labels)
			}
			for name := range s.flags {
				if _, ok := flags[name]; !ok {
					t.Errorf("--%s is not a flag of longpoll serve (longpoll serve --help)", name)
				}
			}
			for _, e := range s.c.Env {
				if strings.HasPrefix(e.Name, "LONGPOLL_") && !envs[e.Name] {
					t.Errorf("env %s is not the variable of a flag of longpoll serve", e.Name)
				}
			}
			if want := image + ":" + releaseVersion; s.c.Image != want {
				t.Errorf("image %q, want %q", s.c.Image, want)
			}

			// Probes on the port of --addr: /readyz for readiness,
			// /healthz for liveness (and start-up, when probed).
			addrPort := portOf(t, s.flags["addr"])
			for _, p := range []struct {
				name  string
				probe *probe
				path  string
			}{{"readinessProbe", s.c.ReadinessProbe, "/readyz"}, {"livenessProbe", s.c.LivenessProbe, "/healthz"}, {"startupProbe", s.c.StartupProbe, "/healthz"}} {
				if p.probe == nil {
					if p.name != "startupProbe" {
						t.Errorf("no %s", p.name)
					}
					continue
				}
				if p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s: want an httpGet of %s", p.name, p.path)
					continue
				}
				if got := s.port(t, p.probe.HTTPGet.Port); got != addrPort {
					t.Errorf("%s on port %d, but --addr=%s", p.name, got, s.flags["addr"])
				}
			}
			if s.flags["admin-addr"] == "" {
				t.Fatal("no --admin-addr: /metrics would need a token")
			}
			if got := s.port(t, "admin"); got != portOf(t, s.flags["admin-addr"]) {
				t.Errorf("the container port admin is %d, but --admin-addr=%s", got, s.flags["admin-addr"])
			}

			// Draining: longer than the readiness probe needs to take the
			// pod out, and all of it inside the grace period.
			set := s.settings(t)
			drain, grace := durationSetting(t, set, "drain-delay"), durationSetting(t, set, "shutdown-grace")
			if _, ok := s.flags["drain-delay"]; !ok || drain <= 0 {
				t.Errorf("--drain-delay must be in the args, and positive: %v", drain)
			}
			if r := s.c.ReadinessProbe; r != nil {
				period, failures := cmp.Or(r.PeriodSeconds, 10), cmp.Or(r.FailureThreshold, 3) // Kubernetes' defaults
				if out := time.Duration(period*failures) * time.Second; drain <= out {
					t.Errorf("--drain-delay=%v must be longer than the readiness probe's %v (period x failure threshold)", drain, out)
				}
			}
			tg := s.dep.Spec.Template.Spec.TerminationGracePeriodSeconds
			if tg == nil {
				t.Errorf("no terminationGracePeriodSeconds: Kubernetes' 30 s may change; write it above --drain-delay (%v) plus --shutdown-grace (%v)", drain, grace)
			} else if time.Duration(*tg)*time.Second <= drain+grace {
				t.Errorf("terminationGracePeriodSeconds %d must be above --drain-delay (%v) plus --shutdown-grace (%v)", *tg, drain, grace)
			}

			// Memory: the request holds the polls the configuration
			// lets in, at the measured cost of each, plus the replies'
			// budget and the process at rest.
			fig := memoryFigures[dir]
			if !bytes.Contains(perf, []byte(fig.doc)) || !bytes.Contains(perf, []byte(fmt.Sprintf("%.1f MiB before", restMiB))) {
				t.Errorf("docs/performance.md no longer says %q and %.1f MiB at rest: size the memory request again and update this test", fig.doc, restMiB)
			}
			held := numberSetting(t, set, "max-held-polls")
			if held == 0 {
				t.Errorf("max-held-polls is 0 (from the open-file limit): bound it, for the memory request to hold")
			}
			need := held*fig.perPollKiB*1024 + numberSetting(t, set, "max-reply-memory") + restMiB*(1<<20)
			req, lim := s.c.Resources.Requests["memory"], s.c.Resources.Limits["memory"]
			if req == "" || lim == "" || s.c.Resources.Requests["cpu"] == "" {
				t.Fatalf("want memory and cpu requests and a memory limit: %+v", s.c.Resources)
			}
			if r := quantity(t, req); r < need {
				t.Errorf("memory request %s < %.1f MiB: %v held polls x %.1f KiB, plus max-reply-memory and %.1f MiB at rest", req, need/(1<<20), held, fig.perPollKiB, restMiB)
			} else if r > 2*need {
				t.Errorf("memory request %s is more than twice the %.1f MiB computed: size it again", req, need/(1<<20))
			}
			if quantity(t, lim) < quantity(t, req) {
				t.Errorf("memory limit %s below the request %s", lim, req)
			}

			// The JWT secret is a file of a Secret.
			if set["auth"] != "jwt" {
				t.Errorf("auth = %v, want jwt", set["auth"])
			}
			if f := s.flags["jwt-secret-file"]; f == "" {
				t.Error("no --jwt-secret-file")
			} else if _, key := s.mounted(t, f, "secret"); key == "" {
				t.Errorf("--jwt-secret-file=%s is a directory of the Secret, not one of its keys", f)
			}

			// The Services: selecting the pods, on their named ports.
			svcs := ofKind(s.manifests, "Service")
			if len(svcs) == 0 {
				t.Fatal("no Service")
			}
			for _, m := range svcs {
				var svc service
				m.decode(t, &svc)
				if !labelSelector(labelSelector{MatchLabels: svc.Spec.Selector}).selects(pod.Metadata.Labels) {
					t.Errorf("Service %s does not select the pods", m.Metadata.Name)
				}
				for _, p := range svc.Spec.Ports {
					s.port(t, p.TargetPort)
				}
			}

			switch dir {
			case "single-node":
				if s.dep.Spec.Replicas != 1 || s.dep.Spec.Strategy.Type != "Recreate" {
					t.Errorf("replicas %d, strategy %q: the disk store wants 1 and Recreate", s.dep.Spec.Replicas, s.dep.Spec.Strategy.Type)
				}
				if set["store"] != "disk" {
					t.Errorf("store = %v, want disk", set["store"])
				}
				claim, _ := s.mounted(t, s.flags["data-dir"], "persistentVolumeClaim")
				found := false
				for _, m := range ofKind(s.manifests, "PersistentVolumeClaim") {
					found = found || m.Metadata.Name == claim
				}
				if !found {
					t.Errorf("--data-dir is on the claim %s, which this directory does not make", claim)
				}
			case "many-node":
				if s.dep.Spec.Replicas < 3 {
					t.Errorf("replicas %d, want 3 or more", s.dep.Spec.Replicas)
				}
				if st, _ := set["store"].(string); !strings.HasPrefix(st, "redis") || s.flags["store"] != "" {
					t.Errorf("store = %v (--store=%q): want a redis:// URL, from LONGPOLL_STORE", st, s.flags["store"])
				}
				var pdb struct {
					Spec struct {
						Selector       labelSelector `yaml:"selector"`
						MaxUnavailable intOrString   `yaml:"maxUnavailable"`
						MinAvailable   intOrString   `yaml:"minAvailable"`
					} `yaml:"spec"`
				}
				only(t, s.manifests, "PodDisruptionBudget").decode(t, &pdb)
				if !pdb.Spec.Selector.selects(pod.Metadata.Labels) || (pdb.Spec.MaxUnavailable == "" && pdb.Spec.MinAvailable == "") {
					t.Errorf("the PodDisruptionBudget must select the pods and bound them: %+v", pdb.Spec)
				}
				aa := pod.Spec.Affinity.PodAntiAffinity
				var terms []affinityTerm
				if aa != nil {
					terms = aa.Required
					for _, p := range aa.Preferred {
						terms = append(terms, p.PodAffinityTerm)
					}
				}
				if !slices.ContainsFunc(terms, func(a affinityTerm) bool {
					return a.TopologyKey == "kubernetes.io/hostname" && a.LabelSelector.selects(pod.Metadata.Labels)
				}) {
					t.Error("no pod anti-affinity over kubernetes.io/hostname for the pods")
				}
			}
		})
	}
}

// TestConfigCheck checks each ConfigMap's longpoll.toml as serve would
// read it in the container: longpoll config --check, with the
// container's args and environment.
func TestConfigCheck(t *testing.T) {
	all := loadManifests(t)
	for _, dir := range setups {
		t.Run(dir, func(t *testing.T) {
			s := loadSetup(t, all, dir)
			tmp := t.TempDir()
			args := s.local(t, tmp, true)
			cfg := filepath.Join(tmp, "longpoll.toml")
			check := func() (string, int) {
				var rest []string
				for _, a := range args {
					if !strings.HasPrefix(a, "--config=") {
						rest = append(rest, a)
					}
				}
				out, errOut, code := run(t, s.env(t, secretsForCheck), append([]string{"config", "--check", cfg}, rest...)...)
				return out + errOut, code
			}
			if out, code := check(); code != 0 || !strings.Contains(out, ": ok") {
				t.Fatalf("longpoll config --check: exit %d\n%s", code, out)
			}
			// The check reads this file: a key serve does not know fails it.
			if err := os.WriteFile(cfg, []byte(s.toml+"\nno-such-setting = 1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, code := check(); code == 0 || !strings.Contains(out, "no-such-setting") {
				t.Fatalf("longpoll config --check took an unknown key: exit %d\n%s", code, out)
			}
		})
	}
}

// TestServesAsDeployed runs each Deployment's container as the kubelet
// would: its args and environment (its own addresses replaced by free
// loopback ports, the many-node Redis by the memory store), its probes
// against the main port, /metrics on the admin port without a token, then
// SIGTERM with a poll held: /readyz turns 503 at once, the poll is
// answered, and the process exits within terminationGracePeriodSeconds.
func TestServesAsDeployed(t *testing.T) {
	if testing.Short() {
		t.Skip("each drain takes its --drain-delay: not under -short")
	}
	all := loadManifests(t)
	for _, dir := range setups {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			s := loadSetup(t, all, dir)
			tmp := t.TempDir()
			args := s.local(t, tmp, false)
			srv := startServer(t, s.env(t, map[string]string{"longpoll-redis/url": "memory"}), true, append([]string{"serve"}, args...)...)

			for _, p := range []*probe{s.c.ReadinessProbe, s.c.LivenessProbe, s.c.StartupProbe} {
				if p == nil || p.HTTPGet == nil {
					continue
				}
				if code, body := get(t, srv.url+p.HTTPGet.Path); code != 200 {
					t.Errorf("probe %s on the main port: %d %s", p.HTTPGet.Path, code, body)
				}
			}
			code, body := get(t, srv.admin+"/metrics")
			if code != 200 || !strings.Contains(body, "\nlongpoll_ready 1\n") {
				t.Errorf("/metrics on the admin port: %d, longpoll_ready 1 missing", code)
			}
			if code, _ := get(t, srv.url+"/v1/poll?topic=k8s&timeout=0"); code != http.StatusUnauthorized {
				t.Errorf("a poll without a token on the main port: %d, want 401", code)
			}

			// A poll held with a token, then SIGTERM.
			token, errOut, rc := run(t, nil, "token", "--secret-file", filepath.Join(tmp, "jwt.secret"), "--subscribe", "k8s")
			if rc != 0 {
				t.Fatalf("longpoll token: %s", errOut)
			}
			answered := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("GET", srv.url+"/v1/poll?topic=k8s&timeout=50", nil)
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- -1
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered <- resp.StatusCode
			}()
			time.Sleep(300 * time.Millisecond) // let the poll be parked
			start := time.Now()
			srv.terminate(t)
			select {
			case code := <-answered:
				if code != 200 {
					t.Errorf("the held poll was answered %d at SIGTERM, want 200 with its cursor", code)
				}
			case <-time.After(5 * time.Second):
				t.Error("the held poll was not answered within 5 s of SIGTERM")
			}
			if code, _ := get(t, srv.url+s.c.ReadinessProbe.HTTPGet.Path); code != http.StatusServiceUnavailable {
				t.Errorf("readiness while draining: %d, want 503", code)
			}
			grace := time.Duration(*s.dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			select {
			case <-srv.exited:
				t.Logf("exited %v after SIGTERM (grace period %v)", time.Since(start).Round(100*time.Millisecond), grace)
				if c := srv.cmd.ProcessState.ExitCode(); c != 0 {
					t.Errorf("exit status %d after SIGTERM\n%s", c, srv.logText())
				}
			case <-time.After(grace):
				t.Errorf("still running %v after SIGTERM: the kubelet would kill it\n%s", grace, srv.logText())
			}
		})
	}
}

// TestIngress checks the Ingress against the Services and the holds.
func TestIngress(t *testing.T) {
	all := loadManifests(t)
	ing := only(t, all["."], "Ingress")
	var spec struct {
		Spec struct {
			Rules []struct {
				HTTP struct {
					Paths []struct {
						Backend struct {
							Service struct {
								Name string `yaml:"name"`
								Port struct {
									Name   string `yaml:"name"`
									Number int    `yaml:"number"`
								} `yaml:"port"`
							} `yaml:"service"`
						} `yaml:"backend"`
					} `yaml:"paths"`
				} `yaml:"http"`
			} `yaml:"rules"`
		} `yaml:"spec"`
	}
	ing.decode(t, &spec)
	a := ing.Metadata.Annotations
	const p = "nginx.ingress.kubernetes.io/"
	if a[p+"proxy-buffering"] != "off" {
		t.Errorf("%sproxy-buffering = %q, want off", p, a[p+"proxy-buffering"])
	}
	secs := func(name string) time.Duration {
		n, err := strconv.Atoi(a[p+name])
		if err != nil {
			t.Fatalf("%s%s = %q: want seconds", p, name, a[p+name])
		}
		return time.Duration(n) * time.Second
	}
	read, send := secs("proxy-read-timeout"), secs("proxy-send-timeout")
	body := a[p+"proxy-body-size"]
	bodyBytes := quantity(t, intOrString(strings.TrimSuffix(body, "m")+"Mi"))
	for _, dir := range setups {
		s := loadSetup(t, all, dir)
		set := s.settings(t)
		hold := durationSetting(t, set, "max-hold")
		if read < hold+5*time.Second || send < hold+5*time.Second {
			t.Errorf("%s: proxy-read-timeout %v and proxy-send-timeout %v must pass max-hold %v by 5 s or more", dir, read, send, hold)
		}
		if max := numberSetting(t, set, "max-body-size"); bodyBytes < max {
			t.Errorf("%s: proxy-body-size %s under max-body-size %v", dir, body, max)
		}
		// The backend is a Service of the setup, on a port to the
		// container's --addr.
		for _, r := range spec.Spec.Rules {
			for _, path := range r.HTTP.Paths {
				b := path.Backend.Service
				found := false
				for _, m := range ofKind(s.manifests, "Service") {
					if m.Metadata.Name != b.Name {
						continue
					}
					var svc service
					m.decode(t, &svc)
					for _, sp := range svc.Spec.Ports {
						if (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number) {
							found = true
							if got := s.port(t, sp.TargetPort); got != portOf(t, s.flags["addr"]) {
								t.Errorf("%s: the Ingress reaches container port %d, not --addr=%s", dir, got, s.flags["addr"])
							}
						}
					}
				}
				if !found {
					t.Errorf("%s: the Ingress's backend %s:%s%d is no Service port of the setup", dir, b.Name, b.Port.Name, b.Port.Number)
				}
			}
		}
	}
}

// TestServiceMonitor checks that the ServiceMonitor scrapes /metrics on
// the container port of --admin-addr, through a Service of each setup.
func TestServiceMonitor(t *testing.T) {
	all := loadManifests(t)
	sm := only(t, all["."], "ServiceMonitor")
	var spec struct {
		Spec struct {
			Selector  labelSelector `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	sm.decode(t, &spec)
	if len(spec.Spec.Endpoints) != 1 || spec.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("want one endpoint, path /metrics: %+v", spec.Spec.Endpoints)
	}
	ep := spec.Spec.Endpoints[0]
	for _, dir := range setups {
		s := loadSetup(t, all, dir)
		n := 0
		for _, m := range ofKind(s.manifests, "Service") {
			if !spec.Spec.Selector.selects(m.Metadata.Labels) {
				continue
			}
			var svc service
			m.decode(t, &svc)
			for _, sp := range svc.Spec.Ports {
				if sp.Name != ep.Port {
					continue
				}
				n++
				if got := s.port(t, sp.TargetPort); got != portOf(t, s.flags["admin-addr"]) {
					t.Errorf("%s: the ServiceMonitor scrapes container port %d, not --admin-addr=%s", dir, got, s.flags["admin-addr"])
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: the ServiceMonitor's port %q is on %d Services of the setup, want 1", dir, ep.Port, n)
		}
	}
}

// TestNetworkPolicy checks that the policy names the containers' ports.
func TestNetworkPolicy(t *testing.T) {
	all := loadManifests(t)
	var np struct {
		Spec struct {
			PodSelector labelSelector `yaml:"podSelector"`
			Ingress     []struct {
				Ports []struct {
					Port intOrString `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	only(t, all["."], "NetworkPolicy").decode(t, &np)
	for _, dir := range setups {
		s := loadSetup(t, all, dir)
		if !np.Spec.PodSelector.selects(s.dep.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: the NetworkPolicy does not select the pods", dir)
		}
		ports := map[int]bool{}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				ports[s.port(t, p.Port)] = true
			}
		}
		for _, f := range []string{"addr", "admin-addr"} {
			if !ports[portOf(t, s.flags[f])] {
				t.Errorf("%s: the NetworkPolicy lets nothing reach --%s=%s", dir, f, s.flags[f])
			}
		}
	}
}

var changelogVersion = regexp.MustCompile(`(?m)^##\s+\[?(v?\d+\.\d+\.\d+[^\]\s]*)`)

// TestReleaseVersion checks that the manifests, the npm package and the
// changelog name the same release.
func TestReleaseVersion(t *testing.T) {
	all := loadManifests(t)
	for _, dir := range setups {
		s := loadSetup(t, all, dir)
		if want := image + ":" + releaseVersion; s.c.Image != want {
			t.Errorf("%s: image %q, want %q", dir, s.c.Image, want)
		}
	}
	data, err := os.ReadFile("../js/package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	if "v"+pkg.Version != releaseVersion {
		t.Errorf("js/package.json: version %q, want %q (npm version %s --no-git-tag-version)", pkg.Version, strings.TrimPrefix(releaseVersion, "v"), strings.TrimPrefix(releaseVersion, "v"))
	}
	if data, err := os.ReadFile("../CHANGELOG.md"); err == nil {
		if m := changelogVersion.FindSubmatch(data); m != nil && "v"+strings.TrimPrefix(string(m[1]), "v") != releaseVersion {
			t.Errorf("CHANGELOG.md's latest release is %s, the manifests deploy %s", m[1], releaseVersion)
		}
	}
}
