// Package k8s_test checks the Kubernetes manifests in the repository's k8s/
// directory (manifestDir) without a cluster: what kustomize builds from k8s/ (the
// base, one yolk per pod) and from k8s/fleet/ (the overlay whose pods join a NATS
// cluster), with kustomize's own library, as kubectl apply -k does. Every document
// strict-decodes into k8s.io/api types through the universal deserializer (a
// misspelt or miscased field is an error, as it is for the API server in strict
// mode), and the pod holds what decoding cannot check: start order, probes,
// selectors, which secret reaches which container, the security context, and for
// the fleet, how each pod joins the cluster.
package k8s_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifestDir is the repository's k8s/ directory, from this package's directory
// (go test runs a test in its package's directory). TestMain makes it the working
// directory, so that file names are the manifests' own, as kustomization.yaml lists
// them. This test lives in the deploytest module so that the root module does not
// require k8s.io/api and its dependencies.
const manifestDir = "../../k8s"

func TestMain(m *testing.M) {
	if err := os.Chdir(manifestDir); err != nil {
		fmt.Fprintf(os.Stderr, "k8s manifests: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// decoder decodes JSON or YAML into the built-in API types, rejecting unknown,
// miscased and duplicate fields.
var decoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// The names the deployment promises: who runs where, and which secret key each role needs.
const (
	uid          = 65532
	image        = "yolk:dev"
	busSecret    = "yolk-bus"
	agentSecret  = "agent-secret"
	workerSecret = "worker-secret"
)

// builds are the kustomizations a user applies (kubectl apply -k k8s/ or
// k8s/fleet/); kustomizations are every directory with a kustomization.yaml.
var (
	builds         = []string{".", "fleet"}
	kustomizations = []string{".", "base", "fleet"}
)

// The fleet's Secret: the leaf node credentials, for the master alone.
const (
	clusterSecret = "yolk-cluster"
	clusterUser   = "user"
	clusterPass   = "password"
)

// set is the parsed manifests: one of each kind, and the Secrets by name.
type set struct {
	deploy    *appsv1.Deployment
	service   *corev1.Service
	pdb       *policyv1.PodDisruptionBudget
	configMap *corev1.ConfigMap
	secrets   map[string]*corev1.Secret
}

// kustomization is the part of kustomization.yaml these manifests use; a field it
// does not know is an error, so a typo there fails too.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// documents splits a YAML stream into its documents, leaving out the empty ones
// (only comments, or nothing).
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}

// decodeStrict decodes one document into its API type.
func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := decoder.Decode(doc, nil, nil)
	return obj, err
}

// readKustomization strict-decodes dir's kustomization.yaml.
func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var k kustomization
	strict, err := json.UnmarshalStrict(js, &k)
	if err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if err := errors.Join(strict...); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// build runs kustomize on dir, as kubectl apply -k does, and returns the YAML.
func build(t *testing.T, dir string) []byte {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return out
}

// load strict-decodes every resource that kustomize builds from dir.
func load(t *testing.T, dir string) set {
	t.Helper()
	s := set{secrets: map[string]*corev1.Secret{}}
	docs, err := documents(build(t, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("kustomize build %s, document %d: %v", dir, i+1, err)
		}
		if err := s.add(obj); err != nil {
			t.Fatalf("kustomize build %s, document %d: %v", dir, i+1, err)
		}
	}
	if s.deploy == nil || s.service == nil || s.pdb == nil || s.configMap == nil || s.secrets[busSecret] == nil {
		t.Fatalf("kustomize build %s: want a Deployment, a Service, a PodDisruptionBudget, a ConfigMap and the Secret %s, got %+v", dir, busSecret, s)
	}
	return s
}

// eachBuild runs check on what each of builds builds, as a subtest named by it.
func eachBuild(t *testing.T, check func(t *testing.T, s set)) {
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) { check(t, load(t, dir)) })
	}
}

func (s *set) add(obj runtime.Object) error {
	dup := func(kind string) error { return fmt.Errorf("a second %s: want one", kind) }
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if s.deploy != nil {
			return dup("Deployment")
		}
		s.deploy = o
	case *corev1.Service:
		if s.service != nil {
			return dup("Service")
		}
		s.service = o
	case *policyv1.PodDisruptionBudget:
		if s.pdb != nil {
			return dup("PodDisruptionBudget")
		}
		s.pdb = o
	case *corev1.ConfigMap:
		if s.configMap != nil {
			return dup("ConfigMap")
		}
		s.configMap = o
	case *corev1.Secret:
		if s.secrets[o.Name] != nil {
			return dup("Secret " + o.Name)
		}
		s.secrets[o.Name] = o
	default:
		return fmt.Errorf("unexpected %T: add a check for it", obj)
	}
	return nil
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			k := readKustomization(t, dir)
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
				t.Errorf("kustomization.yaml: apiVersion %q, kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
			}
			listed := slices.Clone(k.Resources)
			for _, p := range k.Patches {
				listed = append(listed, p.Path)
			}
			for _, r := range listed {
				if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("kustomization.yaml lists %s: %v", r, err)
				}
			}
			files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f := filepath.Base(f); f != "kustomization.yaml" && !slices.Contains(listed, f) {
					t.Errorf("%s is not in kustomization.yaml's resources or patches: kubectl apply -k would leave it out", f)
				}
			}
		})
	}
}

