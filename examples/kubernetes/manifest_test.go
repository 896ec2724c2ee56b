// Package kubernetes holds the Kubernetes example (peerctl.yaml) and the
// test that validates it. No cluster runs here, so the test checks the
// manifest at the schema level: each document decodes strictly (an unknown
// or misspelled field is an error) into the fields of its kind that the
// example uses, the required fields are set, and what the manifest says
// about peerctl matches the agent: ports, flags, environment variables,
// the health command, the image's user.
package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	peerctl "github.com/peerctl/peerctl/cli"
	"github.com/peerctl/peerctl/daemon"
)

// The subset of the Kubernetes API the example uses, with the same JSON
// names (k8s.io/api); strict decoding refuses anything else.

type meta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

type selector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type servicePort struct {
	Name       string `json:"name"`
	Port       int    `json:"port"`
	TargetPort string `json:"targetPort"`
	Protocol   string `json:"protocol"`
}

type service struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   meta   `json:"metadata"`
	Spec       struct {
		ClusterIP                string            `json:"clusterIP"`
		PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses"`
		Selector                 map[string]string `json:"selector"`
		Ports                    []servicePort     `json:"ports"`
	} `json:"spec"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef,omitempty"`
		SecretKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"secretKeyRef,omitempty"`
	} `json:"valueFrom,omitempty"`
}

type probe struct {
	Exec struct {
		Command []string `json:"command"`
	} `json:"exec"`
	InitialDelaySeconds int `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int `json:"periodSeconds"`
	TimeoutSeconds      int `json:"timeoutSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
}

type container struct {
	Name            string   `json:"name"`
	Image           string   `json:"image"`
	ImagePullPolicy string   `json:"imagePullPolicy"`
	Args            []string `json:"args"`
	Env             []envVar `json:"env"`
	Ports           []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	} `json:"ports"`
	ReadinessProbe *probe `json:"readinessProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

type statefulSet struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   meta   `json:"metadata"`
	Spec       struct {
		ServiceName         string   `json:"serviceName"`
		Replicas            int      `json:"replicas"`
		PodManagementPolicy string   `json:"podManagementPolicy"`
		Selector            selector `json:"selector"`
		Template            struct {
			Metadata meta `json:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot   bool `json:"runAsNonRoot"`
					RunAsUser      int  `json:"runAsUser"`
					RunAsGroup     int  `json:"runAsGroup"`
					FSGroup        int  `json:"fsGroup"`
					SeccompProfile struct {
						Type string `json:"type"`
					} `json:"seccompProfile"`
				} `json:"securityContext"`
				Containers []container `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `json:"metadata"`
			Spec     struct {
				AccessModes []string `json:"accessModes"`
				Resources   struct {
					Requests map[string]string `json:"requests"`
				} `json:"resources"`
			} `json:"spec"`
		} `json:"volumeClaimTemplates"`
	} `json:"spec"`
}

type podDisruptionBudget struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   meta   `json:"metadata"`
	Spec       struct {
		MaxUnavailable *int     `json:"maxUnavailable,omitempty"`
		MinAvailable   *int     `json:"minAvailable,omitempty"`
		Selector       selector `json:"selector"`
	} `json:"spec"`
}

// documents splits a multi-document YAML file.
func documents(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func port(tb testing.TB, hostport string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// agentFlags returns the agent command's flag names and the environment
// variables it reads, and the names of peerctl's commands.
func agentFlags(tb testing.TB) (flags, envs, commands map[string]bool) {
	flags, envs, commands = map[string]bool{}, map[string]bool{}, map[string]bool{}
	app := peerctl.NewApp()
	for _, c := range app.Commands {
		commands[c.Name] = true
		if c.Name != "agent" {
			continue
		}
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				flags["--"+n] = true
			}
			if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, e := range ev.GetEnvVars() {
					envs[e] = true
				}
			}
		}
	}
	// Global flags (--token, --addr) apply to the client commands the
	// probes run; their variables are read too.
	for _, f := range app.Flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, e := range ev.GetEnvVars() {
				envs[e] = true
			}
		}
	}
	if len(flags) == 0 {
		tb.Fatal("no agent command in peerctl's App")
	}
	return flags, envs, commands
}