// TestEveryManifestDecodesStrictly: each file on its own, the overlay's patches
// too (a patch is a partial object: a field it misspells is still an error).
func TestEveryManifestDecodesStrictly(t *testing.T) {
	var files []string
	for _, dir := range kustomizations {
		f, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f...)
	}
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue // not an API object; TestKustomizationListsEveryManifest reads it
		}
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := documents(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				t.Fatal("no document")
			}
			for i, doc := range docs {
				if _, err := decodeStrict(doc); err != nil {
					t.Errorf("document %d: %v", i+1, err)
				}
			}
		})
	}
}

// TestStrictDecodeRejectsMistakes shows that the decoder catches what a hand-edited
// manifest gets wrong, so a passing TestEveryManifestDecodesStrictly means something.
func TestStrictDecodeRejectsMistakes(t *testing.T) {
	const good = `apiVersion: v1
kind: Service
metadata:
  name: yolk
spec:
  selector:
    app.kubernetes.io/name: yolk
  ports:
    - port: 7001
      targetPort: http
`
	if _, err := decodeStrict([]byte(good)); err != nil {
		t.Fatalf("decode of a valid Service = %v, want nil", err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"misspelt field", "targetPort:", "tragetPort:", `unknown field "spec.ports[0].tragetPort"`},
		{"miscased field", "targetPort:", "TargetPort:", `unknown field "spec.ports[0].TargetPort"`},
		{"duplicate field", "  name: yolk\n", "  name: yolk\n  name: yolk2\n", "strict decoding error"},
		{"wrong type", "port: 7001", "port: [7001]", "cannot unmarshal"},
		{"unknown kind", "kind: Service", "kind: Servise", `no kind "Servise"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.old, tc.new, 1)
			if bad == good {
				t.Fatalf("%q not found in the sample", tc.old)
			}
			if _, err := decodeStrict([]byte(bad)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decode with a %s = %v, want an error with %q\n%s", tc.name, err, tc.want, bad)
			}
		})
	}

	// The same, inside the real Deployment: a typo deep in a container fails too.
	data, err := os.ReadFile("base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(data, []byte("imagePullPolicy:"), []byte("imagePulPolicy:"), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("base/deployment.yaml has no imagePullPolicy")
	}
	if _, err := decodeStrict(bad); err == nil || !strings.Contains(err.Error(), "imagePulPolicy") {
		t.Errorf("decode of deployment.yaml with imagePulPolicy = %v, want an error naming the field", err)
	}
}

func TestSelectorsMatchThePod(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		pod := labels.Set(s.deploy.Spec.Template.Labels)
		if len(pod) == 0 {
			t.Fatal("the pod template has no labels")
		}
		for _, tc := range []struct {
			name string
			sel  *metav1.LabelSelector
		}{
			{"Deployment " + s.deploy.Name, s.deploy.Spec.Selector},
			{"PodDisruptionBudget " + s.pdb.Name, s.pdb.Spec.Selector},
			{"Service " + s.service.Name, &metav1.LabelSelector{MatchLabels: s.service.Spec.Selector}},
		} {
			if tc.sel == nil || (len(tc.sel.MatchLabels) == 0 && len(tc.sel.MatchExpressions) == 0) {
				t.Errorf("%s: empty selector (it would select every pod)", tc.name)
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(tc.sel)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if !sel.Matches(pod) {
				t.Errorf("%s: selector %s does not match the pod's labels %s", tc.name, sel, pod)
			}
		}

		// The Service's port reaches a port the pod declares.
		for _, p := range s.service.Spec.Ports {
			if !podHasPort(s.deploy.Spec.Template.Spec, p.TargetPort) {
				t.Errorf("Service port %d: targetPort %s is not a port of the pod", p.Port, p.TargetPort.String())
			}
		}
	})
}

func podHasPort(spec corev1.PodSpec, target intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (target.Type == intstr.String && p.Name == target.StrVal) ||
				(target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

// role is what a container runs: the binary its command starts.
func role(c corev1.Container) string {
	if len(c.Command) == 0 {
		return ""
	}
	return strings.TrimPrefix(c.Command[0], "/")
}

// allContainers is the sidecars, then the workers.
func allContainers(spec corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func TestSidecarsStartMasterThenAgent(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		var roles []string
		for _, c := range spec.InitContainers {
			roles = append(roles, role(c))
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("init container %s: restartPolicy %v, want Always (a native sidecar that keeps running)", c.Name, c.RestartPolicy)
			}
			if c.StartupProbe == nil {
				t.Errorf("init container %s: no startupProbe: the next container would start before it is up", c.Name)
			}
		}
		if want := []string{"master", "agent"}; !slices.Equal(roles, want) {
			t.Errorf("init containers run %v, want %v in that order", roles, want)
		}
		if len(spec.Containers) == 0 {
			t.Fatal("no worker container")
		}
		for _, c := range spec.Containers {
			if role(c) != "worker" {
				t.Errorf("container %s runs %q, want /worker (the master and the agent are sidecars)", c.Name, role(c))
			}
		}
		// The agent is started once it is ready (it holds a snapshot for the workers).
		for _, c := range spec.InitContainers {
			if role(c) == "agent" && c.StartupProbe != nil && c.StartupProbe.Exec != nil &&
				!slices.Contains(c.StartupProbe.Exec.Command, "--ready") {
				t.Errorf("agent startupProbe %v: want --ready, so the workers start after the agent has a snapshot", c.StartupProbe.Exec.Command)
			}
		}
	})
}

func TestEveryContainerHasAnImageAndItsOwnProbes(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		for _, c := range allContainers(spec) {
			t.Run(c.Name, func(t *testing.T) {
				if c.Image == "" {
					t.Error("no image")
				}
				if c.Image != image || c.ImagePullPolicy != corev1.PullIfNotPresent {
					t.Errorf("image %q, imagePullPolicy %q; want %q, IfNotPresent (make image builds it on the node; no registry)", c.Image, c.ImagePullPolicy, image)
				}
				probes := map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe}
				for name, p := range probes {
					if p == nil {
						t.Errorf("no %s", name)
						continue
					}
					// The probe runs this container's own binary, which asks the process
					// beside it over the socket in this container's /tmp: not whichever
					// worker the shared port would pick.
					want := []string{"/" + role(c), "healthcheck"}
					if p.Exec == nil || len(p.Exec.Command) < 2 || !slices.Equal(p.Exec.Command[:2], want) {
						t.Errorf("%s: %+v, want exec %v [--ready]", name, p.ProbeHandler, want)
					}
				}
				if p := c.ReadinessProbe; p != nil && p.Exec != nil && !slices.Contains(p.Exec.Command, "--ready") {
					t.Errorf("readinessProbe %v: want --ready", p.Exec.Command)
				}
				if p := c.LivenessProbe; p != nil && p.Exec != nil && slices.Contains(p.Exec.Command, "--ready") {
					t.Errorf("livenessProbe %v: a liveness probe on readiness restarts a container that only waits for the others", p.Exec.Command)
				}
			})
		}
	})
}

// secretRef is "secret/key" for a variable from a Secret's key, else "".
func secretRef(e corev1.EnvVar) string {
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return ""
	}
	return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
}

// secretKeys is the "secret/key" references of container c, sorted.
func secretKeys(t *testing.T, c corev1.Container) []string {
	t.Helper()
	var keys []string
	for _, e := range c.Env {
		if ref := secretRef(e); ref != "" {
			keys = append(keys, ref)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			t.Errorf("container %s: envFrom Secret %q hands it every key; want one secretKeyRef per key it needs", c.Name, ef.SecretRef.Name)
		}
	}
	slices.Sort(keys)
	return keys
}

func TestSecretsReachOnlyTheirRoles(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		fleet := s.secrets[clusterSecret] != nil
		wantSecrets := map[string][]string{busSecret: {agentSecret, workerSecret}}
		want := map[string][]string{ // role: the secret/key references it holds
			"master": {busSecret + "/" + agentSecret, busSecret + "/" + workerSecret}, // checks both roles' credentials
			"agent":  {busSecret + "/" + agentSecret},
			"worker": {busSecret + "/" + workerSecret},
		}
		if fleet { // only the master's embedded server talks to the NATS cluster
			wantSecrets[clusterSecret] = []string{clusterPass, clusterUser}
			want["master"] = append(want["master"], clusterSecret+"/"+clusterPass, clusterSecret+"/"+clusterUser)
			slices.Sort(want["master"])
		}
		for name, sec := range s.secrets {
			var have []string
			for k := range sec.StringData {
				have = append(have, k)
			}
			for k := range sec.Data {
				have = append(have, k)
			}
			slices.Sort(have)
			if w, ok := wantSecrets[name]; !ok || !slices.Equal(have, w) {
				t.Errorf("Secret %s has keys %v, want %v (Secrets: %v)", name, have, w, slices.Sorted(maps.Keys(wantSecrets)))
			}
		}

		envName := map[string]string{
			busSecret + "/" + agentSecret: "YOLK_AGENT_SECRET", busSecret + "/" + workerSecret: "YOLK_WORKER_SECRET",
			clusterSecret + "/" + clusterUser: "YOLK_CLUSTER_USER", clusterSecret + "/" + clusterPass: "YOLK_CLUSTER_PASSWORD",
		}
		spec := s.deploy.Spec.Template.Spec
		for _, c := range allContainers(spec) {
			if got := secretKeys(t, c); !slices.Equal(got, want[role(c)]) {
				t.Errorf("container %s (%s) reads secret keys %v, want %v", c.Name, role(c), got, want[role(c)])
			}
			for _, e := range c.Env {
				if ref := secretRef(e); ref != "" && envName[ref] != e.Name {
					t.Errorf("container %s: %s is in %s, want %s", c.Name, ref, e.Name, envName[ref])
				}
			}
		}
		for _, v := range spec.Volumes {
			if v.Secret != nil || v.Projected != nil {
				t.Errorf("volume %s mounts a secret: the pod's containers share volumes by name; use secretKeyRef per container", v.Name)
			}
		}
	})
}

func TestEveryContainerIsLockedDown(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Error("automountServiceAccountToken is not false: yolk never calls the API server")
		}
		for _, c := range allContainers(spec) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("container %s: no securityContext", c.Name)
				continue
			}
			for _, check := range []struct {
				what string
				ok   bool
			}{
				{"runAsNonRoot: true", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
				{"runAsUser: 65532", sc.RunAsUser != nil && *sc.RunAsUser == uid},
				{"readOnlyRootFilesystem: true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
				{"allowPrivilegeEscalation: false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
				{"capabilities drop ALL, add none", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0},
				{"seccompProfile RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
				{"not privileged", sc.Privileged == nil || !*sc.Privileged},
			} {
				if !check.ok {
					t.Errorf("container %s: securityContext lacks %s", c.Name, check.what)
				}
			}
		}
	})
}

// TestEveryContainerHasItsOwnTmp: the root filesystem is read-only, and each process
// puts its health socket at the same path in /tmp, so each container needs a /tmp of
// its own: a shared one would let one container's probe ask another's process.
func TestEveryContainerHasItsOwnTmp(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		emptyDirs := map[string]bool{}
		for _, v := range spec.Volumes {
			emptyDirs[v.Name] = v.EmptyDir != nil
		}
		owner := map[string]string{}
		for _, c := range allContainers(spec) {
			i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" })
			if i < 0 {
				t.Errorf("container %s: nothing mounted at /tmp (the root filesystem is read-only)", c.Name)
				continue
			}
			m := c.VolumeMounts[i]
			if !emptyDirs[m.Name] {
				t.Errorf("container %s: /tmp is volume %q, want an emptyDir of the pod", c.Name, m.Name)
			}
			if m.ReadOnly {
				t.Errorf("container %s: /tmp is mounted read-only", c.Name)
			}
			if other, ok := owner[m.Name]; ok {
				t.Errorf("containers %s and %s share /tmp volume %q: their health sockets would collide", other, c.Name, m.Name)
			}
			owner[m.Name] = c.Name
		}
	})
}

func TestResourcesAndGOMEMLIMIT(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		for _, c := range allContainers(spec) {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("container %s: no %s request", c.Name, r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("container %s: no memory limit", c.Name)
			}
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
			if i < 0 {
				t.Errorf("container %s: no GOMEMLIMIT", c.Name)
				continue
			}
			e := c.Env[i]
			ref := (*corev1.ResourceFieldSelector)(nil)
			if e.ValueFrom != nil {
				ref = e.ValueFrom.ResourceFieldRef
			}
			if ref == nil || ref.Resource != "limits.memory" || (ref.ContainerName != "" && ref.ContainerName != c.Name) {
				t.Errorf("container %s: GOMEMLIMIT is %s, want valueFrom resourceFieldRef limits.memory of this container", c.Name, describeEnv(e))
				continue
			}
			// GOMEMLIMIT without a suffix is in bytes.
			if !ref.Divisor.IsZero() && ref.Divisor.Value() != 1 {
				t.Errorf("container %s: GOMEMLIMIT divisor %s, want 1 (GOMEMLIMIT is in bytes)", c.Name, ref.Divisor.String())
			}
		}
	})
}

func TestWorkersDrainBeforeTheyStop(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		spec := s.deploy.Spec.Template.Spec
		shutdown, err := time.ParseDuration(s.configMap.Data["YOLK_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Fatalf("ConfigMap YOLK_SHUTDOWN_TIMEOUT: %v", err)
		}
		for _, c := range spec.Containers {
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
				t.Errorf("container %s: want lifecycle.preStop.sleep, so the endpoints drop the pod before the worker closes its listener", c.Name)
				continue
			}
			need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + shutdown
			if grace := spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second <= need {
				t.Errorf("terminationGracePeriodSeconds %v, want more than preStop %ds + YOLK_SHUTDOWN_TIMEOUT %s", grace, c.Lifecycle.PreStop.Sleep.Seconds, shutdown)
			}
		}
	})
}

func TestConfigReachesEveryContainer(t *testing.T) {
	eachBuild(t, func(t *testing.T, s set) {
		if s.configMap.Data["YOLK_MODE"] != "external" {
			t.Errorf("ConfigMap YOLK_MODE = %q, want external", s.configMap.Data["YOLK_MODE"])
		}
		if s.configMap.Data["YOLK_SOURCE_URL"] == "" {
			t.Error("ConfigMap has no YOLK_SOURCE_URL")
		}
		for k := range s.configMap.Data {
			if strings.Contains(strings.ToUpper(k), "SECRET") {
				t.Errorf("ConfigMap key %s: secrets belong in the Secret", k)
			}
		}
		for _, c := range allContainers(s.deploy.Spec.Template.Spec) {
			if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
				return e.ConfigMapRef != nil && e.ConfigMapRef.Name == s.configMap.Name
			}) {
				t.Errorf("container %s: no envFrom ConfigMap %s", c.Name, s.configMap.Name)
			}
		}
	})
}

// describeEnv says where an env variable's value comes from, for error messages.
func describeEnv(e corev1.EnvVar) string {
	switch {
	case e.ValueFrom == nil:
		return fmt.Sprintf("the value %q", e.Value)
	case e.ValueFrom.ResourceFieldRef != nil:
		r := e.ValueFrom.ResourceFieldRef
		return fmt.Sprintf("resourceFieldRef %s of container %q", r.Resource, r.ContainerName)
	default:
		return "from neither a value nor a resourceFieldRef"
	}
}

// TestFleetJoinsTheCluster: k8s/fleet's pods join the NATS cluster as leaf nodes:
// every container knows the cluster's URL and domain (ConfigMap) and its host
// name, the pod's (the downward API); the master has the leaf credentials.
func TestFleetJoinsTheCluster(t *testing.T) {
	s := load(t, "fleet")
	data := s.configMap.Data
	urls := strings.Split(data["YOLK_CLUSTER_URL"], ",")
	for _, u := range urls {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			t.Errorf("ConfigMap YOLK_CLUSTER_URL %q: URL %q, want nats:// or tls://", data["YOLK_CLUSTER_URL"], u)
		}
	}
	if data["YOLK_CLUSTER_DOMAIN"] != "fleet" {
		t.Errorf("ConfigMap YOLK_CLUSTER_DOMAIN = %q, want fleet (the cluster's JetStream domain)", data["YOLK_CLUSTER_DOMAIN"])
	}
	if _, err := time.ParseDuration(data["YOLK_LEASE_TTL"]); err != nil {
		t.Errorf("ConfigMap YOLK_LEASE_TTL: %v", err)
	}
	if s.secrets[clusterSecret] == nil {
		t.Fatalf("no Secret %s with the leaf credentials", clusterSecret)
	}
	for _, c := range allContainers(s.deploy.Spec.Template.Spec) {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "YOLK_HOST" })
		if i < 0 {
			t.Errorf("container %s: no YOLK_HOST", c.Name)
			continue
		}
		if e := c.Env[i]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Errorf("container %s: YOLK_HOST is %+v, want the pod's name (fieldRef metadata.name)", c.Name, e)
		}
	}
	// The base is untouched: no cluster settings without the overlay.
	base := load(t, ".")
	for _, k := range []string{"YOLK_CLUSTER_URL", "YOLK_CLUSTER_DOMAIN"} {
		if v, ok := base.configMap.Data[k]; ok {
			t.Errorf("k8s/ (the base) sets %s=%q: a single pod per yolk must not join a cluster", k, v)
		}
	}
}