// dockerUser returns the numeric USER of the image's Dockerfile.
func dockerUser(tb testing.TB) int {
	b, err := os.ReadFile("../docker/Dockerfile")
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+)(?::\d+)?\s*$`).FindSubmatch(b)
	if m == nil {
		tb.Fatal("examples/docker/Dockerfile has no numeric USER line")
	}
	uid, _ := strconv.Atoi(string(m[1]))
	return uid
}

func TestManifest(t *testing.T) {
	raw, err := os.ReadFile("peerctl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var svc *service
	var sts *statefulSet
	var pdb *podDisruptionBudget
	for i, doc := range documents(raw) {
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var into any
		want := ""
		switch head.Kind {
		case "Service":
			svc, into, want = &service{}, &svc, "v1"
		case "StatefulSet":
			sts, into, want = &statefulSet{}, &sts, "apps/v1"
		case "PodDisruptionBudget":
			pdb, into, want = &podDisruptionBudget{}, &pdb, "policy/v1"
		default:
			t.Fatalf("document %d: unexpected kind %q", i, head.Kind)
		}
		if head.APIVersion != want {
			t.Errorf("%s: apiVersion %q; want %q", head.Kind, head.APIVersion, want)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %v", head.Kind, err)
		}
	}
	if svc == nil || sts == nil || pdb == nil {
		t.Fatalf("want a Service, a StatefulSet and a PodDisruptionBudget; got %v, %v, %v", svc != nil, sts != nil, pdb != nil)
	}
	def := daemon.DefaultConfig()
	gossipPort, apiPort := port(t, def.Bind), port(t, def.API)
	flags, envs, commands := agentFlags(t)

	// Names and selectors hold together.
	for what, name := range map[string]string{"Service": svc.Metadata.Name, "StatefulSet": sts.Metadata.Name, "PodDisruptionBudget": pdb.Metadata.Name} {
		if name == "" {
			t.Errorf("%s has no metadata.name", what)
		}
	}
	pod := sts.Spec.Template
	matches := func(sel map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if pod.Metadata.Labels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(sts.Spec.Selector.MatchLabels) || !matches(svc.Spec.Selector) || !matches(pdb.Spec.Selector.MatchLabels) {
		t.Errorf("selectors %v (StatefulSet), %v (Service), %v (PDB) must all match the pod labels %v",
			sts.Spec.Selector.MatchLabels, svc.Spec.Selector, pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels)
	}
	if sts.Spec.ServiceName != svc.Metadata.Name {
		t.Errorf("StatefulSet serviceName %q; want the headless Service %q", sts.Spec.ServiceName, svc.Metadata.Name)
	}
	if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service clusterIP %q, publishNotReadyAddresses %v; want a headless Service (None) publishing pods before they are ready",
			svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if sts.Spec.Replicas < 3 {
		t.Errorf("replicas %d; want at least 3", sts.Spec.Replicas)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Errorf("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	if m := pdb.Spec.MaxUnavailable; m != nil && (*m < 1 || *m > (sts.Spec.Replicas-1)/2) {
		t.Errorf("PDB maxUnavailable %d; want 1..%d for %d replicas", *m, (sts.Spec.Replicas-1)/2, sts.Spec.Replicas)
	}

	// The container.
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.Name == "" || c.Image == "" {
		t.Errorf("container name %q, image %q: both required", c.Name, c.Image)
	}
	sc := pod.Spec.SecurityContext
	if uid := dockerUser(t); !sc.RunAsNonRoot || sc.RunAsUser != uid || sc.FSGroup != uid {
		t.Errorf("pod securityContext runAsNonRoot %v, runAsUser %d, fsGroup %d; want true and the image's USER %d", sc.RunAsNonRoot, sc.RunAsUser, sc.FSGroup, uid)
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation || !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext: want allowPrivilegeEscalation false and capabilities dropped")
	}

	// Ports: the container's and the Service's match the agent's.
	cports := map[string]string{} // name -> "port/proto"
	for _, p := range c.Ports {
		cports[p.Name] = fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
	}
	want := map[string]bool{fmt.Sprintf("%d/TCP", gossipPort): true, fmt.Sprintf("%d/UDP", gossipPort): true, fmt.Sprintf("%d/TCP", apiPort): true}
	got := map[string]bool{}
	for _, v := range cports {
		got[v] = true
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container ports %v; want gossip %d TCP and UDP, API %d TCP", cports, gossipPort, apiPort)
	}
	for _, sp := range svc.Spec.Ports {
		if cp, ok := cports[sp.TargetPort]; !ok || cp != fmt.Sprintf("%d/%s", sp.Port, sp.Protocol) {
			t.Errorf("Service port %s %d/%s targets %q, which is container port %q", sp.Name, sp.Port, sp.Protocol, sp.TargetPort, cp)
		}
	}

	// Environment: only variables peerctl reads (or that feed them), the
	// key and token from the Secret, the addresses on the agent's ports.
	env := map[string]envVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		if strings.HasPrefix(e.Name, "PEERCTL_") && !envs[e.Name] {
			t.Errorf("env %s: no peerctl flag reads it", e.Name)
		}
	}
	for _, secret := range []string{"PEERCTL_ENCRYPT", "PEERCTL_TOKEN"} {
		e, ok := env[secret]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "" {
			t.Errorf("env %s: want it from a Secret (secretKeyRef), never a literal value", secret)
		}
	}
	for name, p := range map[string]int{"PEERCTL_BIND": gossipPort, "PEERCTL_API": apiPort, "PEERCTL_ADVERTISE": gossipPort} {
		if e, ok := env[name]; !ok || port(t, strings.ReplaceAll(e.Value, "$(POD_IP)", "10.0.0.1")) != p {
			t.Errorf("env %s = %q; want an address on port %d", name, e.Value, p)
		}
	}
	if e := env["PEERCTL_ADVERTISE"]; strings.Contains(e.Value, "$(POD_IP)") {
		if f := env["POD_IP"]; f.ValueFrom == nil || f.ValueFrom.FieldRef == nil || f.ValueFrom.FieldRef.FieldPath != "status.podIP" {
			t.Errorf("PEERCTL_ADVERTISE uses $(POD_IP), which must come from status.podIP")
		}
	}
	if e := env["PEERCTL_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("PEERCTL_NAME: want the pod name (fieldRef metadata.name), unique and stable")
	}
	dataDir := env["PEERCTL_DATA_DIR"].Value
	if len(sts.Spec.VolumeClaimTemplates) != 1 || len(c.VolumeMounts) != 1 ||
		c.VolumeMounts[0].Name != sts.Spec.VolumeClaimTemplates[0].Metadata.Name || c.VolumeMounts[0].MountPath != dataDir {
		t.Errorf("want one volume claim mounted at PEERCTL_DATA_DIR %q", dataDir)
	}

	// Args: the agent command, flags it has, joins on the stable names of
	// the first pods and the gossip port.
	if len(c.Args) == 0 || c.Args[0] != "agent" {
		t.Fatalf("args %q; want the agent command first", c.Args)
	}
	joins := 0
	for i := 1; i < len(c.Args); i++ {
		a := c.Args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("args: %q is not a flag", a)
			continue
		}
		if !flags[a] {
			t.Errorf("args: the agent has no flag %s", a)
		}
		if a == "--join" && i+1 < len(c.Args) {
			i++
			host, p, err := net.SplitHostPort(c.Args[i])
			m := regexp.MustCompile(`^` + regexp.QuoteMeta(sts.Metadata.Name) + `-(\d+)\.` + regexp.QuoteMeta(svc.Metadata.Name) + `$`).FindStringSubmatch(host)
			if err != nil || m == nil || p != strconv.Itoa(gossipPort) {
				t.Errorf("--join %q: want STATEFULSET-N.SERVICE:%d", c.Args[i], gossipPort)
				continue
			}
			if n, _ := strconv.Atoi(m[1]); n >= sts.Spec.Replicas {
				t.Errorf("--join %q: pod %d does not exist with %d replicas", c.Args[i], n, sts.Spec.Replicas)
			}
			joins++
		}
	}
	if joins == 0 {
		t.Errorf("no --join: the pods would not find each other")
	}

	// Probes run peerctl's health command on the API port.
	for what, p := range map[string]*probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil {
			t.Errorf("no %s", what)
			continue
		}
		cmd := p.Exec.Command
		if len(cmd) < 2 || cmd[0] != "/peerctl" || !slices.Contains(cmd, "health") || !commands["health"] {
			t.Errorf("%s runs %q; want /peerctl ... health", what, cmd)
		}
		if i := slices.Index(cmd, "--addr"); i < 0 || i+1 >= len(cmd) || port(t, cmd[i+1]) != apiPort {
			t.Errorf("%s %q: want --addr on the API port %d", what, cmd, apiPort)
		}
		if p.TimeoutSeconds < 1 || p.PeriodSeconds < p.TimeoutSeconds {
			t.Errorf("%s timeout %ds, period %ds: want 1 <= timeout <= period", what, p.TimeoutSeconds, p.PeriodSeconds)
		}
	}

	// Resources: requests cover the measured RSS, the limit is above the
	// request.
	mi := func(s string) int {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "Mi"))
		if err != nil || !strings.HasSuffix(s, "Mi") {
			t.Errorf("memory %q: want N Mi", s)
		}
		return n
	}
	if req, lim := mi(c.Resources.Requests["memory"]), mi(c.Resources.Limits["memory"]); req < 58 || lim <= req {
		t.Errorf("memory request %dMi, limit %dMi; want a request >= the 58 MB measured with 100,000 keys and a limit above it", req, lim)
	}
	if c.Resources.Requests["cpu"] == "" {
		t.Errorf("no cpu request")
	}
}

// TestDocuments checks the splitter: a file of comments alone has no
// documents; separators split.
func TestDocuments(t *testing.T) {
	if d := documents([]byte("# only a comment\n---\n\n")); len(d) != 0 {
		t.Errorf("documents(comments) = %d; want 0", len(d))
	}
	if d := documents([]byte("a: 1\n---\nb: 2\n")); len(d) != 2 || !bytes.Contains(d[1], []byte("b: 2")) {
		t.Errorf("documents(two) = %q", d)
	}
}
